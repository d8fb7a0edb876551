"""scripts/gpu_bench_lora.py: the CPU dry run (tiny config, 2 steps) prints the result's keys; the real 7B-size
benchmark runs only with `-m gpu` on a CUDA machine."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_bench_lora.py"
KEYS = {"device", "size", "audio_tokens", "seq_len", "parameters", "trainable_parameters", "steps", "warmup",
        "step_time_s", "tokens_per_step", "tokens_per_s", "peak_memory_gib", "step_flops", "peak_tflops", "mfu",
        "mfu_with_attention", "mfu_formula", "loss_first", "loss_last", "finite"}


def _bench(*args: str, timeout: int) -> tuple[subprocess.CompletedProcess, dict | None]:
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    done = subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    return done, json.loads(lines[-1]) if lines else None


def test_dry_run_on_cpu_prints_one_json_result():
    done, result = _bench("--dry-run-cpu", "--peak-tflops", "1", timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert result is not None and KEYS <= set(result)
    assert result["steps"] == 2 and result["device"] == "cpu (dry run)" and result["finite"]
    size = result["size"]
    assert result["audio_tokens"] == 50 and result["seq_len"] == size["text_tokens"] + 50  # 2 s -> 200 frames -> 50
    assert result["tokens_per_step"] == size["batch_size"] * result["seq_len"]
    assert 0 < result["trainable_parameters"] == result["parameter_counts"]["lora"] < result["parameters"]
    assert result["step_time_s"] > 0 and result["tokens_per_s"] > 0 and result["peak_memory_gib"] is None
    assert result["peak_tflops"] == 1 and 0 < result["mfu"] <= result["mfu_with_attention"]


def test_moe_dry_run_adapts_every_expert_and_counts_activated_flops():
    done, result = _bench("--dry-run-cpu", "--model", "qwen3_omni_30b_a3b", "--peak-tflops", "1e-4", timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert result is not None and KEYS <= set(result) and result["finite"]
    assert result["lora"]["expert_parameters"] == {"gate_up_proj": 2, "down_proj": 2}
    counts = result["parameter_counts"]
    assert result["audio_tokens"] == 26 and result["tokens_per_step"] == 2 * (32 + 26 + 2)  # 13 per 100 frames
    # 2 of 4 experts are active per token: half their weights (and LoRA factors) count
    assert counts["lm_active"] == counts["lm_other"] + counts["experts"] // 2
    assert counts["lora_active"] == counts["lora"] + counts["lora_experts"] // 2
    assert result["trainable_parameters"] == counts["lora"] + counts["lora_experts"]
    assert 0 < result["mfu"] <= result["mfu_with_attention"]


def test_without_cuda_it_exits_2_with_a_message():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible")
    done, result = _bench("--steps", "1", timeout=60)
    assert done.returncode == 2 and result is None
    assert "no CUDA device" in done.stderr and "--dry-run-cpu" in done.stderr


@pytest.mark.gpu
def test_gpu_benchmark_of_the_paper_s_moe():
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    layers = [] if torch.cuda.get_device_properties(0).total_memory > 120 * 2 ** 30 else ["--layers", "24"]
    done, result = _bench("--model", "qwen3_omni_30b_a3b", "--gradient-checkpointing", "--steps", "5", "--warmup",
                          "2", *layers, timeout=1800)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert KEYS <= set(result) and result["finite"] and result["audio_tokens"] == 390
    assert result["lora"]["expert_parameters"] == {"gate_up_proj": result["size"]["num_layers"],
                                                   "down_proj": result["size"]["num_layers"]}
    if result["mfu"] is not None:
        assert 0.005 < result["mfu"] < 1.0


@pytest.mark.gpu
def test_gpu_benchmark_at_7b_size():
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    done, result = _bench("--steps", "5", "--warmup", "2", timeout=900)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert KEYS <= set(result) and result["finite"]
    assert result["audio_tokens"] == 750 and result["seq_len"] == 512 + 750
    assert 8.0e9 < result["parameters"] < 8.6e9 and 30e6 < result["trainable_parameters"] < 50e6
    assert result["peak_memory_gib"] > 16  # at least the bf16 weights
    if result["mfu"] is not None:
        assert 0.02 < result["mfu"] < 1.0
