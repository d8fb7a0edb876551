"""Training on an existing distributed engine (train.engine = "accelerate"): the configuration, gradient accumulation,
and a real 2-process `accelerate launch` (gloo ranks on a CPU) of the tiny Qwen3-Omni MoE with its experts adapted,
started the way notebook 06 starts it. With a python that has DeepSpeed (COGITO_DEEPSPEED_PYTHON, or this one), the
same run under configs/accelerate/deepspeed_zero3.yaml: sharded weights, a gathered adapter, DeepSpeed checkpoints
that resume."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from test_distill import make_run_dir

from cogito_lib.config import ConfigError, load_profile, profile_overrides
from cogito_lib.distill import STAGE, build_training_sets, load_inputs
from cogito_lib.io import read_json, read_jsonl
from cogito_lib.models import load_model
from cogito_lib.models.audio import AudioCache
from cogito_lib.train import LoopConfig, prepare_lora, train_sft
from cogito_lib.train.launch import accelerate_command
from cogito_lib.train.loop import accumulation_steps

ROOT = Path(__file__).resolve().parents[1]
MOE = {"models.family": "qwen3_omni", "train.max_steps": 2, "train.replay_atomic": 3, "train.checkpoint_every": 1,
       "train.variants": ["self_distill"]}


def test_engine_settings_are_checked_before_any_work():
    paper = load_profile("paper").train
    assert (paper.engine, paper.processes, paper.micro_batch_size, paper.gradient_checkpointing) == (
        "accelerate", 8, 1, True)
    assert accumulation_steps(paper.batch_size, paper.processes, paper.micro_batch_size) == 4  # 32 = 8 x 1 x 4
    assert accumulation_steps(4, 1, 0) == 1 and accumulation_steps(4, 2, 1) == 2
    with pytest.raises(ConfigError, match="train.engine"):
        load_profile("tiny", {"train.engine": "deepspeed"})
    with pytest.raises(ConfigError, match="needs train.engine = 'accelerate'"):
        load_profile("tiny", {"train.processes": 2})
    with pytest.raises(ConfigError, match="multiple of train.processes x train.micro_batch_size"):
        load_profile("tiny", {"train.engine": "accelerate", "train.processes": 3, "train.micro_batch_size": 1})
    with pytest.raises(ConfigError, match="train.parallel = 1"):
        load_profile("tiny", {"train.engine": "accelerate", "train.parallel": 2})


def test_a_profile_travels_to_the_ranks_as_its_overrides():
    profile = load_profile("tiny", {**MOE, "train.engine": "accelerate", "train.processes": 2})
    overrides = json.loads(json.dumps(profile_overrides(profile)))
    assert overrides["train.variants"] == ["self_distill"] and "train.seed" not in overrides
    assert load_profile("tiny", overrides) == profile


def test_the_launch_command():
    plain = accelerate_command("job.json", processes=2, port=1234, python="py")
    assert plain == ["py", "-m", "accelerate.commands.launch", "--num_processes", "2", "--num_machines", "1",
                     "--main_process_port", "1234", "--multi_gpu", "--mixed_precision", "no", "--dynamo_backend",
                     "no", "-m", "cogito_lib.train", "--job", "job.json"]
    zero3 = accelerate_command("job.json", processes=8, config_file="z3.yaml", port=1, python="py")
    assert zero3[zero3.index("--config_file") + 1] == "z3.yaml" and "--multi_gpu" not in zero3


def test_a_failing_rank_stops_the_launch_with_its_own_one_line_error(tmp_path):
    from cogito_lib.train.launch import LaunchError, run_job

    job = {"profile": "tiny", "overrides": {"train.engine": "deepspeed"}}  # refused by every rank
    with pytest.raises(LaunchError) as caught:
        run_job(job, tmp_path / "launch", processes=1, progress=False)
    message = str(caught.value)
    assert "\n" not in message and "error: train.engine" in message
    assert str(tmp_path / "launch" / "train.log") in message and (tmp_path / "launch" / "command.sh").exists()


@pytest.fixture(scope="module")
def moe_run(tmp_path_factory):
    return make_run_dir(tmp_path_factory.mktemp("engine") / "run", profile=load_profile("tiny", MOE))


def test_accumulated_micro_batches_make_the_same_step_as_one_batch(moe_run):
    """Micro-batches of 2 and of 1, each weighted by its supervised tokens, give the loss and the gradient of one
    forward of the step's 4 sequences, as does that forward with activation checkpointing (compared at learning
    rate 0: Adam would magnify float noise)."""
    profile = load_profile("tiny", MOE)
    tset = build_training_sets(profile, moe_run, inputs=load_inputs(moe_run))["self_distill"]
    base = read_json(next((moe_run / "01-base-model").glob("base-*/base.json")))["model_dir"]
    grads, losses = {}, {}
    for micro in (0, 2, 1, "checkpointed"):  # and one forward with activation checkpointing: the same gradient too
        model, processor = load_model(base)
        torch.manual_seed(0)
        model = prepare_lora(model, rank=4, alpha=8, gradient_checkpointing=micro == "checkpointed")
        assert model.is_activation_checkpointing == (micro == "checkpointed")
        micro_size = 0 if micro == "checkpointed" else micro
        logs = train_sft(model, processor, tset.examples, LoopConfig(steps=1, batch_size=4, learning_rate=0.0,
                                                                     seed=0, micro_batch_size=micro_size),
                         audio=AudioCache(), progress=False)
        losses[micro] = logs[0]["loss"]
        grads[micro] = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert any(".experts." in name for name in grads[0]) and len({len(g) for g in grads.values()}) == 1
    largest = max(g.abs().max() for g in grads[0].values())
    for micro in (2, 1, "checkpointed"):
        assert losses[micro] == pytest.approx(losses[0], abs=1e-5)
        assert all(torch.allclose(grads[micro][k], grads[0][k], atol=1e-5 * float(largest)) for k in grads[0])


def _train_cli(python: str, run_dir: Path, *sets: str, timeout: int) -> subprocess.CompletedProcess:
    cmd = [python, "-m", "cogito_lib.train", "--profile", "tiny", "--run-dir", str(run_dir), "--no-progress"]
    for key, value in {**MOE, **dict(s.split("=", 1) for s in sets)}.items():
        cmd += ["--set", f"{key}={json.dumps(value) if not isinstance(value, str) else value}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def _check_trained(run_dir: Path, processes: int) -> dict:
    folder = run_dir / STAGE / "self_distill"
    summary = read_json(folder / "summary.json")
    assert summary["status"] == "trained" and summary["engine"] == "accelerate"
    assert summary["processes"] == processes and summary["steps"] == 2
    assert summary["lora"]["expert_parameters"] == {"gate_up_proj": 2, "down_proj": 2}
    config = json.loads((folder / "adapter" / "adapter_config.json").read_text())
    names = {p.rsplit(".", 1)[-1] for p in config["target_parameters"]}
    assert names == {"gate_up_proj", "down_proj"} and all(".mlp.experts." in p for p in config["target_parameters"])
    assert [r["step"] for r in read_jsonl(folder / "train_log.jsonl")] == [1, 2]
    assert (folder / "merged" / "config.json").exists() and summary["merged"]
    launch = folder / "launch"
    assert (launch / "job.json").exists() and "accelerate.commands.launch" in (launch / "command.sh").read_text()
    return summary


def test_two_process_accelerate_launch_trains_the_moe_with_its_experts(moe_run):
    """What notebook 06 does with train.engine = "accelerate", train.processes = 2: the ranks split every step's 4
    sequences, each in 2 accumulated micro-batches of 1."""
    done = _train_cli(sys.executable, moe_run, "train.engine=accelerate", "train.processes=2",
                      "train.micro_batch_size=1", timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    summary = _check_trained(moe_run, processes=2)
    assert summary["distributed"].endswith("MULTI_CPU") and summary["zero_stage"] is None
    assert "self_distill: trained" in done.stdout


def _deepspeed_python() -> str | None:
    python = os.environ.get("COGITO_DEEPSPEED_PYTHON") or sys.executable
    probe = subprocess.run([python, "-c", "import deepspeed"], capture_output=True, text=True)
    return python if probe.returncode == 0 else None


def test_zero3_trains_gathers_merges_and_resumes(tmp_path):
    python = _deepspeed_python()
    if python is None:
        pytest.skip("DeepSpeed is not installed here (pip install -e '.[deepspeed]', or point "
                    "COGITO_DEEPSPEED_PYTHON at a python that has it)")
    run_dir = make_run_dir(tmp_path / "run", profile=load_profile("tiny", MOE))
    zero3 = ("train.engine=accelerate", "train.processes=2", "train.accelerate_config=configs/accelerate/"
             "deepspeed_zero3.yaml", "train.micro_batch_size=1")  # 2 accumulated micro-batches per rank and step
    done = _train_cli(python, run_dir, *zero3, timeout=1200)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    summary = _check_trained(run_dir, processes=2)
    assert summary["zero_stage"] == 3 and summary["distributed"].endswith("DEEPSPEED")
    folder = run_dir / STAGE / "self_distill"
    assert read_json(folder / "checkpoint-ds" / "latest.json")["step"] == 2
    from safetensors.torch import load_file

    adapter = load_file(folder / "adapter" / "adapter_model.safetensors")
    assert all(t.numel() > 0 for t in adapter.values())  # gathered, not the ranks' empty partitions
    assert all(t.abs().sum() > 0 for k, t in adapter.items() if "lora_B" in k)  # trained
    # killed after its last checkpoint, before the adapter was written: the rerun resumes, trains nothing again
    for name in ("summary.json", "adapter", "merged"):
        path = folder / name
        subprocess.run(["rm", "-rf", str(path)], check=True)
    done = _train_cli(python, run_dir, *zero3, timeout=1200)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    resumed = read_json(folder / "summary.json")
    assert resumed["resumed"] and [r["step"] for r in read_jsonl(folder / "train_log.jsonl")] == [1, 2]
    again = load_file(folder / "adapter" / "adapter_model.safetensors")
    assert all(torch.equal(adapter[k], again[k]) for k in adapter)
