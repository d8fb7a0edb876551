"""What every stage notebook does after its parameters cell: load the profile and the run configuration,
find the run dir, print what is in effect.

Where a notebook writes:
- `RUN_DIR` when it is set: the runner (`make reproduce`, `python -m cogito_lib.run`) always sets it;
- else `$COGITO_RUN_DIR` when that is set (a JupyterHub's per-user folder, the nbval test tier);
- else `runs/<profile>-lab/`, the folder of an interactive session, so that running a notebook in JupyterLab never
  rewrites the run `make reproduce` wrote (`runs/<profile>/`, its metrics included).

A session's folder starts from an executed run (`$COGITO_START_FROM`, else `runs/<profile>/` when it exists) so that
a notebook opened in Lab finds the earlier stages' files at once: earlier stage folders are linked (read only), and
the notebook's own stage folder is copied (its caches reused) the first time it runs. Nothing is ever written into
the executed run.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Mapping

from . import layout
from .config import (REPO_ROOT, ConfigError, Profile, RunConfig, config_text, load_profile, profile_changes,
                     read_config_file, resolve_run_dir)
from .progress import quiet_library_bars

KEEP = (-1, "", None)  # a notebook parameter with one of these values keeps the profile's value
SEED_STRIDE = 10_000  # replicate seed S moves a stage's seeds by S * SEED_STRIDE (clear of every profile seed)
RUN_DIR_ENV = "COGITO_RUN_DIR"  # where a notebook with an empty RUN_DIR writes
START_FROM_ENV = "COGITO_START_FROM"  # the executed run a session's run dir reads earlier stages from
LAB_SUFFIX = "-lab"  # runs/<profile>-lab: an interactive session's own run dir


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


def session_run_dir(profile: Profile, run_dir: str | None) -> tuple[Path, Path | None]:
    """(the run dir a notebook writes to, the executed run it starts from or None); see the module docstring."""
    if run_dir:
        return resolve_run_dir(profile, run_dir), None
    start_from = os.environ.get(START_FROM_ENV) or None
    if os.environ.get(RUN_DIR_ENV):
        target = resolve_run_dir(profile, os.environ[RUN_DIR_ENV])
    else:
        target = REPO_ROOT / "runs" / f"{profile.name}{LAB_SUFFIX}"
        start_from = start_from or str(REPO_ROOT / "runs" / profile.name)  # where `make reproduce` writes
    source = Path(start_from).expanduser().resolve() if start_from else None
    if source is not None and (not source.is_dir() or source == target.resolve()):
        source = None
    return target, source


def _copy_stage(source: Path, target: Path) -> None:
    """Copy a stage folder with its files' times (the stages' caches compare them) and its relative links; the
    copy lands whole or not at all."""
    partial = target.with_name(f".{target.name}.copying")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(source, partial, symlinks=True, copy_function=shutil.copy2)
    if target.is_symlink():
        target.unlink()
    os.replace(partial, target)


def start_from(source: str | Path, run_dir: str | Path, stage: str) -> list[str]:
    """Prepare `run_dir` for `stage` from the executed run `source`: link every earlier stage folder it lacks, and
    give `stage` a folder of its own (a copy of the source's, so finished work is reused; a link is replaced by a
    copy). Returns one line per change; `source` is only read."""
    source, run_dir = Path(source), Path(run_dir)
    if stage not in layout.STAGES:
        return []
    notes = []
    earlier = [s for s in layout.STAGES[:layout.STAGES.index(stage)] if (source / s).is_dir()]
    linked = [s for s in earlier if not os.path.lexists(run_dir / s)]
    if linked:
        layout.link_stages(source, run_dir, linked)
        notes.append(f"reads {', '.join(linked)} from {source} (linked, read only)")
    own = run_dir / stage
    if (own.is_symlink() or not own.exists()) and (source / stage).is_dir():
        _copy_stage(source / stage, own)
        notes.append(f"copied {stage} from {source}: its finished work is reused, and rewritten here only")
    elif own.is_symlink():
        own.unlink()
    return notes


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
    `replicate_seed`, so that 3 seeds are 3 independent replicates of the stage. An empty `run_dir` is a
    session's own folder (see the module docstring)."""
    quiet_library_bars()
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
    run_path, source = session_run_dir(profile, run_dir or file.run_dir)
    notes = start_from(source, run_path, stage) if source is not None else []
    stage_dir = run_path / stage
    stage_dir.mkdir(parents=True, exist_ok=True)
    print(f"profile {profile.name} ({profile.description})")
    print(f"run dir {run_path}")
    print(resolved_text(profile, config))
    if not (run_dir or file.run_dir):
        print(f"  (RUN_DIR is empty: this session writes here{'' if source is None else ', never into ' + str(source)})")
    for note in notes:
        print(f"  {note}")
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


def exercise_run(run_dir: str | Path, name: str, reads: tuple[str, ...]) -> Path:
    """A scratch run dir for an exercise, `RUN_DIR/exercises/<name>/`, that reads the stage folders `reads` from
    `run_dir` (linked) and writes everything else itself: rerun a stage there with other settings and compare,
    without touching the run."""
    return layout.link_stages(run_dir, Path(run_dir) / layout.EXERCISES / name, reads)
