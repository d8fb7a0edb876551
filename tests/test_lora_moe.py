"""LoRA that covers what it claims, on the MoE of transformers 5.x (tiny `Qwen3OmniMoeThinkerForConditionalGeneration`
with random weights, experts stored as fused `mlp.experts.gate_up_proj` / `down_proj` parameters): the experts are
adapted through peft's parameter targeting, the saved adapter names them, a target that matches nothing fails
before training, and a dense model is wrapped exactly as before."""
import json

import pytest
import torch

from cogito_lib.models import (FUSED_EXPERT_PARAMETERS, add_lora, build_tiny_model, language_model_expert_parameters,
                               load_adapter, load_model, lora_plan, lora_report)
from cogito_lib.train import LORA_TARGETS, prepare_lora

CORPUS = ["I hear three beeps, then a low tone. The answer is (B) three.",
          "user assistant system question answer choices option select provided"] * 10
SIZE = {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "num_kv_heads": 1, "intermediate_size": 16,
        "num_experts": 4, "num_experts_per_tok": 2, "audio_d_model": 16, "audio_layers": 1, "num_mel_bins": 80,
        "chunk_length": 2, "vocab_size": 300}
ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")


@pytest.fixture(scope="module")
def moe_dir(tmp_path_factory):
    return build_tiny_model("qwen3_omni", tmp_path_factory.mktemp("moe") / "model", CORPUS, size=SIZE, seed=0)


@pytest.fixture(scope="module")
def dense_dir(tmp_path_factory):
    return build_tiny_model("qwen2_audio", tmp_path_factory.mktemp("dense") / "model", CORPUS, size=SIZE, seed=0)


def _ids():
    return torch.randint(5, 250, (2, 10), generator=torch.Generator().manual_seed(0))


def test_the_moe_stores_its_experts_as_fused_parameters_that_module_names_miss(moe_dir):
    model, _ = load_model(moe_dir)
    experts = language_model_expert_parameters(model)
    assert set(experts) == {"gate_up_proj", "down_proj"} and all(len(v) == 2 for v in experts.values())
    linear = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)
              and ".language_model." in n}
    assert not linear & {"gate_proj", "up_proj", "down_proj"}  # what silently trained attention only before


def test_the_default_targets_adapt_attention_and_every_expert(moe_dir, tmp_path):
    model, _ = load_model(moe_dir)
    plan = lora_plan(model, LORA_TARGETS)
    assert {p.rsplit(".", 1)[-1] for p in plan.parameters} == {"gate_up_proj", "down_proj"}
    assert {m.rsplit(".", 1)[-1] for m in plan.modules} == set(ATTENTION)
    assert plan.matched["gate_proj"] == {"modules": 0, "expert_parameter": "gate_up_proj", "parameters": 2}
    assert plan.matched["q_proj"]["modules"] == 2 and not any("audio_tower" in n for n in plan.modules)

    torch.manual_seed(0)
    peft_model = prepare_lora(model, rank=4, alpha=8)
    report = lora_report(peft_model)
    assert report["modules"] == {name: 2 for name in ATTENTION}
    assert report["expert_parameters"] == {"gate_up_proj": 2, "down_proj": 2}
    assert report["trainable_parameters"] == report["lora_parameters"] == sum(report["trainable"].values())
    # 4 experts: down_proj [E, H, I] rank 4 per expert; gate_up_proj [E, 2I, H] at rank 8 (= gate + up at rank 4)
    hidden, inter, experts = SIZE["hidden_size"], SIZE["intermediate_size"], SIZE["num_experts"]
    assert report["trainable"]["down_proj"] == 2 * (inter * 4 * experts + 4 * experts * hidden)
    assert report["trainable"]["gate_up_proj"] == 2 * (hidden * 8 * experts + 8 * experts * 2 * inter)

    # one step moves the expert adapters (their B starts at zero, so its gradient must reach it)
    optimizer = torch.optim.SGD([p for p in peft_model.parameters() if p.requires_grad], lr=1.0)
    ids = _ids()
    peft_model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    moved = {n for n, p in peft_model.named_parameters() if "lora_B" in n and p.abs().sum() > 0}
    assert any(".experts.lora_B" in n for n in moved) and any(".experts.base_layer.lora_B" in n for n in moved)

    peft_model.save_pretrained(tmp_path / "adapter")
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert sorted(config["target_parameters"]) == sorted(plan.parameters)
    assert all(".mlp.experts." in p for p in config["target_parameters"])
    peft_model.eval()
    reloaded = load_adapter(load_model(moe_dir)[0], tmp_path / "adapter")
    merged = load_adapter(load_model(moe_dir)[0], tmp_path / "adapter").merge_and_unload()
    with torch.no_grad():
        want = peft_model(input_ids=ids).logits
        assert torch.allclose(reloaded(input_ids=ids).logits, want, atol=1e-5)
        assert torch.allclose(merged(input_ids=ids).logits, want, atol=1e-4)


def test_attention_only_leaves_the_experts_alone(moe_dir, tmp_path):
    torch.manual_seed(0)
    peft_model = prepare_lora(load_model(moe_dir)[0], rank=4, alpha=8, targets="q_proj,k_proj,v_proj,o_proj")
    assert lora_report(peft_model)["expert_parameters"] == {}
    peft_model.save_pretrained(tmp_path / "adapter")
    assert not json.loads((tmp_path / "adapter" / "adapter_config.json").read_text()).get("target_parameters")


@pytest.mark.parametrize("targets, message", [
    (("q_proj", "w1"), "w1 match nothing"),
    (("q_proj", "gate_proj", "down_proj"), "gate_proj and up_proj are one fused weight"),
])
def test_a_target_that_matches_nothing_fails_before_training(moe_dir, targets, message):
    with pytest.raises(ValueError, match=message):
        prepare_lora(load_model(moe_dir)[0], rank=4, alpha=8, targets=targets)


def test_dropout_on_fused_expert_weights_is_refused_with_the_fix(moe_dir):
    with pytest.raises(ValueError, match="train.lora_dropout=0"):
        prepare_lora(load_model(moe_dir)[0], rank=4, alpha=8, dropout=0.1)
    attention = prepare_lora(load_model(moe_dir)[0], rank=4, alpha=8, dropout=0.1, targets=ATTENTION)
    assert lora_report(attention)["modules"] == {name: 2 for name in ATTENTION}


def test_a_dense_model_keeps_its_linear_mlp_targets(dense_dir):
    model, _ = load_model(dense_dir)
    plan = lora_plan(model, LORA_TARGETS)
    assert not plan.parameters and {m.rsplit(".", 1)[-1] for m in plan.modules} == set(LORA_TARGETS)
    report = lora_report(add_lora(model, rank=4, alpha=8, target_modules=LORA_TARGETS))
    assert report["modules"] == {name: 2 for name in LORA_TARGETS} and report["expert_parameters"] == {}
    assert set(FUSED_EXPERT_PARAMETERS) <= set(LORA_TARGETS)
