"""What notebook 07 shows: the `Evaluation` of every model (tables, sentences written from the numbers, files),
challenge submissions, and the paper's numbers beside this run's, always labelled as the paper's."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..layout import BASE_MODEL as BASE
from ..mmar import validate_submission, write_submission
from ..world.skills import TIERS
from .benchmark import Benchmark
from .predictions import ModelSpec
from .score import cell_accuracy, chain_profile, compare

# The paper's reported MMAR numbers (Audio-Cogito, Interspeech 2026, arXiv 2604.12527). They are the paper's,
# never ours: every table or text that shows them labels them so.
PAPER_MMAR = {
    "Qwen3-Omni-30B-A3B-Thinking (base)": {"accuracy": 68.00, "rubrics": 57.97, "crs": None},
    "Audio-Cogito (self-distilled)": {"accuracy": 71.70, "rubrics": 62.22, "crs": 0.87},
}
PAPER_LABEL = "paper's reported numbers (Audio-Cogito, MMAR, 1000 items) - not this run"


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

    def cell_accuracy(self, model: str):
        """`model`'s accuracy by modality x layer (see `score.cell_accuracy`)."""
        return cell_accuracy(self.benchmark.items, self.scores[model]["accuracy"]["per_item"])

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
                "rubric_per_item": ({k: round(float(v), 6) for k, v in sorted(rubrics["per_item"].items())}
                                    if rubrics else None),
                "chain_profile": chain_profile(self.benchmark.items, self.predictions[name]),
            }
        return {"benchmark": self.benchmark.name, "benchmark_fingerprint": self.benchmark.fingerprint,
                "num_items": len(self.benchmark.items), "judge": self.judge, "models": models,
                "item_tiers": {it["id"]: it.get("tier") for it in self.benchmark.items},
                "item_skills": {it["id"]: it.get("skill") or it.get("sub-category") for it in self.benchmark.items}}

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
    """A challenge submission file per model (`submission-<model>.jsonl`), each checked by validate_submission
    against the items evaluated. A partial run (eval.num_items below the meta's size) makes a submission for its
    first N items; `check` is the command that gives the same verdict on it."""
    items = evaluation.benchmark.items
    total = int(evaluation.benchmark.info.get("meta_items") or len(items))
    out = {}
    for name, records in evaluation.predictions.items():
        path = write_submission(records, Path(stage_dir) / f"submission-{name}.jsonl", truncate=True)
        check = (f"python -m cogito_lib.mmar validate-submission --meta {evaluation.benchmark.meta_path} "
                 f"--predictions {path}" + (f" --num-items {len(items)}" if len(items) < total else ""))
        out[name] = {"path": str(path), "problems": validate_submission(items, path), "items": len(items),
                     "meta_items": total, "partial": len(items) < total, "check": check}
    evaluation.submissions = out
    return out


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
