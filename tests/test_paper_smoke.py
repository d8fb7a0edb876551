"""The paper-smoke (`make paper-smoke`, scripts/paper_smoke.py): notebooks 00-07 through the paper profile's code
path on a CPU, every model call through the OpenAI-compatible client to servers on 127.0.0.1."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from cogito_lib.metrics import load_run_metrics
from script_module import load

pytestmark = pytest.mark.notebooks
ROOT = Path(__file__).resolve().parents[1]


def _smoke_module():
    return load("scripts/paper_smoke.py")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("paper-smoke") / "run"
    module = _smoke_module()
    # as `make paper-smoke` runs it: its checkpoint builders are spawned processes that import the script by name
    code = subprocess.run([sys.executable, str(ROOT / "scripts" / "paper_smoke.py"), "--run-dir", str(run_dir)],
                          cwd=ROOT).returncode
    return module, run_dir, code


def test_the_smoke_passes_and_leaves_what_it_promises(smoke):
    module, run_dir, code = smoke
    assert code == 0, (run_dir / "smoke.json").read_text() if (run_dir / "smoke.json").exists() else "no smoke.json"
    assert module.verify(run_dir) == []
    metrics = load_run_metrics(run_dir)
    assert [s for s, v in metrics["notebooks"].items() if v["status"] == "ok"] == [
        p.stem for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))]
    adapter = json.loads((run_dir / "06-self-distillation-training" / "self_distill" / "adapter" /
                          "adapter_config.json").read_text())
    assert adapter["peft_type"] == "LORA" and adapter["r"] == 8  # the paper profile's LoRA rank


def test_06_trained_through_the_engine_with_the_experts_adapted(smoke):
    """train.engine = "accelerate" from the run configuration: 2 gloo ranks of `accelerate launch`, each step's 4
    sequences as 2 accumulated micro-batches per rank, LoRA on attention and on every layer's fused experts."""
    module, run_dir, _ = smoke
    folder = run_dir / "06-self-distillation-training" / "self_distill"
    assert "engine = \"accelerate\"" in (run_dir / "inputs" / "paper-smoke.toml").read_text()
    summary = json.loads((folder / "summary.json").read_text())
    assert (summary["engine"], summary["processes"], summary["zero_stage"]) == ("accelerate", 2, None)
    assert summary["distributed"].endswith("MULTI_CPU") and summary["steps"] == 2
    config = json.loads((folder / "adapter" / "adapter_config.json").read_text())
    layers = {p.split(".mlp.experts.")[0] for p in config["target_parameters"]}
    assert {p.rsplit(".", 1)[-1] for p in config["target_parameters"]} == {"gate_up_proj", "down_proj"}
    assert len(config["target_parameters"]) == 2 * len(layers) > 0
    assert set(summary["lora"]["expert_parameters"]) == {"gate_up_proj", "down_proj"}
    assert {"q_proj", "v_proj"} <= set(summary["lora"]["modules"])
    command = (folder / "launch" / "command.sh").read_text()
    assert "accelerate.commands.launch --num_processes 2" in command and "--job" in command
    assert module.training_problems(folder) == []


def test_it_ran_the_paper_profile_with_its_configuration(smoke):
    _, run_dir, _ = smoke
    config = (run_dir / "config.toml").read_text()
    assert 'profile = "paper"' in config and 'backend = "vllm"' in config
    for notebook in ("00-setup-and-tour", "03-qa-construction", "07-mmar-evaluation"):
        cells = json.loads((run_dir / f"{notebook}.ipynb").read_text())["cells"]
        printed = "".join("".join(o.get("text", "")) for c in cells for o in c.get("outputs", []))
        assert f"configuration (from {run_dir / 'config.toml'}): profile 'paper'" in printed
    checks = load_run_metrics(run_dir)["stages"]["00-setup-and-tour"]
    assert checks["checks_missing"] == []  # servers, weights, MMAR audio (of the items evaluated), seed pool


def test_every_stage_went_through_the_servers(smoke):
    module, run_dir, _ = smoke
    stages = load_run_metrics(run_dir)["stages"]
    assert stages["02-data-collection"]["num_clips"] == len(module.CORPORA) * module.CLIPS_PER_CORPUS
    qa = stages["03-qa-construction"]
    assert qa["annotator"] == "llm" and qa["num_questions"] > 0 and qa["num_seeds_in_pool"] == 500
    assert any((run_dir / "03-qa-construction" / "llm-cache").rglob("*.json"))  # the replies, cached
    cot = stages["04-cot-generation"]
    assert cot["samples"] == 2 * cot["questions_sampled"] > 0  # K = 2 samples per request (n)
    audit = stages["05-quality-verification"]
    assert audit["judge"].startswith("llm:vllm:") and audit["kept"] > 0
    assert audit["limits"]["max_thinking_chars"] == 9999  # the paper's limit: the challenge's < 10,000
    evaluation = stages["07-mmar-evaluation"]
    assert evaluation["models"] == ["base", "self_distill"] and evaluation["num_items"] == module.MMAR_EVALUATED
    assert evaluation["judge"].startswith("OpenAI-compatible judge")  # the rubric judge, on the Instruct server
    launched = run_dir / "07-mmar-evaluation" / "servers" / "cogito-self_distill.log"
    assert launched.read_text().startswith("$ ")  # 07 started a server for the fine-tuned model
    full = json.loads((run_dir / "06-self-distillation-training" / "self_distill" / "merged-full" /
                       "config.json").read_text())
    assert full["architectures"] == ["Qwen3OmniMoeForConditionalGeneration"]  # what vLLM's registry serves


def test_a_partial_submission_is_valid_for_its_items_only_in_07_and_on_the_command_line(smoke):
    module, run_dir, _ = smoke
    summary = json.loads((run_dir / "07-mmar-evaluation" / "summary.json").read_text())
    assert summary["num_items"] == module.MMAR_EVALUATED
    meta = run_dir / "inputs" / "data" / "mmar" / "MMAR-meta.jsonl"
    submission = run_dir / "07-mmar-evaluation" / "submission-self_distill.jsonl"
    command = [sys.executable, "-m", "cogito_lib.mmar", "validate-submission", "--meta", str(meta),
               "--predictions", str(submission)]
    partial = subprocess.run(command + ["--num-items", str(module.MMAR_EVALUATED)], capture_output=True, text=True,
                             cwd=ROOT)
    assert partial.returncode == 0 and "the first 4 of 6 items" in partial.stdout
    whole = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert whole.returncode == 1 and whole.stdout.count("missing prediction") == module.MMAR_ITEMS - module.MMAR_EVALUATED
