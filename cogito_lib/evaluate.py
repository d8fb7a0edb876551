"""Notebook 07: evaluate the base and every fine-tuned adapter on MMAR-synth (miniature) or MMAR (paper).

For each model: batched greedy answers with reasoning, cached as the challenge's prediction format in
`RUN_DIR/07-mmar-evaluation/predictions-<model>.jsonl` ({id, thinking_prediction, answer_prediction} plus
parse_failed / parse_status) and reused when complete for the same benchmark and model (a killed run resumes
where it stopped); accuracy by MMAR's official rule (`score_predictions`) overall, by modality, layer,
sub-category and tier (atomic / composite); MMAR-Rubrics and CRS (`score_rubrics`, with the metadata judge in
miniature and the OpenAI-compatible judge at paper scale); paired 95% bootstrap intervals over items for every
model against the base; and a validated challenge submission file per model. Everything lands in the stage
folder (`scores-<model>.json`, `submission-<model>.jsonl`, `summary.json`) so later tools (scripts/headline.py)
read files, not notebook state.

    from cogito_lib.evaluate import evaluate
    evaluation = evaluate(profile, run_dir)
    evaluation.table()                  # accuracy overall / per tier, rubrics, CRS, intervals
    evaluation.gain_sentences()         # "self_distill vs base: +X points [CI]" from the numbers
"""
from __future__ import annotations

import html
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .config import DATASET_ENV, Profile
from .io import JsonlJournal, portable, read_json, read_jsonl, stable_id, write_json, write_jsonl
from .mmar import (LAYERS, MODALITIES, bootstrap_ci, load_meta, normalise_category, score_predictions,
                   score_rubrics, validate_submission, write_submission)
from .mmar.synth import META_NAME, STAGE, build_mmar_synth

TRAIN_STAGE = "06-self-distillation-training"
BASE = "base"
TIERS = ("atomic", "composite")
VARIANT_ORDER = ("self_distill", "answer_only", "no_audit", "base_cont", "gold_cot")
MMAR_DOWNLOAD = "https://huggingface.co/datasets/BoJack/MMAR (code and meta: https://github.com/ddlBoJack/MMAR)"

# The paper's reported MMAR numbers (Audio-Cogito, Interspeech 2026, arXiv 2604.12527). They are the paper's,
# never ours: every table or text that shows them labels them so.
PAPER_MMAR = {
    "Qwen3-Omni-30B-A3B-Thinking (base)": {"accuracy": 68.00, "rubrics": 57.97, "crs": None},
    "Audio-Cogito (self-distilled)": {"accuracy": 71.70, "rubrics": 62.22, "crs": 0.87},
}
PAPER_LABEL = "paper's reported numbers (Audio-Cogito, MMAR, 1000 items) - not this run"


class BenchmarkMissing(FileNotFoundError):
    """The benchmark to evaluate on is not on this machine; the message says what to download and where."""


# ------------------------------------------------------------------------------------------------- benchmark
@dataclass
class Benchmark:
    """The evaluation items (MMAR-meta rows with `audio_file`), where they came from, and their fingerprint."""

    name: str
    meta_path: Path
    items: list[dict]
    fingerprint: str
    info: dict = field(default_factory=dict)

    @property
    def has_tiers(self) -> bool:
        return all(it.get("tier") in TIERS for it in self.items)

    @property
    def has_rubrics(self) -> bool:
        return all(isinstance(it.get("rubric"), list) for it in self.items)


def mmar_missing_message(profile: Profile) -> str:
    var = DATASET_ENV["mmar"]
    where = profile.datasets.mmar
    what = f"{var} is not set" if not where else f"{where}/{META_NAME} not found ({var}={where})"
    return (f"MMAR is not available: {what}. The '{profile.name}' profile evaluates on MMAR (eval.benchmark="
            f"'mmar'). Download MMAR-meta.jsonl and the audio from {MMAR_DOWNLOAD}, put them in one folder as "
            f"MMAR-meta.jsonl beside audio/ (audio/<id>.wav), and set {var} to that folder before starting "
            f"Jupyter or the runner (e.g. `export {var}=/data/MMAR`). To evaluate on the miniature instead, "
            f"use the tiny or mini profile (MMAR-synth).")


def check_benchmark(profile: Profile) -> None:
    """Fail early, with one message, when the benchmark cannot be found (paper profile without MMAR)."""
    if profile.eval.benchmark == "mmar":
        root = profile.datasets.mmar
        if not root or not (Path(root) / META_NAME).is_file():
            raise BenchmarkMissing(mmar_missing_message(profile))


