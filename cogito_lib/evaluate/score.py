"""Scores of notebook 07: accuracy by MMAR's official rule with breakdowns and tiers, MMAR-Rubrics and CRS,
and paired bootstrap intervals against a reference model."""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..layout import BASE_MODEL as BASE
from ..mmar import LAYERS, MODALITIES, bootstrap_ci, normalise_category, score_predictions, score_rubrics
from ..world.skills import TIERS
from .benchmark import Benchmark


def tier_scores(items: Sequence[Mapping], per_item: Mapping[str, float]) -> dict[str, dict]:
    """Accuracy per tier (atomic, composite) from per-item matches."""
    out = {}
    for tier in TIERS:
        values = [per_item[it["id"]] for it in items if it.get("tier") == tier]
        if values:
            out[tier] = {"accuracy": 100.0 * float(np.mean(values)), "n": len(values), "correct": int(sum(values))}
    return out


def skill_accuracy(evaluation):
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


def chain_profile(items: Sequence[Mapping], records: Sequence[Mapping]) -> dict[str, dict]:
    """How a model reasons, per tier (in percent of the tier's items): `reasons` (its reasoning is not empty),
    `lists` (it starts with a listing of the events), `listing_right` (that listing is the gold one), `gold_steps`
    (it states every step key of the reference chain, whatever the values), `chain_right` (every gold step with its
    true value) and `correct` (MMAR's rule). The columns say where a model that misses a tier goes wrong: no
    reasoning at all, another chain than the question needs, or the right chain with a wrong value."""
    from ..mmar import is_correct
    from ..world.skills import parse_reasoning

    by_id = {r["id"]: r for r in records}
    rows: dict[str, list[dict]] = {}
    for item in items:
        record = by_id.get(item["id"]) or {}
        thinking = record.get("thinking_prediction") or ""
        parsed = parse_reasoning(thinking)
        stated = dict(reversed(parsed.steps))  # the first statement of each key
        gold = [tuple(step) for step in item.get("steps") or ()]
        optional = set(item.get("optional_steps") or ())
        needed = [(k, v) for k, v in gold if k not in optional]
        answer = record.get("answer_prediction")
        rows.setdefault(item.get("tier") or "all", []).append({
            "reasons": bool(thinking.strip()),
            "lists": parsed.listing is not None,
            "listing_right": parsed.listing is not None and parsed.listing == list(item.get("listing") or []),
            "gold_steps": bool(needed) and all(k in stated for k, _ in needed),
            "chain_right": bool(needed) and all(stated.get(k) == v for k, v in needed),
            "correct": is_correct(answer if isinstance(answer, str) else "", item["answer"], item["choices"]),
        })
    return {tier: {"n": len(group), **{key: 100.0 * float(np.mean([r[key] for r in group])) for key in group[0]}}
            for tier, group in rows.items()}
