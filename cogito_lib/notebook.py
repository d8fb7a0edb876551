"""What every stage notebook does after its parameters cell: load the profile and the run configuration,
find the run dir, print what is in effect."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from .config import (ConfigError, Profile, RunConfig, config_text, load_profile, profile_changes,
                     read_config_file, resolve_run_dir)

KEEP = (-1, "", None)  # a notebook parameter with one of these values keeps the profile's value
SEED_STRIDE = 10_000  # replicate seed S moves a stage's seeds by S * SEED_STRIDE (clear of every profile seed)


def replicate_seed(profile_seed: int, seed: int) -> int:
    """The seed a stage uses in replicate `seed` (the notebooks' `SEED` parameter): replicate 0 is the profile's
    own seed, so the default run and seed 0 share their results; -1 also keeps the profile's seed."""
    if seed is None or int(seed) < 0:
        return int(profile_seed)
    return int(profile_seed) + SEED_STRIDE * int(seed)


def _keeps_profile_value(value: Any) -> bool:
    if value is None or isinstance(value, bool):
        return value is None
    if isinstance(value, (int, float)):
        return value == -1
    return value == ""


def setup_stage(profile_name: str, run_dir: str | None, stage: str,
                overrides: Mapping[str, Any] | None = None, *, seed: int = -1,
                seed_keys: tuple[str, ...] = (), config: str = "") -> tuple[Profile, Path, Path]:
    """Validate the profile (with the run configuration and the notebook's overrides), create `RUN_DIR/<stage>/`,
    print the resolved configuration and return `(profile, run_dir, stage_dir)`. Fails before any work on a bad
    profile, file, key or type.

    `config` (the notebooks' `CONFIG` parameter) is a TOML run configuration (`cogito_lib.config`); the runner
    passes the one it resolved for the whole run (`RUN_DIR/config.toml`). A profile it names wins over
    `profile_name`, and its `run_dir` is used when `run_dir` is empty. Overrides equal to -1, "" or None keep the
    profile's value (papermill parameters must be plain literals); the others apply on top of the file's.
    `seed` (the notebook's `SEED`, a replicate number) moves each profile seed named in `seed_keys` with
    `replicate_seed`, so that 3 seeds are 3 independent replicates of the stage."""
    kept = {key: value for key, value in (overrides or {}).items() if not _keeps_profile_value(value)}
    file = read_config_file(config) if config else RunConfig("")
    if file.profile and profile_name and file.profile != profile_name:
        print(f"CONFIG {config} names profile {file.profile!r}: it is used (PROFILE = {profile_name!r} is not)")
    name = file.profile or profile_name
    try:
        profile = load_profile(name, {**file.overrides, **kept})
        if seed_keys and not _keeps_profile_value(seed):
            moved = {}
            for key in seed_keys:
                section, _, attr = key.partition(".")
                moved[key] = replicate_seed(getattr(getattr(profile, section), attr), seed)
            profile = load_profile(name, {**file.overrides, **kept, **moved})
            print("replicate seed " + str(seed) + ": " + ", ".join(f"{k} = {v}" for k, v in moved.items()))
    except ConfigError as err:
        raise ConfigError(f"{config}: {err}" if config else str(err)) from None
    run_path = resolve_run_dir(profile, run_dir or file.run_dir)
    stage_dir = run_path / stage
    stage_dir.mkdir(parents=True, exist_ok=True)
    print(f"profile {profile.name} ({profile.description})")
    print(f"run dir {run_path}")
    print(resolved_text(profile, config))
    return profile, run_path, stage_dir


def resolved_text(profile: Profile, source: str | None = "") -> str:
    """The resolved configuration in words: its source and, as TOML, every value that differs from the profile."""
    changes = profile_changes(profile)
    where = f"from {source}" if source else "no CONFIG file"
    if not changes:
        return f"configuration ({where}): profile {profile.name!r} as shipped, no overrides"
    body = config_text(profile, changes).rstrip("\n")
    return (f"configuration ({where}): profile {profile.name!r} with {len(changes)} value(s) changed\n"
            + "\n".join("    " + line if line else "" for line in body.splitlines()))