def load_benchmark(profile: Profile, run_dir: str | Path, *, progress: bool = True) -> Benchmark:
    """MMAR-synth (built or reused under the run dir) or MMAR from `COGITO_MMAR_ROOT`, validated by `load_meta`."""
    check_benchmark(profile)
    if profile.eval.benchmark == "mmar-synth":
        info = build_mmar_synth(profile, run_dir, progress=progress)
        meta_path = Path(info["meta"])
    else:
        meta_path = Path(profile.datasets.mmar) / META_NAME
        info = {"root": str(profile.datasets.mmar)}
    meta = load_meta(meta_path)
    if meta.problems:
        raise BenchmarkMissing(f"{meta_path}: {len(meta.problems)} problem(s), e.g. {meta.problems[0]}; "
                               f"fix the meta file or the audio folder (missing audio cannot be evaluated)")
    items = meta.items
    if profile.eval.benchmark == "mmar" and profile.eval.num_items < len(items):
        items = items[:profile.eval.num_items]   # a quick partial run; the default (1000) keeps all of MMAR
    fingerprint = stable_id([(it["id"], portable(it["audio_path"], run_dir), it["question"], it["choices"],
                              it["answer"]) for it in items], info.get("fingerprint"), length=12)
    return Benchmark(profile.eval.benchmark, meta_path, items, fingerprint, info)


# ------------------------------------------------------------------------------------------------- models
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
    from .base import base_model_path
    from .distill import recorded_base

    run_dir = Path(run_dir)
    models = {BASE: ModelSpec(BASE, base_model_path(profile, run_dir))}
    train_dir = run_dir / TRAIN_STAGE
    folders = [p for p in sorted(train_dir.iterdir()) if (p / "adapter" / "adapter_config.json").is_file()] \
        if train_dir.is_dir() else []
    rank = {name: i for i, name in enumerate(VARIANT_ORDER)}
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
    from .models import load_adapter, load_model

    kwargs = dict(dtype=profile.models.dtype, device=profile.models.device)
    if spec.merged:
        return load_model(spec.merged, **kwargs)
    model, processor = load_model(spec.base, **kwargs)
    if spec.adapter:
        model = load_adapter(model, spec.adapter).merge_and_unload()
        model.eval()
    return model, processor


def generate_predictions(model, processor, items: Sequence[Mapping], *, max_new_tokens: int, batch_size: int,
                         progress: bool = False) -> list[dict]:
    """Greedy reasoning + answer for each item, as prediction records (challenge keys + parse status)."""
    from .models.generate import SamplingConfig, build_mmar_prompt, generate_reasoning
    from .train import AudioCache

    audio = AudioCache()
    prompts = [build_mmar_prompt(processor, it["question"], it["choices"]) for it in items]
    audios = [audio(it["audio_file"]) for it in items]
    # require_think=False: a model that answers without a think block (the answer_only control) is scored on
    # what it said, as MMAR scores any model; an unclosed or empty think block is still a parse failure.
    report = generate_reasoning(model, processor, prompts, audios,
                                SamplingConfig(max_new_tokens=max_new_tokens, temperature=0.0),
                                batch_size=batch_size, progress=progress, require_think=False)
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
        model, processor = load_eval_model(spec, profile)
        chunk = max(1, batch_size) * 4
        with JsonlJournal(path) as journal:
            for start in range(0, len(missing), chunk):
                for record in generate_predictions(model, processor, missing[start:start + chunk],
                                                   max_new_tokens=max_new_tokens, batch_size=batch_size,
                                                   progress=progress):
                    journal.append(record)
                    done[record["id"]] = record
        del model
    records = [done[it["id"]] for it in benchmark.items]
    write_jsonl(path, records)
    write_json(info_path, {**settings, "complete": True, "num_items": len(records)})
    return records, {"generated": len(missing), "reused": len(records) - len(missing),
                     "seconds": round(time.perf_counter() - started, 2)}


# ------------------------------------------------------------------------------------------------- scoring
def make_judge(profile: Profile, benchmark: Benchmark, stage_dir: str | Path):
    """The rubric judge: metadata-grounded for MMAR-synth; the official GPT-4o setting for MMAR (None with a
    reason when it cannot run: no rubric fields in the meta file, or no API key)."""
    import os

    from .judges import MetadataJudge, OpenAIRubricJudge

    if not benchmark.has_rubrics:
        return None, f"{benchmark.meta_path} has no thinking/cue/rubric fields (use the MMAR-Rubrics meta file)"
    if benchmark.name == "mmar-synth":
        return MetadataJudge(), "metadata judge (offline, deterministic)"
    judge = OpenAIRubricJudge(cache_dir=Path(stage_dir) / "judge-cache")
    if not os.environ.get(judge.api_key_env):
        return None, f"{judge.api_key_env} is not set: MMAR-Rubrics needs the OpenAI-compatible judge ({judge.model})"
    return judge, f"OpenAI-compatible judge {judge.model}"


def tier_scores(items: Sequence[Mapping], per_item: Mapping[str, float]) -> dict[str, dict]:
    """Accuracy per tier (atomic, composite) from per-item matches."""
    out = {}
    for tier in TIERS:
        values = [per_item[it["id"]] for it in items if it.get("tier") == tier]
        if values:
            out[tier] = {"accuracy": 100.0 * float(np.mean(values)), "n": len(values), "correct": int(sum(values))}
    return out


