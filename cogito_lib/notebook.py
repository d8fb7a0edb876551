"""What every stage notebook does after its parameters cell: load the profile, find the run dir."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from .config import Profile, load_profile, resolve_run_dir

KEEP = (-1, "", None)  # a notebook parameter with one of these values keeps the profile's value


def _keeps_profile_value(value: Any) -> bool:
    if value is None or isinstance(value, bool):
        return value is None
    if isinstance(value, (int, float)):
        return value == -1
    return value == ""


def setup_stage(profile_name: str, run_dir: str | None, stage: str,
                overrides: Mapping[str, Any] | None = None) -> tuple[Profile, Path, Path]:
    """Validate the profile (with the notebook's overrides), create `RUN_DIR/<stage>/` and return
    `(profile, run_dir, stage_dir)`. Fails before any work on a bad profile, key or type.

    Overrides equal to -1, "" or None keep the profile's value (papermill parameters must be plain literals)."""
    kept = {key: value for key, value in (overrides or {}).items() if not _keeps_profile_value(value)}
    profile = load_profile(profile_name, kept)
    run_path = resolve_run_dir(profile, run_dir)
    stage_dir = run_path / stage
    stage_dir.mkdir(parents=True, exist_ok=True)
    print(f"profile {profile.name} ({profile.description})")
    print(f"run dir {run_path}")
    return profile, run_path, stage_dir
