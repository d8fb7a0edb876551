"""Model layer: tiny offline builds of every family, loading, forward/loss/backward, generate, LoRA round trips."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cogito_lib.models import (
    FAMILIES, ModelNotFoundError, TinySize, add_lora, build_prompt, build_tiny_model, build_training_text,
    count_parameters, encode_batch, encode_training_batch, get_family, language_model_lora_targets, load_adapter,
    load_model, processor_encode, resolve_size, save_model, tiny_info,
)
from cogito_lib.models.families import family_for_checkpoint
from cogito_lib.models.tokenizer import QWEN_PRETOKENIZE_REGEX

CORPUS = [
    "I hear three beeps at 440 Hz, then a low tone. The answer is (B) three.",
    "The first tone is higher than the second one. So the answer is yes.",
    "A dog barks twice while music plays; the speaker says hello at 1.5 s.",
    "user assistant system question answer choices option select provided",
] * 10
FAMILY_KEYS = sorted(FAMILIES)
SMALL = {"hidden_size": 48, "num_layers": 1, "num_heads": 4, "num_kv_heads": 2, "intermediate_size": 64,
         "audio_d_model": 32, "audio_layers": 1, "num_mel_bins": 80, "chunk_length": 2, "vocab_size": 400}


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_models")
    return {key: build_tiny_model(key, root / key, CORPUS, size=SMALL, seed=0) for key in FAMILY_KEYS}


def _clips(lengths=(16000, 9000)):
    rng = np.random.default_rng(0)
    return [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in lengths]


@pytest.mark.parametrize("family", FAMILY_KEYS)
def test_tiny_build_loads_like_a_checkpoint(tiny_dirs, family):
    folder = tiny_dirs[family]
    model, processor = load_model(folder)
    fam = get_family(family)
    assert type(model).__name__ == fam.model_class
    assert type(processor).__name__ == fam.processor_class
    info = tiny_info(folder)
    assert info["family"] == family and info["parameters"]["total"] == count_parameters(model)["total"]
    tok = processor.tokenizer
    for token in ["<|im_start|>", "<|im_end|>", "<think>", "</think>", *fam.special_tokens.values()]:
        assert tok.convert_tokens_to_ids(token) not in (None, tok.unk_token_id), token
    assert tok.convert_tokens_to_ids(fam.audio_token) == model.config.audio_token_id
    # digits one per token (Qwen's pre-tokenizer), think tags kept on decode
    ids = tok("440 Hz", add_special_tokens=False)["input_ids"]
    assert tok.convert_ids_to_tokens(ids)[:3] == ["4", "4", "0"]
    assert tok.decode(tok("<think>x</think>y<|im_end|>")["input_ids"], skip_special_tokens=True) == "<think>x</think>y"
    assert processor.feature_extractor.chunk_length == SMALL["chunk_length"]
    assert "\\p{N}|" in QWEN_PRETOKENIZE_REGEX


@pytest.mark.parametrize("family", FAMILY_KEYS)
def test_forward_loss_backward_generate(tiny_dirs, family):
    model, processor = load_model(tiny_dirs[family])
    model.train()
    examples = [build_training_text(processor, "How many beeps?", "I hear 3 beeps.", "(B) three"),
                build_training_text(processor, "Which is first?", "Low, then high.", "(A) low")]
    batch = encode_training_batch(processor, examples, _clips())
    out = model(**batch)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    grads = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    assert any("audio_tower" in n and g.abs().sum() > 0 for n, g in grads.items()), "no gradient reached the audio"
    assert any("language_model" in n and g.abs().sum() > 0 for n, g in grads.items())
    model.eval()
    prompts = [build_prompt(processor, "How many beeps?")] * 2
    gen_in = encode_batch(processor, prompts, _clips())
    out = model.generate(**gen_in, max_new_tokens=4, do_sample=False)
    assert out.shape[0] == 2 and out.shape[1] <= gen_in["input_ids"].shape[1] + 4


@pytest.mark.parametrize("family", FAMILY_KEYS)
def test_fast_encoder_equals_processor(tiny_dirs, family):
    _, processor = load_model(tiny_dirs[family])
    prompts = [build_prompt(processor, q) for q in ("How many beeps?", "Is the low tone first?", "Why?")]
    clips = _clips((16000, 7000, 23000))  # 23000 samples > chunk for qwen2_audio/qwen2_5 is cut like the processor
    fast, ref = encode_batch(processor, prompts, clips), processor_encode(processor, prompts, clips)
    for key in ("input_ids", "attention_mask", "input_features", "feature_attention_mask"):
        assert torch.equal(fast[key], ref[key]), key
    # text-only prompts too
    text_prompts = [build_prompt(processor, "Just text", with_audio=False), build_prompt(processor, "x", False)]
    fast, ref = encode_batch(processor, text_prompts), processor_encode(processor, text_prompts)
    assert torch.equal(fast["input_ids"], ref["input_ids"])


@pytest.mark.parametrize("family", FAMILY_KEYS)
def test_lora_language_model_only_and_round_trips(tiny_dirs, tmp_path, family):
    model, processor = load_model(tiny_dirs[family])
    peft_model = add_lora(model, rank=4, alpha=8, target_modules=["q_proj", "v_proj"])
    lora_modules = [n for n, m in peft_model.named_modules() if hasattr(m, "lora_A") and len(m.lora_A)]
    assert lora_modules and all("language_model" in n for n in lora_modules)
    assert not any("audio_tower" in n for n in lora_modules)
    # a plain list would also hit the audio encoder: the reason for the regex
    assert "audio_tower" not in language_model_lora_targets(["q_proj"])
    # a plain list or a regex would not do: peft hits the audio tower with ["q_proj"], and for MoE models it
    # rewrites a regex into bare leaf names
    plain = add_lora(load_model(tiny_dirs[family])[0], rank=2, alpha=4, target_modules=["q_proj"], audio_tower=True)
    assert any("audio_tower" in n for n, m in plain.named_modules() if hasattr(m, "lora_A") and len(m.lora_A))
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)

    example = build_training_text(processor, "Q?", "because", "(A) yes")
    batch = encode_training_batch(processor, [example], _clips((16000,)))
    optim = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(2):
        loss = peft_model(**batch).loss
        loss.backward()
        optim.step()
        optim.zero_grad()
    peft_model.eval()
    with torch.no_grad():
        expected = peft_model(**batch).logits

    adapter_dir = tmp_path / "adapter"
    peft_model.save_pretrained(adapter_dir)
    base, _ = load_model(tiny_dirs[family])
    reloaded = load_adapter(base, adapter_dir)
    with torch.no_grad():
        assert torch.allclose(reloaded(**batch).logits, expected, atol=1e-5)

    merged_dir = save_model(reloaded, processor, tmp_path / "merged", merge=True)
    merged, merged_processor = load_model(merged_dir)
    assert not any("lora_" in n for n, _ in merged.named_parameters())
    with torch.no_grad():
        assert torch.allclose(merged(**batch).logits, expected, atol=1e-4)
    assert merged_processor.tokenizer.chat_template == processor.tokenizer.chat_template



def test_missing_checkpoint_gives_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    with pytest.raises(ModelNotFoundError) as err:
        load_model("Qwen/Qwen3-Omni-30B-A3B-Thinking")
    message = str(err.value)
    assert "hf download Qwen/Qwen3-Omni-30B-A3B-Thinking" in message and "models.base" in message
    assert "Traceback" not in message and err.value.__cause__ is None
    with pytest.raises(ModelNotFoundError, match="no such folder"):
        load_model(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        load_model(tmp_path / "empty")


def test_incomplete_folder_and_wrong_family(tiny_dirs, tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "config.json").write_text((tiny_dirs["qwen2_audio"] / "config.json").read_text())
    with pytest.raises(ModelNotFoundError, match="incomplete checkpoint"):
        load_model(folder)
    with pytest.raises(ValueError, match="not the 'qwen3_omni' family"):
        load_model(tiny_dirs["qwen2_audio"], family="qwen3_omni")


def test_sizes_and_family_lookup():
    assert resolve_size("mini").hidden_size == 192 and resolve_size("mini").mrope_section == [4, 6, 6]
    custom = resolve_size({"hidden_size": 96, "num_heads": 3})
    assert isinstance(custom, TinySize) and custom.hidden_size == 96 and sum(custom.mrope_section) == 16
    with pytest.raises(ValueError, match="unknown TinySize fields"):
        resolve_size({"hiden": 3})
    with pytest.raises(ValueError, match="unknown model family"):
        get_family("qwen4")
    assert family_for_checkpoint("Qwen/Qwen3-Omni-30B-A3B-Thinking").key == "qwen3_omni"
    assert family_for_checkpoint("Qwen/Qwen2-Audio-7B-Instruct").key == "qwen2_audio"
    assert family_for_checkpoint("Qwen/Qwen2.5-Omni-7B").key == "qwen2_5_omni"


def test_tiny_marker_is_json(tiny_dirs):
    info = json.loads((tiny_dirs["qwen3_omni"] / "cogito_tiny.json").read_text())
    assert info["size"]["hidden_size"] == SMALL["hidden_size"]