def skill_accuracy(evaluation: "Evaluation"):
    """Accuracy (percent) per question skill (rows: tier, skill; columns: models, then `n` and `chance`).
    Shows where a fine-tune helped and which composite skills no model can answer yet."""
    import pandas as pd

    items = [it for it in evaluation.benchmark.items if it.get("skill")]
    if not items:
        return pd.DataFrame()
    rows = []
    for it in items:
        row = {"tier": it.get("tier", ""), "skill": it["skill"], "chance": 100.0 / max(1, len(it["choices"]))}
        row.update({name: 100.0 * s["accuracy"]["per_item"].get(it["id"], 0) for name, s in evaluation.scores.items()})
        rows.append(row)
    frame = pd.DataFrame(rows)
    table = frame.groupby(["tier", "skill"]).mean()
    table.insert(len(table.columns) - 1, "n", frame.groupby(["tier", "skill"]).size())
    return table[[*evaluation.scores, "n", "chance"]]


def cell_accuracy(items: Sequence[Mapping], per_item: Mapping[str, float]):
    """Accuracy (percent) by modality (rows) and layer (columns); NaN where the benchmark has no item."""
    import pandas as pd

    rows = [{"modality": it["modality"], "layer": normalise_category(it["category"]),
             "correct": per_item[it["id"]]} for it in items]
    table = pd.DataFrame(rows).pivot_table(index="modality", columns="layer", values="correct", aggfunc="mean")
    table = table.reindex(index=list(MODALITIES), columns=list(LAYERS))   # every cell, blank where no item
    return 100.0 * table


def score_model(benchmark: Benchmark, records: Sequence[Mapping], judge: Any, runs: int) -> dict:
    """Accuracy (with breakdowns and tiers) and, when a judge is given, MMAR-Rubrics and CRS."""
    accuracy = score_predictions(benchmark.items, records)
    result = {"accuracy": accuracy, "by_tier": tier_scores(benchmark.items, accuracy["per_item"]), "rubrics": None}
    if judge is not None:
        result["rubrics"] = score_rubrics(benchmark.items, records, judge, runs=runs)
    return result


def _interval(per_a: Mapping[str, float], per_b: Mapping[str, float] | None, ids: Iterable[str] | None,
              n_boot: int, seed: int) -> dict | None:
    ids = sorted(per_a) if ids is None else sorted(ids)
    if not ids:
        return None
    a = {k: per_a[k] for k in ids}
    b = {k: per_b[k] for k in ids} if per_b is not None else None
    return bootstrap_ci(a, b, n_boot=n_boot, seed=seed)


def compare(benchmark: Benchmark, scores: Mapping[str, dict], reference: str = BASE, *, n_boot: int = 2000,
            seed: int = 0) -> dict[str, dict]:
    """Per model: item-bootstrap 95% intervals of its accuracy (overall, per tier) and paired intervals of its
    difference to `reference` (accuracy overall and per tier, rubrics when both were judged completely)."""
    tier_ids = {tier: [it["id"] for it in benchmark.items if it.get("tier") == tier] for tier in TIERS}
    ref = scores.get(reference)
    out: dict[str, dict] = {}
    for name, result in scores.items():
        per = result["accuracy"]["per_item"]
        entry: dict[str, Any] = {"accuracy": _interval(per, None, None, n_boot, seed),
                                 "tiers": {t: _interval(per, None, ids, n_boot, seed)
                                           for t, ids in tier_ids.items() if ids}}
        if ref is not None and name != reference:
            ref_per = ref["accuracy"]["per_item"]
            entry["vs_reference"] = {"reference": reference,
                                     "overall": _interval(per, ref_per, None, n_boot, seed),
                                     **{t: _interval(per, ref_per, ids, n_boot, seed)
                                        for t, ids in tier_ids.items() if ids}}
            rub, ref_rub = result.get("rubrics"), ref.get("rubrics")
            if rub and ref_rub and rub["complete"] and ref_rub["complete"]:
                entry["vs_reference"]["rubrics"] = _interval(rub["per_item"], ref_rub["per_item"], None, n_boot, seed)
        out[name] = entry
    return out


