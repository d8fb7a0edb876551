"""Accuracy by the official rule over a meta file, with breakdowns by modality, layer and sub-category."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

from .jsonl import JsonlError, scan_jsonl
from .rule import LAYERS, MODALITIES, is_correct, normalise_category

DUPLICATE_POLICIES = ("error", "first", "last")  # what a repeated prediction id does: stop, or keep one


class DuplicatePredictions(ValueError):
    """Predictions repeat an id and no policy says which one counts."""


def read_predictions(path: str | os.PathLike) -> list[dict]:
    """Read a prediction JSONL (challenge format) with the reader `validate-submission` uses; a line that is not
    a JSON object with a string `id` raises JsonlError naming the file and line."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run the evaluation (chapter 07) to write predictions first")
    records = []
    for number, record, problem in scan_jsonl(path, what="predictions file"):
        if problem is None and not isinstance(record, dict):
            problem = f"expected a JSON object, got {type(record).__name__}"
        elif problem is None and not isinstance(record.get("id"), str):
            problem = "no string 'id'"
        if problem:
            raise JsonlError(f"{path}:{number}: {problem}; fix that line (`python -m cogito_lib.mmar "
                             f"validate-submission` lists every problem)")
        records.append(record)
    return records


def index_predictions(predictions: Iterable[Mapping] | Mapping[str, Mapping],
                      duplicates: str = "error") -> tuple[dict[str, Mapping], int]:
    """{id: record} from a list of prediction records, and how many records repeated an id.

    A repeated id raises DuplicatePredictions unless `duplicates` chooses a policy: "first" or "last" keeps that
    occurrence (and counts the others). Records that are not objects with an id raise ValueError."""
    if duplicates not in DUPLICATE_POLICIES:
        raise ValueError(f"duplicates={duplicates!r}: choose one of {', '.join(DUPLICATE_POLICIES)}")
    if isinstance(predictions, Mapping):
        return dict(predictions), 0
    index: dict[str, Mapping] = {}
    positions: dict[str, list[int]] = {}
    for number, record in enumerate(predictions, start=1):
        if not isinstance(record, Mapping) or "id" not in record:
            raise ValueError(f"prediction {number} is not an object with an 'id': {str(record)[:80]!r}")
        key = str(record["id"])
        positions.setdefault(key, []).append(number)
        if key not in index or duplicates == "last":
            index[key] = record
    repeated = {k: n for k, n in positions.items() if len(n) > 1}
    if repeated and duplicates == "error":
        shown = ", ".join(f"{k} (records {', '.join(map(str, n))})" for k, n in list(repeated.items())[:5])
        raise DuplicatePredictions(f"{len(repeated)} prediction id(s) appear more than once: {shown}"
                                   f"{' ...' if len(repeated) > 5 else ''}; keep one line per id, or choose which "
                                   f"counts (duplicates='first' or 'last', --duplicates first|last)")
    return index, sum(len(n) - 1 for n in repeated.values())


def is_parse_failure(record: Mapping) -> bool:
    """A prediction line the model's output could not be parsed into: empty/missing answer or flagged."""
    answer = record.get("answer_prediction")
    return bool(record.get("parse_failed")) or not isinstance(answer, str) or not answer.strip()


def _breakdown(items: Sequence[Mapping], per_item: Mapping[str, float], key: Callable[[Mapping], str],
               order: Sequence[str] = ()) -> dict[str, dict]:
    groups: dict[str, list[float]] = {}
    for item in items:
        groups.setdefault(key(item), []).append(per_item[item["id"]])
    names = [n for n in order if n in groups] + sorted(n for n in groups if n not in order)
    out = {}
    for name in names:
        values = groups[name]
        correct = sum(values)
        out[name] = {"accuracy": 100.0 * correct / len(values), "n": len(values),
                     "correct": int(correct) if float(correct).is_integer() else correct}
    return out


def score_predictions(items: Sequence[Mapping], predictions: Iterable[Mapping] | Mapping[str, Mapping], *,
                      duplicates: str = "error") -> dict:
    """Accuracy (percent) by the official rule over every meta item, with breakdowns and per-item matches.

    An item with no prediction is wrong and counted in `missing` (the official script silently skips such
    items; here they stay in the denominator so a crashed run cannot look better). A repeated prediction id is an
    error unless `duplicates` is "first" or "last" (`index_predictions`)."""
    if not items:
        raise ValueError("no benchmark items to score: the meta holds none")
    index, duplicates = index_predictions(predictions, duplicates)
    per_item: dict[str, int] = {}
    missing, parse_failures = [], []
    for item in items:
        record = index.get(item["id"])
        if record is None:
            missing.append(item["id"])
            per_item[item["id"]] = 0
            continue
        if is_parse_failure(record):
            parse_failures.append(item["id"])
        answer = record.get("answer_prediction")
        per_item[item["id"]] = int(is_correct(answer if isinstance(answer, str) else "",
                                              item["answer"], item["choices"]))
    known = {item["id"] for item in items}
    num_correct = sum(per_item.values())
    return {
        "accuracy": 100.0 * num_correct / len(items) if items else 0.0,
        "num_items": len(items),
        "num_correct": num_correct,
        "missing": len(missing),
        "missing_ids": missing,
        "parse_failures": len(parse_failures),
        "parse_failure_ids": parse_failures,
        "duplicate_predictions": duplicates,
        "unknown_prediction_ids": sorted(k for k in index if k not in known),
        "by_modality": _breakdown(items, per_item, lambda it: it["modality"], MODALITIES),
        "by_category": _breakdown(items, per_item, lambda it: normalise_category(it["category"]), LAYERS),
        "by_sub_category": _breakdown(items, per_item, lambda it: it["sub-category"]),
        "per_item": per_item,
    }


def format_table(scores: Mapping, value: str = "accuracy") -> str:
    """A readable breakdown table (modality, layer, sub-category) of a `score_predictions` result (or of a
    `score_rubrics` result with value="rubrics"), ending with the total line."""
    lines = []
    for title, key in (("modality", "by_modality"), ("layer", "by_category"), ("sub-category", "by_sub_category")):
        rows = scores.get(key) or {}
        if not rows:
            continue
        width = max(len(title), *(len(name) for name in rows))
        lines.append(f"{title:<{width}}  {value:>9}  {'correct':>7}  {'n':>5}")
        for name, row in rows.items():
            lines.append(f"{name:<{width}}  {row[value]:>9.2f}  {row.get('correct', '-'):>7}  {row['n']:>5}")
        lines.append("")
    if value == "accuracy":
        lines.append(f"Total accuracy: {scores['accuracy']:.2f} over {scores['num_items']} items "
                     f"({scores['num_correct']} correct; missing {scores['missing']}, "
                     f"parse failures {scores['parse_failures']})")
    else:
        crs = "n/a" if scores.get("crs") is None else f"{scores['crs']:.3f}"
        lines.append(f"Total {value}: {scores[value]:.2f}  accuracy: {scores['accuracy']:.2f}  CRS: {crs}  over "
                     f"{scores['num_evaluated']}/{scores['num_items']} items evaluated; "
                     f"judge failures {scores['judge_failures']}")
    return "\n".join(lines)
