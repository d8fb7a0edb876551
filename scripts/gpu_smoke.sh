#!/usr/bin/env bash
# The paper-smoke on a GPU machine, through the real vLLM: builds the pinned vLLM environment (envs/vllm), checks
# that `vllm serve` starts on a tiny Qwen3-Omni-MoE checkpoint and answers a chat completion with audio, then runs
# scripts/paper_smoke.py with every server being `vllm serve` (the two the smoke starts and the one notebook 07
# launches for the fine-tuned model), then scripts/gpu_smoke_train.sh (the kit's trainer under DeepSpeed ZeRO-3 on
# the tiny MoE, and the LoRA step benchmark at Qwen3-Omni-30B-A3B's size: tokens/s, MFU). Unattended: no prompt,
# every step bounded in time, everything logged.
#
#   scripts/gpu_smoke.sh                   # -> runs/gpu-smoke/ and runs/gpu-smoke.log
#   PYTHON=python3.11 RUN_DIR=/tmp/gpu-smoke scripts/gpu_smoke.sh
#
# Needs: an NVIDIA GPU with a driver for CUDA 12.9 (vLLM 0.19.1's kernels), python3.11, network access to PyPI
# (the first time, ~5 GB of wheels), espeak-ng (the kit's tour). Exit code 0 when the smoke passed; the last
# lines say what ran and how long each part took.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
PYTHON=${PYTHON:-python3.11}
RUN_DIR=${RUN_DIR:-$root/runs/gpu-smoke}
VLLM_ENV=${VLLM_ENV:-$root/envs/.vllm}
log="$RUN_DIR.log"
mkdir -p "$(dirname "$log")"
exec > >(tee "$log") 2>&1
step() { echo; echo "== $(date -u +%H:%M:%S) $*"; }
# Three servers share one GPU: the smoke's Thinking and Instruct servers and 07's fine-tuned one. head_dim 64
# (hidden 256, 4 heads) keeps the tiny model inside what vLLM's attention kernels support.
SERVER_ARGS=${SERVER_ARGS:---dtype bfloat16 --gpu-memory-utilization 0.25 --enforce-eager --max-num-seqs 16 --limit-mm-per-prompt.audio 1 --limit-mm-per-prompt.image 0 --limit-mm-per-prompt.video 0}
TINY_SIZE=${TINY_SIZE:-'{"hidden_size": 256, "num_heads": 4, "num_kv_heads": 2, "intermediate_size": 256}'}

step "GPU"
command -v nvidia-smi >/dev/null || { echo "no nvidia-smi: this script needs an NVIDIA GPU"; exit 2; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv

step "the kit's environment (.venv)"
make venv

step "the vLLM environment ($VLLM_ENV, envs/vllm/requirements.txt)"
if [ ! -x "$VLLM_ENV/bin/vllm" ]; then
  "$PYTHON" -m venv "$VLLM_ENV"
  "$VLLM_ENV/bin/python" -m pip install -q --upgrade pip
  timeout 3600 "$VLLM_ENV/bin/pip" install -q -r envs/vllm/requirements.txt
fi
"$VLLM_ENV/bin/python" -c "import vllm, torch, transformers; print('vllm', vllm.__version__, '| torch', torch.__version__, '| transformers', transformers.__version__, '| cuda', torch.cuda.is_available())"

step "vllm serve on a tiny Qwen3-Omni-MoE checkpoint, one chat completion with audio"
timeout 1800 .venv/bin/python - "$VLLM_ENV/bin/vllm serve" "$SERVER_ARGS" "$TINY_SIZE" "$RUN_DIR" <<'PY'
import json, sys, tempfile, time
from pathlib import Path
import numpy as np
sys.path.insert(0, ".")
from cogito_lib.models import build_tiny_model, full_omni_checkpoint
from cogito_lib.models.backends import GenerationRequest, make_backend
from cogito_lib.models.generate import build_messages
from cogito_lib.models.serving import launch_server
server, server_args, size, run_dir = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), Path(sys.argv[4])
folder = Path(tempfile.mkdtemp()) / "thinker"
build_tiny_model("qwen3_omni", folder, ["<think>\nI hear a tone.\n</think>\n\nThe answer is a tone."] * 30,
                 size={"max_position_embeddings": 8192, **size})
full = full_omni_checkpoint(folder)
template = server + " {model} --served-model-name {name} --host 127.0.0.1 --port {port} --max-model-len 4096 " + server_args
started = time.time()
with launch_server(template + " --reasoning-parser qwen3", str(full), name="tiny", timeout=1200,
                   log_path=run_dir.with_name(run_dir.name + "-check.log")) as url:
    print(f"vllm serve ready in {time.time() - started:.0f} s at {url}")
    backend = make_backend("vllm", "tiny", base_urls=[url], timeout=300)
    wave = (0.3 * np.sin(np.arange(16000) / 5)).astype(np.float32)
    result = backend.generate([GenerationRequest("check", messages=build_messages("Which sound is heard?"),
                                                 waveform=wave, max_new_tokens=16, temperature=0.7,
                                                 num_samples=3, seed=0)])[0]
    print(f"3 samples (n=3), finish {result.finish_reasons}, prompt tokens {result.num_prompt_tokens}:")
    for text in result.texts:
        print("  ", repr(text[:80]))
PY

step "the paper-smoke through vllm serve"
start=$(date +%s)
status=0
# 06's accelerate launch: one rank per GPU, at most the smoke's 2 (its step is 4 sequences)
gpus=$(nvidia-smi -L | wc -l)
timeout 3600 .venv/bin/python scripts/paper_smoke.py --fresh --run-dir "$RUN_DIR" \
  --server "$VLLM_ENV/bin/vllm serve" --server-args "$SERVER_ARGS" --timeout 1200 --tiny-size "$TINY_SIZE" \
  --set "train.processes=$(( gpus >= 2 ? 2 : 1 ))" \
  || status=$?
echo "paper-smoke through vLLM: exit $status after $(( $(date +%s) - start )) s; run dir $RUN_DIR, log $log"
[ -f "$RUN_DIR/smoke.json" ] && cat "$RUN_DIR/smoke.json"

step "the training engine: the tiny MoE under DeepSpeed ZeRO-3, then the LoRA step benchmark at full size"
.venv/bin/python -c "import deepspeed" 2>/dev/null || timeout 1800 .venv/bin/pip install -q -e '.[deepspeed]'
train_status=0
timeout 3600 env PYTHON=.venv/bin/python scripts/gpu_smoke_train.sh --run-dir "$RUN_DIR-train/run" || train_status=$?
echo "training engine smoke: exit $train_status"
[ "$status" = 0 ] && status=$train_status
exit $status
