"""Recording what a notebook measured, so the runner can merge every stage into `RUN_DIR/metrics.json`.

Each notebook's last cell calls `record_metrics(RUN_DIR, "02-data-collection", {...})`. The figures go to the
stage's own `metrics.json` and are merged into the run's `metrics.json` under `stages.<stage>`; the runner adds
each notebook's wall time under `notebooks.<stage>`. Figures are never typed in by hand: they come from here.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Mapping

from .io import read_json, write_json

RUN_METRICS = "metrics.json"


def _jsonable(value: Any) -> Any:
    """Plain JSON types (numpy scalars and paths converted; NaN/inf become None so the file stays valid JSON)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, os.PathLike):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"metric value of type {type(value).__name__} is not JSON-serialisable: {value!r}")


def merge_run_metrics(run_dir: str | os.PathLike, section: str, key: str, values: Mapping[str, Any], *,
                      replace: bool = False) -> dict:
    """Merge `values` into `RUN_DIR/metrics.json` at `[section][key]` (atomic rewrite) and return the file's content;
    `replace` drops what the entry held before (a rerun's record must not keep an earlier failure's fields)."""
    path = Path(run_dir) / RUN_METRICS
    data = read_json(path, default={}) or {}
    entry = data.setdefault(section, {})
    if replace:
        entry[key] = {}
    entry.setdefault(key, {}).update(_jsonable(dict(values)))
    write_json(path, data)
    return data


def record_metrics(run_dir: str | os.PathLike, stage: str, metrics: Mapping[str, Any]) -> dict:
    """Record a stage's figures: `RUN_DIR/<stage>/metrics.json` and the run's merged `metrics.json`."""
    values = _jsonable(dict(metrics))
    stage_dir = Path(run_dir) / stage
    write_json(stage_dir / RUN_METRICS, values)
    merge_run_metrics(run_dir, "stages", stage, values)
    print(f"recorded {len(values)} metrics for {stage} -> {Path(run_dir) / RUN_METRICS}")
    return values


def load_run_metrics(run_dir: str | os.PathLike) -> dict:
    return read_json(Path(run_dir) / RUN_METRICS, default={}) or {}


def format_metrics(metrics: Mapping[str, Any]) -> str:
    return json.dumps(_jsonable(dict(metrics)), indent=2, sort_keys=True)
