"""Cogito-pipe stage 1 (data collection) over the procedural world: parallel, resumable, deterministic.

Layout of `RUN_DIR/<out_subdir>/`:
    audio/<clip_id>.wav      16-bit PCM mono, written atomically by the worker that made it
    manifest.partial.jsonl   journal: one line per finished clip, appended as clips finish (deleted at the end)
    manifest.jsonl           the final manifest, sorted by index (written atomically at the end)
    failures.jsonl           one line per clip that could not be synthesised (index, clip_id, modality, reason)
    stats.json               counts, throughput and the world fingerprint
    tts-cache/               espeak-ng outputs per (text, voice, rate) (deterministic, only saves time)

Resume: a clip counts as done when its journal (or final manifest) line exists for the same world fingerprint
and its wav is the one written then (its content hash, `audio_sha256` in the record); everything else is made
again, and a wav found missing, cut short or changed is counted by reason in stats.json (`remade`). Because clips
are deterministic, a run killed with `kill -9` and rerun ends with the same manifest, failures and wavs as an
uninterrupted run. Failures are not journalled:
each run retries them once (they are usually environmental, e.g. espeak-ng missing), so a rerun after fixing the
cause fills them in, and a deterministic failure is simply reported again.
"""
from __future__ import annotations

import collections
import dataclasses
import multiprocessing
import sys
import time
from pathlib import Path

from cogito_lib.config import Profile, WorldConfig, num_workers
from cogito_lib.io import (AUDIO_HASH, JsonlJournal, atomic_write_bytes, clean_stage_dir, clip_problem,
                           content_hash, encode_wav, read_json, read_jsonl, stable_id, write_json, write_jsonl)
from cogito_lib.layout import COLLECT as STAGE_DIR
from cogito_lib.layout import writes_stage
from cogito_lib.world.facts import FACT_KINDS, LAYERS
from cogito_lib.world.scenes import MODALITIES, clip_id, generate_clip
from cogito_lib.world.tts import TTSError

JOURNAL = "manifest.partial.jsonl"
TTS_CACHE = "tts-cache"


def world_fingerprint(world: WorldConfig, world_seed: int, split: str) -> str:
    """Identifies what a stage folder's clips were made from; clips of another fingerprint are not reused."""
    return stable_id(dataclasses.asdict(world), world_seed, split)


def failure_reason(err: BaseException) -> str:
    """A short, actionable reason for failures.jsonl (known errors carry their own fix)."""
    if isinstance(err, TTSError):
        return str(err)
    return f"{type(err).__name__}: {err}"


def make_clip(world: WorldConfig, world_seed: int, split: str, index: int, stage_dir: str) -> dict:
    """Worker task: synthesise one clip, write its wav atomically, return {'record': ...} or {'failure': ...}."""
    try:
        audio, record = generate_clip(world, world_seed, index, split, tts_cache=Path(stage_dir) / TTS_CACHE)
        data = encode_wav(audio, world.sample_rate)
        atomic_write_bytes(Path(stage_dir) / record["audio_path"], data)
        record[AUDIO_HASH] = content_hash(data)  # later stages and reruns check the clip against it
        return {"record": record}
    except Exception as err:  # noqa: BLE001 - any synthesis error is logged with its reason; the stage goes on
        return {"failure": {"index": index, "clip_id": clip_id(split, world_seed, index),
                            "modality": MODALITIES[index % len(MODALITIES)], "reason": failure_reason(err)}}


def _make_clip_star(args: tuple) -> dict:
    return make_clip(*args)


def _previous_records(stage_dir: Path, fingerprint: str, wanted: dict[int, str],
                      remade: collections.Counter | None = None) -> dict[int, dict]:
    """Records of clips already done (final manifest of a finished run, then the journal) whose wav is still the one
    written then; the others are counted in `remade` by reason (audio_missing, audio_truncated, ...)."""
    done: dict[int, dict] = {}
    stats = read_json(stage_dir / "stats.json", default={}) or {}
    if stats.get("world_fingerprint") == fingerprint:
        done.update({r["index"]: r for r in read_jsonl(stage_dir / "manifest.jsonl")})
    for entry in read_jsonl(stage_dir / JOURNAL):
        if entry.get("fingerprint") == fingerprint:
            done[entry["record"]["index"]] = entry["record"]
    kept = {}
    for i, r in done.items():
        if wanted.get(i) != r.get("clip_id"):
            continue
        wav = stage_dir / r["audio_path"]
        problem = clip_problem(wav, r.get(AUDIO_HASH) if isinstance(r.get(AUDIO_HASH), str) else None)
        if problem is None:
            if not isinstance(r.get(AUDIO_HASH), str):  # written before clips carried their hash: record it now
                r = {**r, AUDIO_HASH: content_hash(wav.read_bytes())}
            kept[i] = r
        elif remade is not None:
            remade[problem[0]] += 1
    return kept


