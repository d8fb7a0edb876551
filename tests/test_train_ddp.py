"""Data-parallel training: 2 CPU processes (gloo) run the same `train_sft` as `accelerate launch` would at scale,
and both ranks end with identical adapter weights (tiny model, a few steps, well under a minute). The ranks feed
the model from the front-end feature cache, as a qwen2_audio model trains under the engine (the MoE's own path,
without the cache, is tests/test_train_engine.py's)."""
import os
import socket
import subprocess
import sys
from pathlib import Path

from test_distill import TINY, make_run_dir

ROOT = Path(__file__).resolve().parents[1]

WORKER = """
import sys
from pathlib import Path

import torch

from cogito_lib.distill import build_training_sets, load_inputs
from cogito_lib.io import read_json
from cogito_lib.models import load_model
from cogito_lib.models.audio import AudioCache
from cogito_lib.models.frontend import make_frontend
from cogito_lib.train import LoopConfig, prepare_lora, train_sft, trainable_state
from cogito_lib.train.loop import _distributed

run_dir, out = Path(sys.argv[1]), Path(sys.argv[2])
torch.set_num_threads(1)
accelerator = _distributed()
assert accelerator is not None and accelerator.num_processes == 2
base = read_json(next((run_dir / "01-base-model").glob("base-*/base.json")))["model_dir"]
model, processor = load_model(base)
torch.manual_seed(0)
model = prepare_lora(model, rank=4, alpha=8)
before = trainable_state(model)
tset = build_training_sets(__import__("cogito_lib.config").config.load_profile("tiny"), run_dir, "no_audit",
                           inputs=load_inputs(run_dir))["no_audit"]
frontend = make_frontend(model, processor, training=True)
assert frontend is not None
logs = train_sft(model, processor, tset.examples, LoopConfig(steps=3, batch_size=4, learning_rate=5e-3, seed=0),
                 audio=AudioCache(), progress=False, accelerator=accelerator, frontend=frontend)
after = trainable_state(model)
assert len(logs) == 3 and any(not torch.equal(before[k], after[k]) for k in after)
assert frontend.stats["computed"] > 0  # the steps ran on cached features
torch.save(after, out / f"rank{accelerator.process_index}.pt")
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_ranks_end_with_identical_adapter_weights(tmp_path):
    import torch

    run_dir = make_run_dir(tmp_path / "run", profile=TINY)
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), str(script),
                           str(run_dir), str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=110)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert rank0.keys() == rank1.keys() and rank0
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
