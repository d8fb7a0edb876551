"""The Interspeech 2026 Audio Reasoning Challenge submission format: validate and write."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from .jsonl import JsonlError, scan_jsonl, write_jsonl
from .rule import SUBMISSION_KEYS, THINKING_LIMIT

def validate_submission(items: Sequence[Mapping], predictions_path: str | os.PathLike) -> list[str]:
    """Every problem of a challenge submission file against the meta items (empty list = valid)."""
    path = Path(predictions_path)
    if not path.exists():
        return [f"{path} not found"]
    known = {item["id"] for item in items}
    seen: dict[str, int] = {}
    problems = []
    try:
        lines = list(scan_jsonl(path, what="submission file"))
    except JsonlError as err:
        return [str(err)]
    for number, record, problem in lines:
        if problem:
            problems.append(f"line {number}: {problem}")
            continue
        if not isinstance(record, dict):
            problems.append(f"line {number}: expected a JSON object, got {type(record).__name__}")
            continue
        for key in SUBMISSION_KEYS:
            if key not in record:
                problems.append(f"line {number}: missing key {key!r}")
            elif not isinstance(record[key], str):
                problems.append(f"line {number}: {key!r} must be a string, got {type(record[key]).__name__}")
        record_id = record.get("id")
        if isinstance(record_id, str):
            if record_id in seen:
                problems.append(f"line {number}: duplicate id {record_id} (first on line {seen[record_id]})")
            else:
                seen[record_id] = number
            if record_id not in known:
                problems.append(f"line {number}: unknown id {record_id} (not in the meta file)")
        thinking = record.get("thinking_prediction")
        if isinstance(thinking, str) and len(thinking) >= THINKING_LIMIT:
            problems.append(f"line {number}: thinking_prediction has {len(thinking)} characters "
                            f"(must be < {THINKING_LIMIT})")
    for item in items:
        if item["id"] not in seen:
            problems.append(f"missing prediction for id {item['id']}")
    return problems


def write_submission(records: Iterable[Mapping], path: str | os.PathLike, *, truncate: bool = False) -> Path:
    """Write a challenge submission JSONL (only id, thinking_prediction, answer_prediction; atomic).

    Raises ValueError on a duplicate id, a non-string field, or a thinking_prediction of 10,000+ characters
    (unless `truncate=True`, which keeps its first 9,999 characters)."""
    out, seen = [], set()
    for record in records:
        clean = {}
        for key in SUBMISSION_KEYS:
            value = record.get(key, "" if key != "id" else None)
            if value is None and key == "thinking_prediction":
                value = ""
            if not isinstance(value, str):
                raise ValueError(f"record {record.get('id')!r}: {key!r} must be a string, got {value!r}")
            clean[key] = value
        if clean["id"] in seen:
            raise ValueError(f"duplicate id {clean['id']} in submission records")
        seen.add(clean["id"])
        if len(clean["thinking_prediction"]) >= THINKING_LIMIT:
            if not truncate:
                raise ValueError(f"id {clean['id']}: thinking_prediction has {len(clean['thinking_prediction'])} "
                                 f"characters (limit < {THINKING_LIMIT}); pass truncate=True to cut it")
            clean["thinking_prediction"] = clean["thinking_prediction"][:THINKING_LIMIT - 1]
        out.append(clean)
    return write_jsonl(path, out)
