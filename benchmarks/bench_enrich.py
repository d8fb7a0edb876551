"""Throughput of the optional metadata enrichers (cogito_lib.sources.enrich) on synthetic 5 s clips, CPU.

    python benchmarks/bench_enrich.py --num-clips 20 [--threads 0]

Half the clips are espeak-ng speech between silences, half are tone sequences. Each enricher runs alone on every
clip (force=True, so the thin-metadata rule does not skip any); clips/s and the real-time factor (seconds of audio
per second of compute) exclude the one-off model load, which is reported apart. Needs `pip install -e '.[enrich]'`
and espeak-ng; an absent enricher is reported as skipped.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from cogito_lib.config import num_workers
from cogito_lib.sources.enrich import ENRICHERS, SAMPLE_RATE, enrich_records

PHRASES = ["the weather is lovely today", "please open the window before the meeting",
           "seven green bottles are standing on the wall", "the train to the city leaves at noon",
           "music and laughter filled the quiet hall"]


def make_clips(stage_dir: Path, num_clips: int, seconds: float = 5.0, seed: int = 0) -> list[dict]:
    from cogito_lib.world.tts import synthesize

    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    records = []
    for i in range(num_clips):
        audio = rng.normal(0, 1e-3, n)
        if i % 2 == 0:  # speech, placed after a random pause
            speech = synthesize(PHRASES[(i // 2) % len(PHRASES)], "en+m3" if i % 4 else "en+f3", 150, SAMPLE_RATE)
            speech = speech[: n - SAMPLE_RATE // 2]
            onset = int(rng.uniform(0.2, 0.5) * SAMPLE_RATE)
            audio[onset:onset + len(speech)] += speech
        else:  # five tones with random pitches
            t = np.arange(n // 5) / SAMPLE_RATE
            audio += np.concatenate([0.3 * np.sin(2 * np.pi * rng.uniform(150, 900) * t) for _ in range(5)])[:n]
        path = f"clip{i:03d}.wav"
        sf.write(stage_dir / path, audio.astype(np.float32), SAMPLE_RATE, subtype="PCM_16")
        records.append({"clip_id": f"clip{i:03d}", "audio_path": path, "facts": {}})
    return records


def bench(num_clips: int = 20, threads: int = 0) -> dict:
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-enrich-") as tmp:
        stage_dir = Path(tmp)
        records = make_clips(stage_dir, num_clips)
        audio_s = sum(sf.info(stage_dir / r["audio_path"]).duration for r in records)
        for name in ENRICHERS:
            start = time.perf_counter()
            stats = enrich_records([dict(r, facts={}) for r in records], stage_dir, [name], progress=False,
                                   force=True, threads=threads)[name]
            wall = time.perf_counter() - start
            if stats["status"] != "ran":
                results[name] = {"status": "skipped", "reason": stats["reason"]}
                continue
            compute = stats["seconds"] - stats["load_seconds"]
            results[name] = {"status": "ran", "model": stats["model"], "clips": stats["clips_enriched"],
                             "failed": stats["clips_failed"], "load_s": round(stats["load_seconds"], 2),
                             "compute_s": round(compute, 2), "wall_s": round(wall, 2),
                             "clips_per_s": round(stats["clips_enriched"] / compute, 2),
                             "realtime_factor": round(stats["audio_s"] / compute, 1)}
    return {"num_clips": num_clips, "audio_s": round(audio_s, 1), "threads": num_workers(threads),
            "enrichers": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-clips", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads; 0 = every usable core")
    args = parser.parse_args()
    result = bench(args.num_clips, args.threads)
    print(f"{result['num_clips']} clips, {result['audio_s']:.0f} s of audio, {result['threads']} threads")
    for name, r in result["enrichers"].items():
        if r["status"] != "ran":
            print(f"  {name:<10}: skipped ({r['reason']})")
            continue
        print(f"  {name:<10}: {r['clips_per_s']:6.2f} clips/s, {r['realtime_factor']:6.1f}x real time "
              f"(load {r['load_s']:.1f} s; {r['model']})")
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
