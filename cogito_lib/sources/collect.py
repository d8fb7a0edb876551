"""Cogito-pipe stage 1 at paper scale: sample the paper's datasets from local roots into the kit's manifest.

Same stage folder and record shape as the procedural world (`cogito_lib.world.collect`):
    audio/<clip_id>.wav      16-bit PCM mono at world.sample_rate (16 kHz), at most collect.max_clip_s long
    manifest.partial.jsonl   journal: one line per finished clip (deleted at the end)
    manifest.jsonl           final manifest, datasets in the paper's order, each in its sampled order
    failures.jsonl           every skipped audio file and malformed metadata row, with its reason
    stats.json               counts, the sampling plan (planned / available / obtained / shortfall) and throughput

How it works: each planned dataset's adapter scans its root (metadata only); its items are shuffled with a seed
derived from `collect.seed` and the dataset's name; the first `quota` are decoded in parallel. An item whose audio
is missing, empty or undecodable is logged and replaced by the next one in the shuffled order, in waves, until the
quota is met or the dataset runs out (a shortfall, reported per dataset). Which items end up in the manifest
depends only on the data and the seed, never on worker timing.

Resume: a clip is done when its journal (or final manifest) line exists for the same fingerprint (sample rate,
max_clip_s, adapter version) and its wav exists. Failures are not journalled: a rerun retries them once.
"""
from __future__ import annotations

import collections
import multiprocessing
import sys
import time
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from cogito_lib.config import DATASET_ENV, ConfigError, Profile, num_workers
from cogito_lib.io import (AUDIO_HASH, JsonlJournal, atomic_write_bytes, clean_stage_dir, clip_problem, content_hash,
                           encode_wav, read_json, read_jsonl, stable_id, write_json, write_jsonl)
from cogito_lib.layout import COLLECT as STAGE_DIR
from cogito_lib.layout import writes_stage

from .audio import AudioError, load_clip, use_torch_threads
from .base import ScanResult, SourceError, SourceItem
from .plan import domain_shares, mix_weights, quotas
from .registry import ADAPTERS, FACT_LAYERS, layers_of

JOURNAL = "manifest.partial.jsonl"
ADAPTER_VERSION = 1  # bump when records of the same source item change
SPLIT = "curation"


def fingerprint(sample_rate: int, max_clip_s: float) -> str:
    return stable_id("sources", ADAPTER_VERSION, int(sample_rate), float(max_clip_s))


def clip_id_of(item: SourceItem) -> str:
    return f"{item.dataset}-{stable_id(item.dataset, item.item_id)}"


def _item_seed(seed: int, dataset: str) -> int:
    return int(stable_id("sample", int(seed), dataset), 16)


def shuffled(items: list[SourceItem], seed: int, dataset: str) -> list[SourceItem]:
    """The dataset's items in a fixed order (by item id), then permuted by (seed, dataset)."""
    ordered = sorted(items, key=lambda item: item.item_id)
    order = np.random.default_rng(_item_seed(seed, dataset)).permutation(len(ordered))
    return [ordered[i] for i in order]


# ---------------------------------------------------------------------------------------------------------------
# one clip (runs in a worker)

def _events(item: dict, duration_s: float) -> list[dict]:
    speech = item.get("speech")
    if not speech:
        return []  # the datasets' labels carry no timing: they live in facts
    event = {"kind": "speech", "label": "speech", "onset_s": 0.0, "offset_s": round(duration_s, 3),
             "role": "foreground", "text": speech.get("text")}
    for key in ("voice", "language"):
        if speech.get(key):
            event[key] = speech[key]
    return [event]