# ------------------------------------------------------------------------------------------------- the run
@dataclass
class Evaluation:
    """Everything chapter 07 measured: the benchmark, each model's predictions and scores, the intervals."""

    benchmark: Benchmark
    models: dict[str, ModelSpec]
    predictions: dict[str, list[dict]]
    scores: dict[str, dict]
    intervals: dict[str, dict]
    runs: dict[str, dict]
    judge: str
    submissions: dict[str, dict] = field(default_factory=dict)

    def table(self):
        """One row per model: accuracy overall and per tier with 95% item-bootstrap intervals, rubrics, CRS,
        and the paired difference to the base with its interval."""
        import pandas as pd

        rows = []
        for name, result in self.scores.items():
            ci = self.intervals[name]
            row: dict[str, Any] = {"model": name, "accuracy": result["accuracy"]["accuracy"],
                                   "accuracy 95% CI": _fmt_ci(ci["accuracy"])}
            for tier in TIERS:
                if tier in result["by_tier"]:
                    row[tier] = result["by_tier"][tier]["accuracy"]
                    row[f"{tier} 95% CI"] = _fmt_ci(ci["tiers"].get(tier))
            rubrics = result.get("rubrics")
            row["rubrics"] = rubrics["rubrics"] if rubrics else float("nan")
            row["CRS"] = rubrics["crs"] if rubrics and rubrics["crs"] is not None else float("nan")
            vs = ci.get("vs_reference")
            row["vs base (points)"] = vs["overall"]["estimate"] if vs else float("nan")
            row["vs base 95% CI"] = _fmt_ci(vs["overall"]) if vs else ""
            row["parse failures"] = result["accuracy"]["parse_failures"]
            rows.append(row)
        return pd.DataFrame(rows).set_index("model").round(2)

    def gain_sentences(self, reference: str = BASE, models: Sequence[str] | None = None,
                       n_boot: int = 2000) -> list[str]:
        """The outcome in words, one line per model, written from the numbers (whatever they are). Against
        another `reference` than the base (e.g. the `base_cont` or `answer_only` control) the paired intervals
        are computed here."""
        if reference not in self.scores:
            return []
        intervals = self.intervals if reference == BASE else compare(self.benchmark, self.scores, reference,
                                                                     n_boot=n_boot)
        names = [n for n in (models or self.scores) if n in self.scores and n != reference]
        return [gain_sentence(name, intervals[name]["vs_reference"], self.benchmark.name)
                for name in names if "vs_reference" in intervals[name]]

    def wins(self, model: str, reference: str = BASE) -> list[dict]:
        """Items `model` answered correctly and `reference` did not, with both reasoning traces."""
        return paired_examples(self, model, reference, want=(1, 0))

    def summary(self) -> dict:
        """What summary.json holds (and scripts/headline.py reads): per model, the headline figures."""
        models = {}
        for name, result in self.scores.items():
            ci = self.intervals[name]
            rubrics = result.get("rubrics")
            models[name] = {
                "accuracy": result["accuracy"]["accuracy"], "accuracy_ci": _pair(ci["accuracy"]),
                "num_items": result["accuracy"]["num_items"], "parse_failures": result["accuracy"]["parse_failures"],
                "tiers": {t: {**v, "ci": _pair(ci["tiers"].get(t))} for t, v in result["by_tier"].items()},
                "rubrics": rubrics["rubrics"] if rubrics else None,
                "crs": rubrics["crs"] if rubrics else None,
                "by_modality": {k: v["accuracy"] for k, v in result["accuracy"]["by_modality"].items()},
                "by_layer": {k: v["accuracy"] for k, v in result["accuracy"]["by_category"].items()},
                "vs_base": {k: v for k, v in (ci.get("vs_reference") or {}).items() if k != "reference"},
                "adapter": self.models[name].adapter,
                "per_item": {k: int(v) for k, v in sorted(result["accuracy"]["per_item"].items())},
            }
        return {"benchmark": self.benchmark.name, "benchmark_fingerprint": self.benchmark.fingerprint,
                "num_items": len(self.benchmark.items), "judge": self.judge, "models": models,
                "item_tiers": {it["id"]: it.get("tier") for it in self.benchmark.items}}

    def metrics(self) -> dict:
        """Flat figures for record_metrics."""
        out: dict[str, Any] = {"benchmark": self.benchmark.name, "num_items": len(self.benchmark.items),
                               "models": list(self.scores), "judge": self.judge}
        for name, entry in self.summary()["models"].items():
            out[f"{name}.accuracy"] = round(entry["accuracy"], 2)
            for tier, value in entry["tiers"].items():
                out[f"{name}.{tier}"] = round(value["accuracy"], 2)
            out[f"{name}.rubrics"] = None if entry["rubrics"] is None else round(entry["rubrics"], 2)
            out[f"{name}.crs"] = None if entry["crs"] is None else round(entry["crs"], 4)
            out[f"{name}.parse_failures"] = entry["parse_failures"]
            for key, ci in entry["vs_base"].items():
                if ci:
                    out[f"{name}.vs_base.{key}"] = [round(ci["estimate"], 2), round(ci["low"], 2), round(ci["high"], 2)]
            out[f"{name}.generated"] = self.runs[name]["generated"]
            out[f"{name}.submission_valid"] = not self.submissions.get(name, {}).get("problems")
        return out


def _fmt_ci(ci: Mapping | None) -> str:
    return "" if not ci else f"[{ci['low']:.1f}, {ci['high']:.1f}]"


def _pair(ci: Mapping | None) -> list[float] | None:
    return None if not ci else [ci["low"], ci["high"]]


def gain_sentence(model: str, vs: Mapping[str, Any], benchmark: str = "") -> str:
    """'self_distill vs base: +2.1 points [95% CI -1.0, +5.3] over 600 items ...; composite: ...'."""
    def part(ci):
        return f"{ci['estimate']:+.1f} points [95% CI {ci['low']:+.1f}, {ci['high']:+.1f}]"

    overall = vs["overall"]
    reference = vs.get("reference", BASE)
    if overall["low"] > 0:
        verdict = f"better than {reference} (the interval excludes 0)"
    elif overall["high"] < 0:
        verdict = f"worse than {reference} (the interval excludes 0)"
    else:
        verdict = f"no clear difference from {reference} (the interval includes 0)"
    tiers = "; ".join(f"{t}: {part(vs[t])}" for t in TIERS if vs.get(t))
    where = f" on {benchmark}" if benchmark else ""
    text = f"{model} vs {reference}: {part(overall)} over {overall['n']} items{where}, {verdict}"
    return text + (f"; {tiers}." if tiers else ".")


