#!/usr/bin/env bash
# GPU smoke of the training engine (called by scripts/gpu_smoke.sh, or on its own from the repository root):
#   1. the tiny Qwen3-Omni MoE of the tests, trained as notebook 06 trains the paper (train.engine = accelerate)
#      under DeepSpeed ZeRO-3 on every visible GPU (bf16, gradient checkpointing, 2 accumulated micro-batches per
#      rank), with the experts adapted; checks the summary, the adapter's target_parameters and the merged model;
#   2. the LoRA step benchmark of the paper's base at full size with random weights (scripts/gpu_bench_lora.py
#      --model qwen3_omni_30b_a3b: tokens/s, peak memory, MFU; half depth on cards under 120 GB).
# Prints one JSON line per part ({"part": "zero3_train", ...}, then the benchmark's). Exit 0 when both pass,
# 2 when there is no GPU or no DeepSpeed (pip install -e '.[deepspeed]'), 1 otherwise.
#
#   scripts/gpu_smoke_train.sh [--no-bench] [--run-dir DIR]
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
bench=1
run_dir=""
while [ $# -gt 0 ]; do
  case "$1" in
    --no-bench) bench=0 ;;
    --run-dir) run_dir=$2; shift ;;
    *) echo "usage: scripts/gpu_smoke_train.sh [--no-bench] [--run-dir DIR]" >&2; exit 2 ;;
  esac
  shift
done
gpus=$("$PYTHON" -c "import torch; print(torch.cuda.device_count())" 2>/dev/null || echo 0)
if [ "$gpus" -lt 1 ]; then echo "gpu_smoke_train: no CUDA device visible" >&2; exit 2; fi
if ! "$PYTHON" -c "import deepspeed" >/dev/null 2>&1; then
  echo "gpu_smoke_train: DeepSpeed is not installed: pip install -e '.[deepspeed]'" >&2; exit 2
fi
run_dir=${run_dir:-$(mktemp -d "${TMPDIR:-/tmp}/gpu-smoke-train.XXXXXX")/run}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

status=0
"$PYTHON" - "$run_dir" "$gpus" <<'EOF' || status=1
import json, subprocess, sys, time
from pathlib import Path

sys.path.insert(0, "tests")
from test_distill import make_run_dir  # the tests' tiny run dir: a tiny base, audio, survivors

from cogito_lib.config import load_profile
from cogito_lib.io import read_json

run_dir, gpus = Path(sys.argv[1]), int(sys.argv[2])
sets = {"models.family": "qwen3_omni", "models.device": "cuda", "models.dtype": "bfloat16",
        "train.engine": "accelerate", "train.processes": gpus,
        "train.accelerate_config": "configs/accelerate/deepspeed_zero3.yaml", "train.batch_size": 2 * gpus,
        "train.micro_batch_size": 1, "train.gradient_checkpointing": True, "train.max_steps": 3,
        "train.replay_atomic": 3, "train.checkpoint_every": 2, "train.variants": ["self_distill"]}
if not run_dir.exists():
    make_run_dir(run_dir, profile=load_profile("tiny", sets))
cmd = [sys.executable, "-m", "cogito_lib.train", "--profile", "tiny", "--run-dir", str(run_dir), "--no-progress"]
for key, value in sets.items():
    cmd += ["--set", f"{key}={json.dumps(value)}"]
started = time.perf_counter()
done = subprocess.run(cmd, capture_output=True, text=True)
folder = run_dir / "06-self-distillation-training" / "self_distill"
summary = read_json(folder / "summary.json") or {}
config = read_json(folder / "adapter" / "adapter_config.json") or {}
checks = {
    "exit_0": done.returncode == 0,
    "trained": summary.get("status") == "trained" and summary.get("steps") == 3,
    "zero3": summary.get("zero_stage") == 3 and summary.get("processes") == gpus,
    "experts_adapted": (summary.get("lora") or {}).get("expert_parameters") == {"gate_up_proj": 2, "down_proj": 2},
    "adapter_names_experts": all(".mlp.experts." in p for p in config.get("target_parameters") or [""]),
    "merged": (folder / "merged" / "config.json").exists(),
}
print(json.dumps({"part": "zero3_train", "ok": all(checks.values()), "checks": checks, "gpus": gpus,
                  "wall_s": round(time.perf_counter() - started, 1), "first_loss": summary.get("first_loss"),
                  "final_loss": summary.get("final_loss"), "tokens_per_s": summary.get("tokens_per_s"),
                  "run_dir": str(run_dir), "log": str(folder / "launch" / "train.log"),
                  "tail": (done.stdout + done.stderr).strip().splitlines()[-5:] if done.returncode else []}),
      flush=True)
sys.exit(0 if all(checks.values()) else 1)
EOF

if [ "$bench" = 1 ]; then
  mem=$("$PYTHON" -c "import torch; print(torch.cuda.get_device_properties(0).total_memory // 2**30)")
  layers=(); [ "$mem" -lt 120 ] && layers=(--layers 24)
  "$PYTHON" scripts/gpu_bench_lora.py --model qwen3_omni_30b_a3b --gradient-checkpointing --steps 5 --warmup 2 \
    "${layers[@]}" || status=1
fi
exit $status