def make_dataset_clip(task: dict, stage_dir: str, sample_rate: int, max_clip_s: float) -> dict:
    """Decode one item, write its wav atomically and return {'record': ...}, or {'failure': ...} with the reason."""
    item = task["item"]
    try:
        samples, info = load_clip(item["audio"], target_rate=sample_rate, max_s=max_clip_s)
        wav_rel = f"audio/{task['clip_id']}.wav"
        data = encode_wav(samples, sample_rate)
        atomic_write_bytes(Path(stage_dir) / wav_rel, data)
    except AudioError as err:
        return {"failure": _failure(task, err.reason, err.detail)}
    except Exception as err:  # noqa: BLE001 - any other decoding error is logged, the stage goes on
        return {"failure": _failure(task, "audio_undecodable", f"{item['audio']}: {type(err).__name__}: {err}")}
    duration_s = samples.shape[0] / sample_rate
    facts = dict(item["facts"])
    if info["truncated"]:
        facts["clip_note"] = (f"the audio is the first {max_clip_s:g} s of a longer source; the metadata describes "
                              "the whole source")
    record = {
        "clip_id": task["clip_id"], "audio_path": wav_rel, "duration_s": round(duration_s, 3),
        "sample_rate": sample_rate, "num_samples": int(samples.shape[0]),
        "modality": task["domain"], "domain": task["domain"], "source": task["title"], "dataset": item["dataset"],
        "dataset_id": item["item_id"], "original_path": str(item["audio"]), "original_split": item["source_split"],
        "skill": item["skill"], "caption": item["caption"], "events": _events(item, duration_s), "facts": facts,
        "layers": layers_of(facts), "split": SPLIT, "truncated": info["truncated"],
        "source_rate": info["source_rate"], "source_channels": info["source_channels"],
        "source_info": item["info"], "metadata_row": item["where"],
        AUDIO_HASH: content_hash(data),  # later stages and reruns check the clip against it
    }
    return {"record": record}


def _failure(task: dict, reason: str, detail: str) -> dict:
    item = task["item"]
    return {"dataset": item["dataset"], "clip_id": task["clip_id"], "dataset_id": item["item_id"],
            "original_path": str(item["audio"]), "reason": reason, "detail": detail}


def _make_clip_star(args: tuple) -> dict:
    return make_dataset_clip(*args)


class _Runner:
    """Runs clip tasks in-process (1 worker) or in one spawn/forkserver pool kept for every wave."""

    def __init__(self, workers: int):
        self.workers = workers
        self.pool = None

    def run(self, tasks: list[tuple]) -> Iterator[dict]:
        if self.workers <= 1 or len(tasks) <= 1:
            for task in tasks:
                yield make_dataset_clip(*task)
            return
        if self.pool is None:
            method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
            context = multiprocessing.get_context(method)
            if method == "forkserver":  # import the decoder and torch once in the server, not once per worker
                context.set_forkserver_preload(["cogito_lib.sources.collect", "torchaudio"])
            self.pool = context.Pool(self.workers, initializer=use_torch_threads, initargs=(1,))
        yield from self.pool.imap_unordered(_make_clip_star, tasks, chunksize=1)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool.join()


# ---------------------------------------------------------------------------------------------------------------
# scanning

def scan_datasets(profile: Profile, names: Iterable[str], *, progress: bool = True) -> dict[str, dict]:
    """Scan each named dataset's root: {name: {"result": ScanResult | None, "reason": why there is nothing}}."""
    scans: dict[str, dict] = {}
    for name in names:
        adapter = ADAPTERS[name]
        root = getattr(profile.datasets, name)
        if not adapter.available:
            scans[name] = {"result": None, "reason": f"no adapter: {adapter.unavailable_reason}"}
            continue
        if not root:
            scans[name] = {"result": None, "reason": f"root not set: export {DATASET_ENV[name]}=/path/to/{name}"}
            continue
        if not Path(root).is_dir():
            scans[name] = {"result": None, "reason": f"{DATASET_ENV[name]}={root} is not a folder"}
            continue
        start = time.perf_counter()
        try:
            result = adapter.scan(Path(root))
        except SourceError as err:
            scans[name] = {"result": None, "reason": str(err)}
            continue
        if progress:
            print(f"scanned {adapter.title}: {len(result.items)} item(s), {len(result.bad_rows)} malformed row(s) in "
                  f"{time.perf_counter() - start:.1f} s", file=sys.stderr)
            for note in result.notes:
                print(f"  note: {note}", file=sys.stderr)
            for bad in result.bad_rows[:5]:
                print(f"  malformed row {bad.where()}: {bad.detail}", file=sys.stderr)
            if len(result.bad_rows) > 5:
                print(f"  ... {len(result.bad_rows) - 5} more in failures.jsonl", file=sys.stderr)
        scans[name] = {"result": result, "reason": "" if result.items else "no usable rows found"}
    return scans


