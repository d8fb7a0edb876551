"""MMAR-Rubrics and CRS: judge correct answers against the reference reasoning, 5 runs, trimmed mean."""
from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Sequence

from .rule import LAYERS, MODALITIES, is_correct, normalise_category
from .scoring import _breakdown, index_predictions

def trimmed_run_mean(run_totals: Sequence[float]) -> float:
    """Mean of the rater runs after dropping the highest and lowest (when there are at least 3 runs)."""
    ordered = sorted(run_totals)
    kept = ordered[1:-1] if len(ordered) >= 3 else ordered
    return float(sum(kept) / len(kept))


def _run_total(scores: Sequence[Any], rubric: Sequence[Mapping]) -> float:
    if len(scores) != len(rubric):
        raise ValueError(f"judge returned {len(scores)} scores for {len(rubric)} rubric items")
    for score, entry in zip(scores, rubric):
        allowed = entry.get("choices", [0, 1])
        if isinstance(score, bool) or score not in allowed:
            raise ValueError(f"judge score {score!r} for {entry.get('name')!r} is not one of {allowed}")
    max_total = sum(max(entry.get("choices", [0, 1])) for entry in rubric)
    return float(sum(scores)) / max_total if max_total else 0.0


def score_rubrics(items: Sequence[Mapping], predictions: Iterable[Mapping] | Mapping[str, Mapping], judge: Any,
                  runs: int = 5, *, progress: bool = False, duplicates: str = "error") -> dict:
    """MMAR-Rubrics: a wrong answer scores 0 with no judge call; a correct one is judged `runs` times against
    the reference `thinking`, each run's total = mean of its 0/1 rubric scores, the highest and lowest runs
    dropped and the middle averaged. Returns `rubrics` (x100 over evaluated items), `crs` (0..1 over correct
    items) and per-item details. A judge failure (any exception) leaves the item unevaluated and listed in
    `judge_failure_ids` (as the official script does: rerun to complete, the cache makes that cheap)."""
    index, _ = index_predictions(predictions, duplicates)
    lacking = [it["id"] for it in items if not isinstance(it.get("rubric"), list)]
    if lacking:
        raise ValueError(f"{len(lacking)} item(s) have no 'rubric' (e.g. {lacking[:3]}): "
                         f"MMAR-Rubrics needs the meta file with thinking/cue/rubric fields")
    iterator: Iterable = items
    if progress:
        from tqdm.auto import tqdm
        iterator = tqdm(items, desc="rubrics")
    details: dict[str, dict] = {}
    failures: dict[str, str] = {}
    for item in iterator:
        record = index.get(item["id"]) or {}
        answer = record.get("answer_prediction")
        answer = answer if isinstance(answer, str) else ""
        thinking = record.get("thinking_prediction")
        thinking = thinking if isinstance(thinking, str) else ""
        if not is_correct(answer, item["answer"], item["choices"]):
            details[item["id"]] = {"correct": False, "score": 0.0, "run_scores": [], "run_totals": []}
            continue
        run_scores, run_totals = [], []
        try:
            for run in range(runs):
                scores = [int(s) for s in judge.score(dict(item), thinking, answer, run)]
                run_totals.append(_run_total(scores, item["rubric"]))
                run_scores.append(scores)
        except Exception as err:  # noqa: BLE001 - any judge failure leaves this item unevaluated
            failures[item["id"]] = f"{type(err).__name__}: {err}"
            continue
        details[item["id"]] = {"correct": True, "score": trimmed_run_mean(run_totals),
                               "run_scores": run_scores, "run_totals": run_totals}
    evaluated = [it for it in items if it["id"] in details]
    per_item = {it["id"]: details[it["id"]]["score"] for it in evaluated}
    correct = [s for k, s in per_item.items() if details[k]["correct"]]

    def breakdown(key: Callable[[Mapping], str], order: Sequence[str] = ()) -> dict:
        rows = _breakdown(evaluated, per_item, key, order)
        return {name: {"rubrics": row["accuracy"], "n": row["n"],
                       "correct": sum(details[it["id"]]["correct"] for it in evaluated if key(it) == name)}
                for name, row in rows.items()}

    return {
        "rubrics": 100.0 * sum(per_item.values()) / len(per_item) if per_item else 0.0,
        "crs": sum(correct) / len(correct) if correct else None,
        "accuracy": 100.0 * len(correct) / len(per_item) if per_item else 0.0,
        "num_items": len(items),
        "num_evaluated": len(per_item),
        "num_correct": len(correct),
        "runs": runs,
        "complete": not failures,
        "judge_failures": len(failures),
        "judge_failure_ids": failures,
        "by_modality": breakdown(lambda it: it["modality"], MODALITIES),
        "by_category": breakdown(lambda it: normalise_category(it["category"]), LAYERS),
        "by_sub_category": breakdown(lambda it: it["sub-category"]),
        "per_item": per_item,
        "details": details,
    }
