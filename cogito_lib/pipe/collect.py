"""Cogito-pipe stage 1 (data collection): the curation pool, from the procedural world or the paper's datasets.

`collect.source` picks the source: "world" synthesises clips with complete ground-truth metadata (the
miniature, `cogito_lib.world.collect`); "datasets" samples the paper's ten corpora from local folders
(`cogito_lib.sources.collect_datasets`). Both write the same stage folder and manifest record shape, so stages 2-4
never ask where a clip came from.
"""
from __future__ import annotations

from pathlib import Path

from ..config import ConfigError, Profile
from ..layout import COLLECT
from ..sources import collect_datasets
from ..world import collect as collect_world


def collect(profile: Profile, run_dir: str | Path, *, num_clips: int | None = None, seed: int | None = None,
            out_subdir: str = COLLECT, workers: int | None = None, progress: bool = True) -> dict:
    """Stage 1 into `RUN_DIR/<out_subdir>/` (manifest.jsonl, audio/, failures.jsonl, stats.json) from the profile's
    `collect.source`; resumable and deterministic. Returns the stats that are also written to stats.json."""
    source = profile.collect.source
    if source == "datasets":
        return collect_datasets(profile, run_dir, num_clips=num_clips, seed=seed, workers=workers,
                                out_subdir=out_subdir, progress=progress)
    if source == "world":
        return collect_world(profile, run_dir, num_clips=num_clips, seed=seed, split="curation",
                             out_subdir=out_subdir, workers=workers, progress=progress)
    raise ConfigError(f"collect.source = {source!r}: choose 'world' or 'datasets'")