# ---------------------------------------------------------------------------------------------------------------
# the stage

def _previous_records(stage_dir: Path, fp: str, remade: collections.Counter | None = None) -> dict[str, dict]:
    """Records of clips already done whose wav is still the one written then (content hash); the others are
    counted in `remade` by reason and decoded again."""
    done: dict[str, dict] = {}
    stats = read_json(stage_dir / "stats.json", default={}) or {}
    if stats.get("sources_fingerprint") == fp:
        done.update({r["clip_id"]: r for r in read_jsonl(stage_dir / "manifest.jsonl")})
    for entry in read_jsonl(stage_dir / JOURNAL):
        if entry.get("fingerprint") == fp and isinstance(entry.get("record"), dict):
            done[entry["record"]["clip_id"]] = entry["record"]
    kept = {}
    for cid, r in done.items():
        expected = r.get(AUDIO_HASH) if isinstance(r.get(AUDIO_HASH), str) else None
        problem = clip_problem(stage_dir / r["audio_path"], expected)
        if problem is None:
            kept[cid] = r if expected else {**r, AUDIO_HASH: content_hash((stage_dir / r["audio_path"]).read_bytes())}
        elif remade is not None:
            remade[problem[0]] += 1
    return kept


def summarise(records: list[dict], failures: list[dict]) -> dict:
    count = collections.Counter
    from cogito_lib.world import LAYERS, MODALITIES

    return {
        "num_clips": len(records),
        "num_failed": sum(f["reason"] != "bad_metadata_row" and f["reason"] != "dataset_unreadable" for f in failures),
        "num_bad_rows": sum(f["reason"] == "bad_metadata_row" for f in failures),
        "failures_by_reason": dict(sorted(count(f["reason"] for f in failures).items())),
        "clips_by_modality": {m: sum(r["modality"] == m for r in records) for m in MODALITIES},
        "clips_by_dataset": {n: sum(r["dataset"] == n for r in records) for n in ADAPTERS},
        "clips_by_skill": dict(sorted(count(r["skill"] for r in records).items())),
        "clips_by_fact_kind": dict(sorted(count(k for r in records for k in r["facts"]).items())),
        "clips_by_layer": {layer: sum(layer in r["layers"] for r in records) for layer in LAYERS},
        "total_audio_s": round(sum(r["duration_s"] for r in records), 3),
        "truncated": sum(bool(r.get("truncated")) for r in records),
    }


def _enrich(profile: Profile, records: list[dict], stage_dir: Path, progress: bool) -> dict | None:
    names = tuple(getattr(profile.collect, "enrichers", ()) or ())
    if not names:
        return None
    try:
        from cogito_lib.sources.enrich import enrich_records
    except ImportError as err:
        message = f"collect.enrichers = {list(names)} but cogito_lib.sources.enrich cannot be imported ({err}); " \
                  "clips keep the datasets' own metadata"
        print(f"enrichment skipped: {message}", file=sys.stderr)
        return {"skipped": message}
    try:
        result = enrich_records(records, stage_dir, names, progress=progress)
    except Exception as err:  # noqa: BLE001 - enrichment is optional: report and keep the collected clips
        message = f"enrichment failed ({type(err).__name__}: {err}); the manifest keeps the datasets' own metadata"
        print(message, file=sys.stderr)
        return {"error": message}
    for record in records:  # enrichers may add fact kinds
        record["layers"] = sorted(set(record["layers"]) | set(layers_of(record["facts"])))
    return result