def write_submissions(evaluation: Evaluation, stage_dir: str | Path) -> dict[str, dict]:
    """A challenge submission file per model (`submission-<model>.jsonl`), each checked by validate_submission."""
    out = {}
    for name, records in evaluation.predictions.items():
        path = write_submission(records, Path(stage_dir) / f"submission-{name}.jsonl", truncate=True)
        out[name] = {"path": str(path), "problems": validate_submission(evaluation.benchmark.items, path)}
    evaluation.submissions = out
    return out


def evaluate(profile: Profile, run_dir: str | Path, *, models: Sequence[str] | None = None,
             max_new_tokens: int | None = None, batch_size: int | None = None, n_boot: int = 2000,
             progress: bool = True) -> Evaluation:
    """Chapter 07 in one call: benchmark, every model's (cached) predictions, scores, rubrics, intervals,
    submissions, and the files `scores-<model>.json` and `summary.json` in `RUN_DIR/07-mmar-evaluation/`."""
    run_dir = Path(run_dir)
    stage_dir = run_dir / STAGE
    stage_dir.mkdir(parents=True, exist_ok=True)
    check_benchmark(profile)
    specs = discover_models(profile, run_dir, models)
    benchmark = load_benchmark(profile, run_dir, progress=progress)
    max_new_tokens = int(max_new_tokens or profile.think.max_new_tokens)
    batch_size = int(batch_size or profile.think.batch_size)
    judge, judge_note = make_judge(profile, benchmark, stage_dir)
    predictions, scores, runs = {}, {}, {}
    for name, spec in specs.items():
        records, run = predict(spec, benchmark, profile, stage_dir, max_new_tokens=max_new_tokens,
                               batch_size=batch_size, progress=progress)
        predictions[name], runs[name] = records, run
        scores[name] = score_model(benchmark, records, judge, profile.eval.rubric_runs)
        write_json(stage_dir / f"scores-{name}.json", {"model": name, "benchmark": benchmark.name,
                                                       "spec": spec.__dict__, **scores[name]})
    intervals = compare(benchmark, scores, n_boot=n_boot)
    evaluation = Evaluation(benchmark, specs, predictions, scores, intervals, runs,
                            judge_note if judge is not None else f"no rubrics: {judge_note}")
    write_submissions(evaluation, stage_dir)
    write_json(stage_dir / "summary.json", evaluation.summary())
    return evaluation


# ------------------------------------------------------------------------------------------------- paper table
def paper_table():
    """The paper's MMAR numbers, labelled as the paper's (never this run's)."""
    import pandas as pd

    rows = [{"source": PAPER_LABEL, "model": name, "accuracy": v["accuracy"], "rubrics": v["rubrics"],
             "CRS": v["crs"]} for name, v in PAPER_MMAR.items()]
    return pd.DataFrame(rows).set_index(["source", "model"])


def side_by_side(evaluation: Evaluation, label: str | None = None):
    """This run's accuracy / rubrics / CRS beside the paper's, each row labelled with where it comes from."""
    import pandas as pd

    label = label or f"this run ({evaluation.benchmark.name}, {len(evaluation.benchmark.items)} items)"
    ours = evaluation.table()[["accuracy", "rubrics", "CRS"]].reset_index()
    ours.insert(0, "source", label)
    return pd.concat([ours.set_index(["source", "model"]), paper_table()])


# ------------------------------------------------------------------------------------------------- plots
def plot_heatmaps(evaluation: Evaluation, save_as: str | Path | None = None):
    """Accuracy by modality x layer, one seaborn heatmap per model (blank where the benchmark has no item)."""
    import seaborn as sns
    from matplotlib.figure import Figure

    from .plots import use_theme

    use_theme()
    names = list(evaluation.scores)
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    figure = Figure(figsize=(4.8 * cols, 3.9 * rows), layout="constrained")
    axes = figure.subplots(rows, cols, squeeze=False)
    for ax, name in zip(axes.flat, names):
        table = cell_accuracy(evaluation.benchmark.items, evaluation.scores[name]["accuracy"]["per_item"])
        sns.heatmap(table, ax=ax, vmin=0, vmax=100, cmap="viridis", annot=True, fmt=".0f", cbar=False,
                    linewidths=0.5)
        ax.set_title(f"{name}: {evaluation.scores[name]['accuracy']['accuracy']:.1f}%")
        ax.grid(False)
        ax.tick_params(axis="x", labelrotation=30)
        ax.set_xlabel("layer")
        ax.set_ylabel("modality")
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    return _finish(figure, save_as)


