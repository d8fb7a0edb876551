"""Prerequisite checks for a profile: kernel, TTS engine, GPU, model weights, dataset roots.

`python -m cogito_lib.run --profile paper --plan` prints these without running anything, and notebook 00 shows
them as a table. Each failed check says what is missing and what to do about it.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from .config import DATASET_ENV, Profile

KERNEL_NAME = "cogito"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    message: str

    def line(self) -> str:
        return f"[{'ok' if self.ok else 'MISSING'}] {self.name}: {self.message}"


def check_kernel(name: str = KERNEL_NAME) -> Check:
    try:
        from jupyter_client.kernelspec import KernelSpecManager

        specs = KernelSpecManager().find_kernel_specs()
    except ImportError:
        specs = {}
    if name in specs:
        return Check("jupyter kernel", True, f"'{name}' at {specs[name]}")
    return Check("jupyter kernel", False,
                 f"kernel '{name}' is not registered: run `make venv` (it runs "
                 f"`.venv/bin/python -m ipykernel install --sys-prefix --name {name}`)")


def check_tts(engine: str) -> Check:
    if shutil.which(engine):
        return Check("TTS engine", True, f"{engine} at {shutil.which(engine)}")
    return Check("TTS engine", False,
                 f"{engine} not found on PATH: install it (Debian/Ubuntu: `sudo apt-get install -y {engine}`); "
                 "`make venv` does this when run as root")


def check_gpu(profile: Profile) -> Check:
    try:
        import torch
    except ImportError:
        return Check("GPU", not profile.requires_gpu, "torch is not installed: run `make venv`")
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        return Check("GPU", True, f"{torch.cuda.device_count()} CUDA device(s): {names}")
    if profile.requires_gpu:
        return Check("GPU", False, f"profile '{profile.name}' needs CUDA GPUs and none is visible "
                                   "(torch.cuda.is_available() is False)")
    return Check("GPU", True, f"not needed: profile '{profile.name}' runs on the CPU")


def _local_weights(model_id: str) -> str | None:
    """Where `model_id`'s weights are on this machine (a folder, or the HF cache), or None."""
    path = Path(model_id).expanduser()
    if path.is_dir():
        return str(path) if (path / "config.json").exists() else None
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(model_id, "config.json")
        return found if isinstance(found, str) else None
    except Exception:
        return None


def check_weights(role: str, model_id: str) -> Check:
    if model_id in ("tiny", "metadata"):
        return Check(f"{role} weights", True, f"'{model_id}': built or computed here, nothing to download")
    where = _local_weights(model_id)
    if where:
        return Check(f"{role} weights", True, f"{model_id} found at {where}")
    return Check(f"{role} weights", False,
                 f"{model_id} not found locally: on a machine with hub access run "
                 f"`huggingface-cli download {model_id} --local-dir /models/{model_id.split('/')[-1]}`, copy it "
                 f"here and pass that folder as models.{role}")


def check_dataset_root(name: str, root: str | None) -> Check:
    var = DATASET_ENV[name]
    if not root:
        return Check(f"dataset {name}", False, f"root not set: export {var}=/path/to/{name}")
    if not Path(root).is_dir():
        return Check(f"dataset {name}", False, f"{var}={root} is not a folder")
    return Check(f"dataset {name}", True, f"{var}={root}")


def check_dataset_sources(profile: Profile) -> list[Check]:
    """Per dataset of the collect mix: root set, a folder, and its adapter's metadata files found there."""
    from .sources.checks import dataset_checks

    return [Check(name, ok, message) for name, ok, message in dataset_checks(profile)]


def check_prerequisites(profile: Profile) -> list[Check]:
    """Every check that matters for `profile`, in the order a user should fix them."""
    checks = [check_kernel(), check_gpu(profile)]
    if profile.collect.source == "world" or profile.eval.benchmark == "mmar-synth":
        checks.append(check_tts(profile.world.tts_engine))
    for role in ("base", "annotator", "judge"):
        checks.append(check_weights(role, getattr(profile.models, role)))
    if profile.collect.source == "datasets":
        checks.extend(check_dataset_sources(profile))
    if profile.eval.benchmark == "mmar":
        check = check_dataset_root("mmar", profile.datasets.mmar)
        if check.ok and not (Path(profile.datasets.mmar) / "MMAR-meta.jsonl").exists():
            check = Check("dataset mmar", False, f"{profile.datasets.mmar}/MMAR-meta.jsonl not found")
        checks.append(check)
    return checks


def check_stage_inputs(profile: Profile, run_dir: str | Path, stages: list[str]) -> list[Check]:
    """For the stages about to run (in order): each input an earlier stage writes (`layout.READS`) is either in
    the run dir or written by a stage that runs before it; otherwise MISSING, naming the notebook that makes it."""
    from . import layout

    checks, seen = [], set()
    for position, stage in enumerate(stages):
        before = set(stages[:position])
        for name in layout.READS.get(stage, ()):
            if name in seen:
                continue
            if name == "base":
                if profile.models.base != "tiny":
                    continue  # a checkpoint: the weights check above covers it
                if layout.BASE in before:
                    checks.append(Check("base model", True, f"written by notebook 01 before {stage}"))
                else:
                    try:
                        checks.append(Check("base model", True, layout.base_model_path(profile, run_dir)))
                    except layout.MissingInput as err:
                        checks.append(Check("base model", False, f"{stage} needs it: {err}"))
            elif name == "pretrain" and profile.models.base != "tiny":
                continue  # only the miniature's base has pretraining data (base_cont's)
            else:
                source = layout.FILES[name]
                label = source.relative.as_posix()
                if source.stage in before:
                    checks.append(Check(label, True, f"written by {layout.maker(source.stage)} before {stage}"))
                else:
                    try:
                        checks.append(Check(label, True, str(layout.require(run_dir, name))))
                    except layout.MissingInput as err:
                        checks.append(Check(label, False, f"{stage} needs it: {err}"))
            seen.add(name)
    return checks