def _run_tasks(tasks: list[tuple], workers: int):
    """Yield task results: in-process for one worker, else from a spawn/forkserver pool (no fork after torch)."""
    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            yield make_clip(*task)
        return
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    with multiprocessing.get_context(method).Pool(min(workers, len(tasks))) as pool:
        yield from pool.imap_unordered(_make_clip_star, tasks, chunksize=1)


def summarise(records: list[dict], failures: list[dict]) -> dict:
    """Counts by modality, fact kind, layer, scene and failure reason."""
    count = collections.Counter
    return {
        "num_clips": len(records),
        "num_failed": len(failures),
        "failures_by_reason": dict(sorted(count(f["reason"] for f in failures).items())),
        "clips_by_modality": {m: sum(r["modality"] == m for r in records) for m in MODALITIES},
        "clips_by_fact_kind": {k: sum(k in r["facts"] for r in records) for k in FACT_KINDS},
        "clips_by_layer": {layer: sum(layer in r["layers"] for r in records) for layer in LAYERS},
        "clips_by_scene": dict(sorted(count(r["scene"] for r in records).items())),
        "total_audio_s": round(sum(r["duration_s"] for r in records), 3),
    }


@writes_stage(lambda arguments: arguments["out_subdir"])
def collect(profile: Profile, run_dir: str | Path, *, num_clips: int | None = None, seed: int | None = None,
            split: str = "curation", out_subdir: str = STAGE_DIR, workers: int | None = None,
            progress: bool = True) -> dict:
    """Synthesise `num_clips` world clips with their metadata into `RUN_DIR/<out_subdir>/` (stage 1 in the
    miniature; also the pretraining, check, tour and benchmark splits in every profile).

    Defaults come from `profile.collect` (num_clips, seed, workers; 0 workers = all cores). Resumable and
    deterministic (see the module docstring). Returns the stats dict that is also written to stats.json.
    """
    start = time.perf_counter()
    world = profile.world
    num_clips = profile.collect.num_clips if num_clips is None else int(num_clips)
    world_seed = profile.collect.seed if seed is None else int(seed)
    workers = num_workers(profile.collect.workers if workers is None else int(workers))
    stage_dir = Path(run_dir) / out_subdir
    (stage_dir / "audio").mkdir(parents=True, exist_ok=True)
    fingerprint = world_fingerprint(world, world_seed, split)

    wanted = {i: clip_id(split, world_seed, i) for i in range(num_clips)}
    remade: collections.Counter = collections.Counter()
    records = _previous_records(stage_dir, fingerprint, wanted, remade)
    resumed = len(records)
    tasks = [(world, world_seed, split, i, str(stage_dir)) for i in range(num_clips) if i not in records]
    failures: list[dict] = []
    from tqdm.auto import tqdm

    with JsonlJournal(stage_dir / JOURNAL) as journal, \
            tqdm(total=num_clips, initial=resumed, desc="collect", unit="clip", disable=not progress,
                 file=sys.stderr) as bar:
        for result in _run_tasks(tasks, workers):
            if "record" in result:
                records[result["record"]["index"]] = result["record"]
                journal.append({"fingerprint": fingerprint, "record": result["record"]})
            else:
                failures.append(result["failure"])
            bar.update(1)

    manifest = [records[i] for i in sorted(records)]
    failures.sort(key=lambda f: f["index"])
    write_jsonl(stage_dir / "manifest.jsonl", manifest)
    write_jsonl(stage_dir / "failures.jsonl", failures)
    clean_stage_dir(stage_dir, {r["audio_path"] for r in manifest})
    wall_s = time.perf_counter() - start
    stats = {"num_requested": num_clips, **summarise(manifest, failures), "wall_s": round(wall_s, 3),
             "clips_per_s": round(len(tasks) / wall_s, 3) if wall_s > 0 else 0.0, "workers": workers,
             "resumed": resumed, "split": split, "world_seed": world_seed, "world_fingerprint": fingerprint,
             "remade": dict(sorted(remade.items()))}
    if remade:
        print(f"collect: made {sum(remade.values())} clip(s) again whose wav had changed since it was written "
              f"({', '.join(f'{k} {n}' for k, n in sorted(remade.items()))})", file=sys.stderr)
    write_json(stage_dir / "stats.json", stats)
    (stage_dir / JOURNAL).unlink(missing_ok=True)
    return stats