@writes_stage(lambda arguments: arguments["out_subdir"])
def collect_datasets(profile: Profile, run_dir: str | Path, *, num_clips: int | None = None,
                     seed: int | None = None, workers: int | None = None, out_subdir: str = STAGE_DIR,
                     progress: bool = True) -> dict:
    """Stage 1 from the paper's datasets: sample `num_clips` clips by the profile's mix into `RUN_DIR/<out_subdir>/`.

    Defaults come from `profile.collect` (num_clips, seed, workers, max_clip_s, mix, enrichers) and the roots from
    `profile.datasets`. Raises ConfigError before any work when the mix is invalid or no planned dataset has a root.
    Returns the stats dict also written to stats.json."""
    start = time.perf_counter()
    cfg = profile.collect
    num_clips = cfg.num_clips if num_clips is None else int(num_clips)
    seed = cfg.seed if seed is None else int(seed)
    workers = num_workers(cfg.workers if workers is None else int(workers))
    sample_rate, max_clip_s = profile.world.sample_rate, float(cfg.max_clip_s)
    weights = mix_weights(profile)
    planned = quotas(weights, num_clips)
    wanted = [name for name in ADAPTERS if planned[name] > 0]
    with_root = [n for n in wanted if ADAPTERS[n].available and getattr(profile.datasets, n)]
    if not with_root:
        raise ConfigError("no dataset root is set for the planned datasets (" + ", ".join(wanted) + "): export "
                          + ", ".join(f"{DATASET_ENV[n]}=/path/to/{n}" for n in wanted if ADAPTERS[n].available)
                          + " (see README, 'Stage 1 at paper scale'), or set collect.mix to the datasets you have")

    stage_dir = Path(run_dir) / out_subdir
    (stage_dir / "audio").mkdir(parents=True, exist_ok=True)
    fp = fingerprint(sample_rate, max_clip_s)
    scans = scan_datasets(profile, wanted, progress=progress)
    failures: list[dict] = []
    for name, scan in scans.items():
        result: ScanResult | None = scan["result"]
        if result is None:
            failures.append({"dataset": name, "reason": "dataset_unreadable", "detail": scan["reason"]})
            continue
        failures += [{"dataset": name, "reason": "bad_metadata_row", "where": bad.where(), "file": bad.file,
                      "line": bad.line, "detail": bad.detail} for bad in result.bad_rows]

    order = {name: shuffled(scan["result"].items, seed, name) if scan["result"] else [] for name, scan in scans.items()}
    remade: collections.Counter = collections.Counter()
    done = _previous_records(stage_dir, fp, remade)
    resumed_ids = set(done)
    chosen: dict[str, list[dict]] = {name: [] for name in wanted}
    position = {name: 0 for name in wanted}
    runner = _Runner(workers)
    from tqdm.auto import tqdm

    decoded = 0
    failed: collections.Counter = collections.Counter()  # audio failures per dataset in this run
    try:
        with JsonlJournal(stage_dir / JOURNAL) as journal, \
                tqdm(total=sum(planned[n] for n in wanted), desc="collect", unit="clip", disable=not progress,
                     file=sys.stderr) as bar:
            while True:
                wave: dict[str, list[SourceItem]] = {}
                for name in wanted:
                    need = planned[name] - len(chosen[name])
                    if need > 0 and position[name] < len(order[name]):
                        wave[name] = order[name][position[name]: position[name] + need]
                        position[name] += len(wave[name])
                if not wave:
                    break
                tasks = []
                for name, items in wave.items():
                    for item in items:
                        cid = clip_id_of(item)
                        if cid not in done:
                            tasks.append(({"clip_id": cid, "domain": ADAPTERS[name].domain,
                                           "title": ADAPTERS[name].title, "item": _item_dict(item)},
                                          str(stage_dir), sample_rate, max_clip_s))
                for result in runner.run(tasks):
                    decoded += 1
                    if "record" in result:
                        done[result["record"]["clip_id"]] = result["record"]
                        journal.append({"fingerprint": fp, "record": result["record"]})
                        bar.update(1)
                    else:
                        failures.append(result["failure"])
                        failed[result["failure"]["dataset"]] += 1
                        bar.set_postfix(failed=sum(failed.values()))
                for name, items in wave.items():  # in shuffled order, so the manifest does not depend on timing
                    for item in items:
                        cid = clip_id_of(item)
                        if cid in done:
                            chosen[name].append(done[cid])
                            if cid in resumed_ids:
                                bar.update(1)
    finally:
        runner.close()

    manifest = [record for name in wanted for record in chosen[name]]
    for index, record in enumerate(manifest):
        record["index"] = index
    failures = _sorted_failures(failures)
    write_jsonl(stage_dir / "manifest.jsonl", manifest)
    write_jsonl(stage_dir / "failures.jsonl", failures)
    enrichment = _enrich(profile, manifest, stage_dir, progress)
    if enrichment is not None:
        write_jsonl(stage_dir / "manifest.jsonl", manifest)
    clean_stage_dir(stage_dir, {r["audio_path"] for r in manifest})

    plan_rows = {}
    for name, adapter in ADAPTERS.items():
        scan = scans.get(name)
        result = scan["result"] if scan else None
        available_rows = len(result.items) if result else 0
        obtained = len(chosen.get(name, []))
        shortfall = max(0, planned[name] - obtained)
        reason = ""
        if shortfall:
            if scan and scan["reason"]:
                reason = scan["reason"]
            elif failed[name]:
                reason = (f"{available_rows} usable row(s) for {planned[name]} planned, and {failed[name]} of the "
                          "tried audio files were missing or broken (see failures.jsonl)")
            else:
                reason = f"only {available_rows} usable row(s) for {planned[name]} planned"
        plan_rows[name] = {"title": adapter.title, "domain": adapter.domain, "paper_clips": adapter.paper_clips,
                           "weight": round(weights[name], 6), "planned": planned[name], "available": available_rows,
                           "not_downloaded": result.not_downloaded if result else 0,
                           "bad_rows": len(result.bad_rows) if result else 0, "obtained": obtained,
                           "shortfall": shortfall, "reason": reason}
    for name, row in plan_rows.items():
        if row["shortfall"] and progress:
            print(f"shortfall {row['title']}: {row['obtained']}/{row['planned']} ({row['reason']})", file=sys.stderr)
    wall_s = time.perf_counter() - start
    stats = {
        "source": "datasets", "num_requested": num_clips, **summarise(manifest, failures),
        "plan": plan_rows, "shortfall": sum(r["shortfall"] for r in plan_rows.values()),
        "domain_share_planned": {d: round(v, 4) for d, v in domain_shares(planned).items()},
        "domain_share_obtained": {d: round(v, 4) for d, v in domain_shares(
            {n: r["obtained"] for n, r in plan_rows.items()}).items()},
        "mix": "paper" if not cfg.mix else cfg.mix, "wall_s": round(wall_s, 3), "decoded": decoded,
        "clips_per_s": round(decoded / wall_s, 3) if wall_s > 0 else 0.0, "workers": workers,
        "resumed": len(resumed_ids & {r["clip_id"] for r in manifest}), "split": SPLIT, "seed": seed,
        "sample_rate": sample_rate, "max_clip_s": max_clip_s, "sources_fingerprint": fp,
        "remade": dict(sorted(remade.items())),
    }
    if enrichment is not None:
        stats["enrichment"] = enrichment
    write_json(stage_dir / "stats.json", stats)
    (stage_dir / JOURNAL).unlink(missing_ok=True)
    return stats


def _item_dict(item: SourceItem) -> dict:
    return {"dataset": item.dataset, "item_id": item.item_id, "audio": str(item.audio), "facts": item.facts,
            "skill": item.skill, "caption": item.caption, "speech": item.speech, "source_split": item.source_split,
            "where": item.where, "info": item.info}


def _sorted_failures(failures: list[dict]) -> list[dict]:
    rank = {name: i for i, name in enumerate(ADAPTERS)}
    return sorted(failures, key=lambda f: (rank.get(f["dataset"], 99), f["reason"], f.get("file", ""),
                                           f.get("line") or 0, f.get("dataset_id", "")))


__all__ = ["collect_datasets", "scan_datasets", "make_dataset_clip", "shuffled", "clip_id_of", "fingerprint",
           "FACT_LAYERS", "STAGE_DIR"]