def plot_gains(evaluation: Evaluation, save_as: str | Path | None = None):
    """Paired accuracy difference to the base (points) per model, overall and per tier, with 95% intervals."""
    import pandas as pd
    import seaborn as sns
    from matplotlib.figure import Figure

    from .plots import use_theme

    use_theme()
    rows = []
    for name, entry in evaluation.intervals.items():
        for part, ci in (entry.get("vs_reference") or {}).items():
            if part in ("reference", "rubrics") or not ci:
                continue
            rows.append({"model": name, "part": part, "gain": ci["estimate"], "low": ci["low"], "high": ci["high"]})
    figure = Figure(figsize=(max(5.0, 1.6 * max(1, len(evaluation.scores) - 1) + 2), 3.8), layout="constrained")
    ax = figure.subplots()
    if not rows:
        ax.text(0.5, 0.5, "only the base was evaluated: no gains to show\n(train adapters in notebook 06)",
                ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return _finish(figure, save_as)
    data = pd.DataFrame(rows)
    parts = list(dict.fromkeys(data["part"]))
    sns.barplot(data=data, x="model", y="gain", hue="part", hue_order=parts, ax=ax, errorbar=None)
    models = list(dict.fromkeys(data["model"]))
    width = 0.8 / len(parts)
    for _, r in data.iterrows():
        x = models.index(r["model"]) - 0.4 + width * (parts.index(r["part"]) + 0.5)
        ax.errorbar(x, r["gain"], yerr=[[r["gain"] - r["low"]], [r["high"] - r["gain"]]], color="black",
                    capsize=3, lw=1)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_ylabel("accuracy vs base (points, 95% CI)")
    ax.set_title(f"gain over the base on {evaluation.benchmark.name}\n(paired item bootstrap)", fontsize=11)
    return _finish(figure, save_as)


def _finish(figure, save_as):
    from .plots import _finish as finish   # importing cogito_lib.plots also lets notebooks show pyplot-free figures

    return finish(figure, save_as)


# ------------------------------------------------------------------------------------------------- browser
def paired_examples(evaluation: Evaluation, model: str, reference: str = BASE, want: tuple[int, int] = (1, 0)) -> list[dict]:
    """Items where (model correct, reference correct) == `want`, with the question and both traces."""
    per_model = evaluation.scores[model]["accuracy"]["per_item"]
    per_ref = evaluation.scores[reference]["accuracy"]["per_item"]
    by_id_model = {r["id"]: r for r in evaluation.predictions[model]}
    by_id_ref = {r["id"]: r for r in evaluation.predictions[reference]}
    rows = []
    for item in evaluation.benchmark.items:
        key = item["id"]
        if (per_model[key], per_ref[key]) != tuple(want):
            continue
        rows.append({"id": key, "question": item["question"], "choices": item["choices"], "answer": item["answer"],
                     "modality": item["modality"], "category": item["category"], "tier": item.get("tier", ""),
                     "skill": item.get("skill", ""), "audio_file": item["audio_file"],
                     "gold_thinking": item.get("thinking", ""), "model": model, "reference": reference,
                     "model_thinking": by_id_model[key]["thinking_prediction"],
                     "model_answer": by_id_model[key]["answer_prediction"],
                     "reference_thinking": by_id_ref[key]["thinking_prediction"],
                     "reference_answer": by_id_ref[key]["answer_prediction"]})
    return rows


def example_html(row: Mapping) -> str:
    """One item with both models' reasoning side by side (and the gold reasoning when the benchmark has it)."""
    def trace(title, thinking, answer):
        return (f"<div style='flex:1;min-width:260px'><b>{html.escape(title)}</b><pre style='white-space:pre-wrap'>"
                f"&lt;think&gt;\n{html.escape(thinking)}\n&lt;/think&gt;\n{html.escape(answer)}</pre></div>")

    head = (f"<p><b>{html.escape(row['question'])}</b><br>choices: {html.escape(' | '.join(row['choices']))}"
            f" &middot; gold: <b>{html.escape(row['answer'])}</b> &middot; {html.escape(row['modality'])}, "
            f"{html.escape(row['category'])}{', ' + html.escape(row['tier']) if row.get('tier') else ''}</p>")
    panels = [trace(f"{row['model']} (right)", row["model_thinking"], row["model_answer"]),
              trace(f"{row['reference']} (wrong)", row["reference_thinking"], row["reference_answer"])]
    if row.get("gold_thinking"):
        panels.append(trace("gold reasoning (benchmark)", row["gold_thinking"], row["answer"]))
    return head + "<div style='display:flex;gap:12px'>" + "".join(panels) + "</div>"


def win_browser(evaluation: Evaluation, reference: str = BASE):
    """An ipywidgets browser of the items a fine-tuned model got right and the base got wrong: pick a model and
    an item, listen, and read both reasoning traces."""
    import ipywidgets as widgets

    names = [n for n in evaluation.scores if n != reference]
    if not names:
        return widgets.HTML("<i>Only the base was evaluated: train adapters in notebook 06 to browse their wins.</i>")
    model_box = widgets.Dropdown(options=names, description="model")
    item_box = widgets.Dropdown(description="item", layout=widgets.Layout(width="70%"))
    panel = widgets.VBox()
    rows: dict[str, dict] = {}

    def show(_=None):
        row = rows.get(item_box.value)
        if row is None:
            panel.children = [widgets.HTML(f"<i>{model_box.value} got no item right that the base got wrong.</i>")]
            return
        wav = Path(row["audio_file"])
        player = widgets.Audio(value=wav.read_bytes(), format="wav", autoplay=False) if wav.is_file() \
            else widgets.HTML(f"audio file missing: {html.escape(str(wav))}")
        panel.children = [player, widgets.HTML(example_html(row))]

    def pick_model(_=None):
        rows.clear()
        rows.update({r["id"]: r for r in evaluation.wins(model_box.value, reference)})
        item_box.options = [(f"{r['question']} [{r['id']}]", key) for key, r in rows.items()]
        item_box.value = next(iter(rows), None)
        show()

    model_box.observe(pick_model, names="value")
    item_box.observe(show, names="value")
    pick_model()
    return widgets.VBox([widgets.HBox([model_box, item_box]), panel])


# ------------------------------------------------------------------------------------------------- across seeds
def summarise_seeds(run_dirs: Mapping[str, str | Path]) -> dict:
    """The headline across seeds from each run dir's `07-mmar-evaluation/summary.json`: per model, accuracy
    overall and per tier in every seed (with its item-bootstrap interval), mean and standard deviation over
    seeds, and the same for the difference to the base."""
    per_seed = {}
    for seed, run_dir in run_dirs.items():
        path = Path(run_dir) / STAGE / "summary.json"
        data = read_json(path)
        if data is None:
            raise FileNotFoundError(f"{path} not found: run notebook 07 in {run_dir} first")
        per_seed[str(seed)] = data
    benchmarks = {d["benchmark"] for d in per_seed.values()}
    models = list(dict.fromkeys(name for d in per_seed.values() for name in d["models"]))
    out: dict[str, Any] = {"seeds": list(per_seed), "benchmark": sorted(benchmarks),
                           "num_items": {s: d["num_items"] for s, d in per_seed.items()}, "models": {}}
    for name in models:
        entry: dict[str, Any] = {}
        for part in ("overall",) + TIERS:
            values, cis, gains = {}, {}, {}
            for seed, data in per_seed.items():
                m = data["models"].get(name)
                if m is None:
                    continue
                if part == "overall":
                    values[seed], cis[seed] = m["accuracy"], m.get("accuracy_ci")
                elif part in m.get("tiers", {}):
                    values[seed], cis[seed] = m["tiers"][part]["accuracy"], m["tiers"][part].get("ci")
                vs = (m.get("vs_base") or {}).get(part)
                if vs:
                    gains[seed] = {"estimate": vs["estimate"], "ci": [vs["low"], vs["high"]]}
            if not values:
                continue
            entry[part] = {"per_seed": values, "ci": cis, **_mean_std(list(values.values()))}
            if gains:
                entry[part]["vs_base"] = {"per_seed": gains, **_mean_std([g["estimate"] for g in gains.values()])}
        out["models"][name] = entry
        rubrics = {seed: d["models"][name].get("rubrics") for seed, d in per_seed.items() if name in d["models"]}
        crs = {seed: d["models"][name].get("crs") for seed, d in per_seed.items() if name in d["models"]}
        if rubrics and crs and all(v is not None for v in (*rubrics.values(), *crs.values())):
            out.setdefault("quality", {})[name] = {"rubrics": {"per_seed": rubrics, **_mean_std(list(rubrics.values()))},
                                                   "crs": {"per_seed": crs, **_mean_std(list(crs.values()))}}
    model = headline_model(models)
    references = CONTROLS + (("self_distill",) if model != "self_distill" else ())
    out["comparisons"] = pooled_comparisons(per_seed, model, references)
    return out


def headline_verdicts(summary: Mapping, min_gain: float = 5.0) -> list[tuple[str, bool]]:
    """The headline's bars, each (what, met): the self-distilled model (its final round) at least `min_gain`
    points over the base with a pooled interval above 0; above base_cont on composite questions; above
    answer_only on composite questions."""
    comparisons = summary.get("comparisons") or {}
    vs, model = comparisons.get("vs") or {}, comparisons.get("model", HEADLINE_MODEL)
    out = []
    base = (vs.get("base") or {}).get("overall")
    if base:
        out.append((f"{model} - base >= {min_gain:g} points overall with the interval above 0 "
                    f"({base['estimate']:+.1f} [{base['low']:+.1f}, {base['high']:+.1f}])",
                    base["estimate"] >= min_gain and base["low"] > 0))
    for ref in ("base_cont", "answer_only"):
        c = (vs.get(ref) or {}).get("composite")
        if c:
            out.append((f"{model} - {ref} > 0 on composite questions, interval excluding 0 "
                        f"({c['estimate']:+.1f} [{c['low']:+.1f}, {c['high']:+.1f}])", c["low"] > 0))
    return out


HEADLINE_MODEL = "self_distill"
CONTROLS = ("base", "base_cont", "answer_only", "gold_cot", "no_audit")  # what the headline model stands beside
_ROUND = re.compile(r"^self_distill_round(\d+)$")


def headline_model(models: Iterable[str]) -> str:
    """The self-distilled model the headline reports: the last round present (`self_distill_roundR`, trained
    with the same compute as the controls when `train.rounds` = R), else `self_distill`."""
    rounds = [(int(m.group(1)), name) for name in models if (m := _ROUND.match(name))]
    return max(rounds)[1] if rounds else HEADLINE_MODEL


def pooled_comparisons(per_seed: Mapping[str, Mapping], model: str = HEADLINE_MODEL,
                       references: Sequence[str] = CONTROLS, *, n_boot: int = 2000, seed: int = 0) -> dict:
    """`model` minus each reference, per tier and overall, pooled over seeds: the estimate is the mean over seeds
    of the paired per-seed difference; the 95% interval resamples items within every seed (a stratified paired
    bootstrap), so it covers item noise and is centred on the seeds' mean. Needs summary.json files with
    per-item matches (written by notebook 07 since the seeds table was added); others are left out."""
    usable = {s: d for s, d in per_seed.items()
              if model in d["models"] and d["models"][model].get("per_item") and d.get("item_tiers")}
    out: dict[str, dict] = {}
    for ref in references:
        seeds = [s for s, d in usable.items() if (d["models"].get(ref) or {}).get("per_item")]
        if not seeds:
            continue
        entry = {}
        for part in ("overall",) + TIERS:
            diffs = []
            for s in seeds:
                d = usable[s]
                a, b = d["models"][model]["per_item"], d["models"][ref]["per_item"]
                ids = sorted(i for i in a if i in b and (part == "overall" or d["item_tiers"].get(i) == part))
                if ids:
                    diffs.append(np.asarray([a[i] - b[i] for i in ids], dtype=float))
            if len(diffs) != len(seeds):
                continue
            rng = np.random.default_rng(seed)
            boots = np.zeros(n_boot)
            for values in diffs:
                boots += values[rng.integers(0, values.size, size=(n_boot, values.size))].mean(axis=1)
            boots /= len(diffs)
            low, high = np.quantile(boots, [0.025, 0.975])
            per = {s: 100.0 * float(v.mean()) for s, v in zip(seeds, diffs)}
            entry[part] = {"estimate": 100.0 * float(np.mean([v.mean() for v in diffs])), "low": 100.0 * float(low),
                           "high": 100.0 * float(high), "per_seed": per, "min_seed": min(per.values()),
                           "n_seeds": len(seeds), "n_items": int(sum(v.size for v in diffs))}
        out[ref] = entry
    return {"model": model, "vs": out} if out else {}


def _mean_std(values: list[float]) -> dict:
    arr = np.asarray(values, dtype=float)
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if arr.size > 1 else 0.0, "n_seeds": int(arr.size)}


