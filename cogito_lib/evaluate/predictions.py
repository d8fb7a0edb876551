"""Predictions of notebook 07: which models there are, and their greedy reasoning + answer per item, cached."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from ..config import Profile
from ..distill import recorded_base
from ..io import JsonlJournal, portable, read_json, read_jsonl, stable_id, write_json, write_jsonl
from ..layout import BASE_MODEL as BASE
from ..layout import TRAIN, VARIANTS, base_model_path, frontend_cache
from .benchmark import Benchmark


@dataclass(frozen=True)
class ModelSpec:
    """A model to evaluate: the base checkpoint, optionally with a LoRA adapter (or that adapter merged in)."""

    name: str
    base: str
    adapter: str | None = None
    merged: str | None = None

    def key(self, run_dir: str | Path | None = None) -> str:
        """Identifies the weights: a retrained adapter (new files) gets new predictions. Paths inside `run_dir` count
        relative to it, so a moved or copied run dir keeps its predictions."""
        stamps = []
        for folder in (self.adapter, self.merged):
            if folder and Path(folder).is_dir():
                stamps += [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(Path(folder).iterdir())
                           if p.is_file() and p.suffix in (".safetensors", ".bin", ".json")]
        paths = [str(self.base), self.adapter, self.merged]
        return stable_id(self.name, portable(paths, run_dir) if run_dir is not None else paths, stamps)


def discover_models(profile: Profile, run_dir: str | Path, include: Sequence[str] | None = None) -> dict[str, ModelSpec]:
    """The base plus every adapter in `RUN_DIR/06-self-distillation-training/<variant>/adapter/` (06's variants
    first in their usual order, then any others such as later rounds), optionally only those in `include`."""
    run_dir = Path(run_dir)
    models = {BASE: ModelSpec(BASE, base_model_path(profile, run_dir))}
    train_dir = run_dir / TRAIN
    folders = [p for p in sorted(train_dir.iterdir()) if (p / "adapter" / "adapter_config.json").is_file()] \
        if train_dir.is_dir() else []
    rank = {name: i for i, name in enumerate(VARIANTS)}
    for folder in sorted(folders, key=lambda p: (rank.get(p.name, len(rank)), p.name)):
        summary = read_json(folder / "summary.json", {}) or {}
        merged = folder / "merged"
        models[folder.name] = ModelSpec(folder.name, str(recorded_base(summary, run_dir) or models[BASE].base),
                                        str(folder / "adapter"),
                                        str(merged) if (merged / "config.json").is_file() else None)
    if include:
        unknown = sorted(set(include) - set(models))
        if unknown:
            raise ValueError(f"no model named {', '.join(unknown)} in {run_dir}: found {', '.join(models)}")
        models = {name: spec for name, spec in models.items() if name in include or name == BASE}
    return models


def load_eval_model(spec: ModelSpec, profile: Profile):
    """(model, processor) for a spec: the merged folder when 06 saved one, else the base with the adapter merged."""
    from ..models import load_adapter, load_model

    kwargs = dict(dtype=profile.models.dtype, device=profile.models.device)
    if spec.merged:
        return load_model(spec.merged, **kwargs)
    model, processor = load_model(spec.base, **kwargs)
    if spec.adapter:
        model = load_adapter(model, spec.adapter).merge_and_unload()
        model.eval()
    return model, processor


def generate_predictions(model, processor, items: Sequence[Mapping], *, max_new_tokens: int, batch_size: int,
                         progress: bool = False, frontend=None) -> list[dict]:
    """Greedy reasoning + answer for each item, as prediction records (challenge keys + parse status).
    `frontend` (`models.frontend.FrontEnd`) supplies cached clip features; one is made in memory when None."""
    from ..models.audio import AudioCache
    from ..models.generate import SamplingConfig, build_mmar_prompt, generate_reasoning

    audio = AudioCache()
    prompts = [build_mmar_prompt(processor, it["question"], it["choices"]) for it in items]
    audios = [audio(it["audio_file"]) for it in items]
    # require_think=False: a model that answers without a think block (the answer_only control) is scored on
    # what it said, as MMAR scores any model; an unclosed or empty think block is still a parse failure.
    report = generate_reasoning(model, processor, prompts, audios,
                                SamplingConfig(max_new_tokens=max_new_tokens, temperature=0.0),
                                batch_size=batch_size, progress=progress, require_think=False,
                                **({"frontend": frontend, "keys": [it["id"] for it in items]} if frontend else {}))
    return [{"id": it["id"], "thinking_prediction": row[0].thinking, "answer_prediction": row[0].answer_prediction,
             "parse_failed": bool(row[0].parse_failed), "parse_status": row[0].parse_status}
            for it, row in zip(items, report.outputs)]


def predictions_path(stage_dir: str | Path, model: str) -> Path:
    return Path(stage_dir) / f"predictions-{model}.jsonl"


def predict(spec: ModelSpec, benchmark: Benchmark, profile: Profile, stage_dir: str | Path, *,
            max_new_tokens: int, batch_size: int, progress: bool = True) -> tuple[list[dict], dict]:
    """Predictions of one model on the benchmark, reusing (and completing) its cached file.

    The cache is valid for the same benchmark fingerprint, model weights and generation budget; records are
    appended as each chunk finishes, so a killed run generates only what is missing. Returns the records in
    item order and {generated, reused, seconds}."""
    path = predictions_path(stage_dir, spec.name)
    info_path = path.with_suffix(".info.json")
    settings = {"model": spec.name, "model_key": spec.key(Path(stage_dir).parent), "benchmark": benchmark.name,
                "benchmark_fingerprint": benchmark.fingerprint, "max_new_tokens": max_new_tokens}
    previous = read_json(info_path, {}) or {}
    if {k: previous.get(k) for k in settings} != settings:
        path.unlink(missing_ok=True)
        write_json(info_path, {**settings, "complete": False})
    wanted = {it["id"] for it in benchmark.items}
    done = {r["id"]: r for r in read_jsonl(path) if r.get("id") in wanted}
    missing = [it for it in benchmark.items if it["id"] not in done]
    started = time.perf_counter()
    if missing:
        from ..models.frontend import make_frontend

        model, processor = load_eval_model(spec, profile)
        frontend = make_frontend(model, processor, frontend_cache(Path(stage_dir).parent))
        chunk = max(1, batch_size) * 4
        with JsonlJournal(path) as journal:
            for start in range(0, len(missing), chunk):
                for record in generate_predictions(model, processor, missing[start:start + chunk],
                                                   max_new_tokens=max_new_tokens, batch_size=batch_size,
                                                   progress=progress, frontend=frontend):
                    journal.append(record)
                    done[record["id"]] = record
        del model
    records = [done[it["id"]] for it in benchmark.items]
    write_jsonl(path, records)
    write_json(info_path, {**settings, "complete": True, "num_items": len(records)})
    return records, {"generated": len(missing), "reused": len(records) - len(missing),
                     "seconds": round(time.perf_counter() - started, 2)}
