"""Throughput of Cogito-pipe stage 1: clips/s with one worker and with every core, and their ratio.

    python benchmarks/bench_collect.py --profile mini --num-clips 140

Each setting runs from an empty stage folder (cold TTS cache), so both pay the same espeak-ng work.
"""
from __future__ import annotations

import argparse
import json
import tempfile

from cogito_lib.config import load_profile, num_workers
from cogito_lib.world import collect


def bench(profile_name: str, num_clips: int, progress: bool = False) -> dict:
    """Run collect with 1 worker and with all cores; return both stats' clips/s and the speed-up."""
    profile = load_profile(profile_name)
    results = {}
    for workers in (1, num_workers(0)):
        with tempfile.TemporaryDirectory(prefix="bench-collect-") as run_dir:
            stats = collect(profile, run_dir, num_clips=num_clips, workers=workers, progress=progress)
        results[workers] = stats
    one, many = results[1], results[num_workers(0)]
    return {"profile": profile_name, "num_clips": num_clips, "cores": num_workers(0),
            "clips_per_s_1_worker": one["clips_per_s"], "clips_per_s_all_cores": many["clips_per_s"],
            "speedup": round(many["clips_per_s"] / one["clips_per_s"], 2), "num_failed": many["num_failed"],
            "total_audio_s": many["total_audio_s"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="mini")
    parser.add_argument("--num-clips", type=int, default=140)
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args()
    result = bench(args.profile, args.num_clips, args.progress)
    print(f"{result['profile']}: {result['num_clips']} clips, {result['total_audio_s']:.0f} s of audio")
    print(f"  1 worker      : {result['clips_per_s_1_worker']:.1f} clips/s")
    print(f"  {result['cores']} workers     : {result['clips_per_s_all_cores']:.1f} clips/s")
    print(f"  speed-up      : {result['speedup']:.2f}x")
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