def seeds_markdown(summary: Mapping) -> str:
    """The across-seed summary as a markdown table: mean +- std over seeds, each seed's value [item CI], and
    the difference to the base."""
    lines = [f"Benchmark: {', '.join(summary['benchmark'])}; seeds: {', '.join(summary['seeds'])}; "
             f"items per seed: {', '.join(str(v) for v in summary['num_items'].values())}", "",
             "| model | part | accuracy mean +- std | per seed [95% item CI] | vs base mean +- std | vs base per seed [CI] |",
             "|---|---|---|---|---|---|"]
    for name, entry in summary["models"].items():
        for part, e in entry.items():
            seeds = "; ".join(f"{s}: {v:.1f}" + (f" [{e['ci'][s][0]:.1f}, {e['ci'][s][1]:.1f}]" if e["ci"].get(s) else "")
                              for s, v in e["per_seed"].items())
            vs = e.get("vs_base")
            gain = f"{vs['mean']:+.1f} +- {vs['std']:.1f}" if vs else ""
            gain_seeds = "; ".join(f"{s}: {g['estimate']:+.1f} [{g['ci'][0]:+.1f}, {g['ci'][1]:+.1f}]"
                                   for s, g in vs["per_seed"].items()) if vs else ""
            lines.append(f"| {name} | {part} | {e['mean']:.1f} +- {e['std']:.1f} | {seeds} | {gain} | {gain_seeds} |")
    quality = summary.get("quality") or {}
    if quality:
        lines += ["", "| model | MMAR-Rubrics mean +- std | CRS mean +- std | per seed (rubrics / CRS) |",
                  "|---|---|---|---|"]
        for name, q in quality.items():
            rub, crs = q["rubrics"], q["crs"]
            seeds = "; ".join(f"{s}: {rub['per_seed'][s]:.1f} / {crs['per_seed'][s]:.2f}" for s in rub["per_seed"])
            lines.append(f"| {name} | {rub['mean']:.1f} +- {rub['std']:.1f} | {crs['mean']:.2f} +- {crs['std']:.2f} | "
                         f"{seeds} |")
    comparisons = summary.get("comparisons") or {}
    verdicts = headline_verdicts(summary)
    if verdicts:
        lines += ["", "The bars (issue: the miniature's headline), judged from the pooled intervals below:", ""]
        lines += [f"- {text}: **{'met' if ok else 'not met'}**" for text, ok in verdicts]
    if comparisons:
        lines += ["", f"Paired differences of {comparisons['model']}, pooled over seeds (95% interval: paired bootstrap "
                      "over items within each seed), with each seed's own difference:", "",
                  "| minus | part | difference [95% CI] | per seed | excludes 0 |", "|---|---|---|---|---|"]
        for ref, entry in comparisons["vs"].items():
            for part, c in entry.items():
                seeds = "; ".join(f"{s}: {v:+.1f}" for s, v in c["per_seed"].items())
                verdict = "yes, above" if c["low"] > 0 else "yes, below" if c["high"] < 0 else "no"
                lines.append(f"| {ref} | {part} | {c['estimate']:+.1f} [{c['low']:+.1f}, {c['high']:+.1f}] | {seeds} | "
                             f"{verdict} |")
    return "\n".join(lines) + "\n"
