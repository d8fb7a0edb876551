"""Training on an existing distributed engine: `accelerate launch` of the kit's own loop.

`run_job(job, launch_dir, processes=8, config_file="configs/accelerate/deepspeed_zero3.yaml")` writes the job
(`job.json`), the exact command (`command.sh`, runnable again by hand) and a copy of the accelerate config into
`launch_dir`, starts

    python -m accelerate.commands.launch --num_processes N --config_file CONFIG -m cogito_lib.train --job job.json

and streams its output to `launch_dir/train.log`. Every rank reads the job, binds to its own device (LOCAL_RANK),
loads the model after its Accelerator exists and trains its share of every step (`cogito_lib.distill.train_job`).
On a machine without a GPU the ranks are gloo processes (and DeepSpeed runs on its CPU accelerator), which is how
the tests exercise this path.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Mapping

from ..config import resolve_data_path
from ..io import atomic_write_text, write_json
from ..progress import progress_bar


class LaunchError(RuntimeError):
    """`accelerate launch` failed; the message names the log to read."""


def free_port() -> int:
    """A TCP port free on this machine now (for the ranks' rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def uses_deepspeed_config(config: Path | None) -> bool:
    """Whether the accelerate config file `config` runs DeepSpeed."""
    return config is not None and "DEEPSPEED" in config.read_text(encoding="utf-8")


def accelerate_command(job_file: str | Path, *, processes: int, config_file: str | Path | None = None,
                       port: int | None = None, python: str = sys.executable) -> list[str]:
    """The `accelerate launch` command line for one job. Without a config file: plain data parallelism over
    `processes` ranks (`--multi_gpu`, which on a machine without CUDA starts gloo CPU ranks)."""
    cmd = [python, "-m", "accelerate.commands.launch", "--num_processes", str(processes), "--num_machines", "1",
           "--main_process_port", str(port or free_port())]
    if config_file:
        cmd += ["--config_file", str(config_file)]
    else:
        cmd += (["--multi_gpu"] if processes > 1 else []) + ["--mixed_precision", "no", "--dynamo_backend", "no"]
    return cmd + ["-m", "cogito_lib.train", "--job", str(job_file)]


def _environment(config: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    root = str(resolve_data_path("."))
    paths = [root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))  # the kit's root first, each path once
    if uses_deepspeed_config(config):
        try:
            import torch

            cuda = torch.cuda.is_available()
        except ImportError:  # pragma: no cover - torch is a pinned dependency
            cuda = False
        if not cuda:
            env.setdefault("DS_ACCELERATOR", "cpu")  # DeepSpeed's CPU accelerator, gloo between the ranks
    return env


def check_engine(config_file: str | Path | None) -> Path | None:
    """The accelerate config as a path (relative to the repository unless absolute), checked: it exists, and
    DeepSpeed is importable when it asks for DeepSpeed. Raises FileNotFoundError / ImportError saying what to do."""
    if not config_file:
        return None
    config = resolve_data_path(str(config_file))
    if not config.is_file():
        raise FileNotFoundError(f"train.accelerate_config: {config} not found; use one of "
                                f"{', '.join(sorted(p.name for p in resolve_data_path('configs/accelerate').glob('*.yaml')))}"
                                " (configs/accelerate/) or '' for plain data parallelism")
    if uses_deepspeed_config(config):
        try:
            import deepspeed  # noqa: F401
        except ImportError:
            raise ImportError(f"{config.name} uses DeepSpeed, which is not installed in this environment: "
                              "pip install -e '.[deepspeed]' (docs/paper-scale.md, Training)") from None
    return config


def _logged_steps(path: Path | None) -> int:
    try:
        with open(path, "rb") as fh:
            return sum(1 for line in fh if line.strip())
    except (OSError, TypeError):
        return 0


def run_job(job: Mapping[str, Any], launch_dir: str | Path, *, processes: int, config_file: str | Path | None = None,
            python: str = sys.executable, poll_s: float = 0.5, progress: bool = True,
            step_log: str | Path | None = None, total_steps: int | None = None) -> Path:
    """Write `job` to `launch_dir/job.json`, run it under `accelerate launch` and wait, showing the steps the main
    rank has journalled to `step_log` (one JSON line per step) against `total_steps`. Returns the log's path;
    raises LaunchError (with the log's last lines) when a rank fails."""
    launch_dir = Path(launch_dir)
    config = check_engine(config_file)
    launch_dir.mkdir(parents=True, exist_ok=True)
    job_file = write_json(launch_dir / "job.json", dict(job))
    if config is not None:
        shutil.copyfile(config, launch_dir / config.name)
    cmd = accelerate_command(job_file, processes=processes, config_file=config, python=python)
    env = _environment(config)
    extra = {k: env[k] for k in ("DS_ACCELERATOR",) if k in env and k not in os.environ}
    script = ["#!/usr/bin/env bash", "# the command notebook 06 ran for this training (cogito_lib.train.launch)",
              "set -euo pipefail", f"cd {shlex.quote(os.getcwd())}",
              f"export PYTHONPATH={shlex.quote(env['PYTHONPATH'])}"]
    script += [f"export {k}={shlex.quote(v)}" for k, v in extra.items()]
    script.append(shlex.join(cmd))
    atomic_write_text(launch_dir / "command.sh", "\n".join(script) + "\n")
    log = launch_dir / "train.log"
    started = time.perf_counter()
    bar = None
    if progress and total_steps:
        bar = progress_bar(total=total_steps, desc=f"train ({processes} ranks)", unit="step")
    with open(log, "w", encoding="utf-8") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        while proc.poll() is None:
            time.sleep(poll_s)
            if bar is not None:
                bar.n = min(total_steps, _logged_steps(Path(step_log) if step_log else None))
                bar.refresh()
    if bar is not None:
        bar.n = min(total_steps, _logged_steps(Path(step_log) if step_log else None))
        bar.close()
    if proc.returncode != 0:
        raise LaunchError(f"accelerate launch exited with {proc.returncode} after {time.perf_counter() - started:.0f}"
                          f" s: {failure_cause(log)}; the log is {log}, the command {launch_dir / 'command.sh'}")
    return log


def failure_cause(log: Path) -> str:
    """What stopped a launch, from its log: a rank's own one-line error (`error: ...`, as `cogito_lib.train`
    prints it) or exception line, not the launcher's traceback that follows it."""
    lines = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    pattern = re.compile(r"^(\[rank\d+\]: )?(error: |\w+(Error|Exception): )")
    found = next((line for line in lines if pattern.match(line)), None)
    return re.sub(r"^\[rank\d+\]: ", "", found) if found else "no error line; see the log"
