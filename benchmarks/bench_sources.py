"""Throughput of the paper-scale stage 1 adapters on fixtures: scan time and clips/s per dataset.

    python benchmarks/bench_sources.py --clips 200 --seconds 10

Writes tiny copies of the nine datasets with an adapter (tests/source_fixtures.py: each in its published layout,
synthetic tones, a third of them 44.1 kHz stereo, FMA and CoVoST2 as mp3), about `--clips` in all, each about
`--seconds` long, then samples each dataset alone (every clip, no broken files) with one worker and with every
core, after a warm-up (torch import, resampling kernels, worker start). Each figure is the whole stage call (scan,
decode, resample, write, manifest). Reported, never asserted: real corpora are bound by disk and codec.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import source_fixtures as sfx  # noqa: E402

from cogito_lib.config import DATASET_ENV, load_profile, num_workers  # noqa: E402
from cogito_lib.sources import ADAPTERS, collect_datasets  # noqa: E402
from cogito_lib.sources.audio import resample  # noqa: E402


def bench(clips: int, seconds: float, workers_all: int) -> list[dict]:
    per_dataset = max(1, clips // len(sfx.WRITERS))
    sfx.DURATION_SCALE = seconds / 0.6
    for var in DATASET_ENV.values():
        os.environ.pop(var, None)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-sources-") as tmp:
        base = Path(tmp)
        fixtures = {name: writer(base / "data" / name, per_dataset, False) for name, writer in sfx.WRITERS.items()}
        for rate in (22050, 44100, 48000):  # warm-up: torch import, resampling kernels, the forkserver
            resample(np.zeros(rate, dtype=np.float32), rate, 16000)
        for workers in sorted({1, workers_all}):
            warm = fixtures["medley_solos_db"].root
            collect_datasets(load_profile("paper", {"datasets.medley_solos_db": str(warm), "collect.workers": workers,
                                                    "collect.mix": "medley_solos_db=1", "collect.num_clips": 4,
                                                    "collect.enrichers": ()}),
                             base / f"warm-{workers}", progress=False)
        for name, fx in fixtures.items():
            start = time.perf_counter()
            items = ADAPTERS[name].scan(fx.root).items
            scan_s = time.perf_counter() - start
            row = {"dataset": name, "clips": len(items), "scan_s": round(scan_s, 4)}
            for workers in sorted({1, workers_all}):
                profile = load_profile("paper", {f"datasets.{name}": str(fx.root), "collect.mix": f"{name}=1",
                                                 "collect.num_clips": len(items), "collect.workers": workers,
                                                 "collect.enrichers": (), "collect.max_clip_s": 30.0})
                stats = collect_datasets(profile, base / f"run-{name}-{workers}", progress=False)
                row[f"clips_per_s_{workers}w"] = stats["clips_per_s"]
                row[f"audio_s_per_s_{workers}w"] = round(stats["total_audio_s"] / stats["wall_s"], 1)
                row["obtained"] = stats["num_clips"]
            rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=200, help="fixture clips over all adapters")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each fixture clip")
    parser.add_argument("--workers", type=int, default=0, help="the parallel setting (0 = all cores)")
    args = parser.parse_args()
    workers = num_workers(args.workers)
    rows = bench(args.clips, args.seconds, workers)
    print(f"{sum(r['clips'] for r in rows)} fixture clips of ~{args.seconds:g} s; 1 worker and {workers} workers")
    print(f"{'dataset':<16}{'clips':>6}{'scan s':>9}{'clips/s 1w':>12}{f'clips/s {workers}w':>12}")
    for r in rows:
        print(f"{r['dataset']:<16}{r['clips']:>6}{r['scan_s']:>9.3f}{r['clips_per_s_1w']:>12.1f}"
              f"{r.get(f'clips_per_s_{workers}w', r['clips_per_s_1w']):>12.1f}")
    print(json.dumps(rows, sort_keys=True))


if __name__ == "__main__":
    main()
