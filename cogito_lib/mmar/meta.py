"""Loader and validator for the official MMAR-meta.jsonl (and MMAR-synth, same format).

A bad meta is rejected, never silently shrunk: a row that is not JSON, lacks a field, names an unknown modality or
category, gives an answer that is not among its choices or repeats an id stops the load with one `MetaError`
listing every such row, as does an empty meta. `exclude_bad_rows=True` (the command line's `--exclude-bad-rows`)
is the explicit way to score without them: the rows are left out and listed in `MetaLoad.excluded`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .jsonl import parse_line, read_text, scan_jsonl
from .rule import CATEGORIES, MODALITIES, RUBRIC_SIZE

# key -> allowed types (None means JSON null is allowed)
_META_FIELDS: dict[str, tuple[type, ...]] = {
    "id": (str,), "audio_path": (str,), "question": (str,), "choices": (list,), "answer": (str,),
    "modality": (str,), "category": (str,), "sub-category": (str,),
    "language": (str, type(None)), "source": (str, type(None)), "url": (str, type(None)),
    "timestamp": (str, type(None)),
}
_RUBRICS_FIELDS: dict[str, tuple[type, ...]] = {"thinking": (str,), "cue": (list,), "rubric": (list,)}
_RUBRIC_ITEM_TEXT = ("name", "scoring_point", "note")


@dataclass
class MetaProblem:
    """One thing wrong with a meta file: where (line, id), what kind, and a readable message."""
    kind: str                    # "json", "schema", "duplicate_id", "missing_audio"
    message: str
    line: int | None = None
    id: str | None = None

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line is not None else ""
        if self.id is not None:
            where = f"{where} id={self.id}".strip()
        return f"{where}: {self.message}" if where else self.message


@dataclass
class MetaLoad:
    """What `load_meta` found: the valid items and every problem (bad rows are there only when they were excluded
    on request; otherwise they stop the load). `excluded` lists the rows left out."""
    items: list[dict]
    problems: list[MetaProblem] = field(default_factory=list)
    path: str = ""

    @property
    def excluded(self) -> list[MetaProblem]:
        """The rows left out of `items` (with `exclude_bad_rows=True`), one problem each."""
        return [p for p in self.problems if p.kind != "missing_audio"]

    def excluded_summary(self) -> str:
        """'excluded 2 bad row(s) of <meta>: line 3 id=x: ...; ...' (empty when nothing was excluded)."""
        rows = self.excluded
        if not rows:
            return ""
        listing = "; ".join(str(p) for p in rows[:10]) + (f"; ... and {len(rows) - 10} more" if len(rows) > 10 else "")
        return f"excluded {len(rows)} bad row(s) of {self.path} from the denominator: {listing}"

    @property
    def ok(self) -> bool:
        return not self.problems

    def by_id(self) -> dict[str, dict]:
        return {item["id"]: item for item in self.items}

    def raise_if_problems(self) -> "MetaLoad":
        if self.problems:
            listing = "\n  ".join(str(p) for p in self.problems)
            raise MetaError(f"{self.path}: {len(self.problems)} problem(s); fix these rows or the audio folder:"
                            f"\n  {listing}")
        return self


class MetaError(ValueError):
    """Raised by strict loading; its message lists every problem found."""


def _type_names(types: tuple[type, ...]) -> str:
    return " or ".join("null" if t is type(None) else t.__name__ for t in types)


def validate_row(row: Any, *, require_rubrics: bool = False) -> list[str]:
    """Schema problems of one MMAR-meta row (empty list = valid)."""
    if not isinstance(row, dict):
        return [f"row is a JSON {type(row).__name__}, expected an object"]
    errors: list[str] = []
    fields = dict(_META_FIELDS)
    if require_rubrics or any(k in row for k in _RUBRICS_FIELDS):
        fields.update(_RUBRICS_FIELDS)   # rubric fields are optional, but all-or-nothing and well-typed
    for key, types in fields.items():
        if key not in row:
            errors.append(f"missing key {key!r}")
        elif not isinstance(row[key], types) or isinstance(row[key], bool):
            errors.append(f"{key!r} must be {_type_names(types)}, got {type(row[key]).__name__}")
    if errors:
        return errors
    if not row["id"].strip():
        errors.append("'id' is empty")
    choices = row["choices"]
    if len(choices) < 2 or not all(isinstance(c, str) for c in choices):
        errors.append("'choices' must be a list of at least 2 strings")
    elif len(set(choices)) != len(choices):
        errors.append(f"'choices' has duplicates: {choices}")
    elif row["answer"] not in choices:
        errors.append(f"'answer' {row['answer']!r} is not one of the choices {choices}")
    if row["modality"] not in MODALITIES:
        errors.append(f"'modality' {row['modality']!r} is not one of {list(MODALITIES)}")
    if row["category"] not in CATEGORIES:
        errors.append(f"'category' {row['category']!r} is not one of {list(CATEGORIES)} (official spelling)")
    if "rubric" in fields:
        if not all(isinstance(c, str) for c in row["cue"]):
            errors.append("'cue' must be a list of strings")
        rubric = row["rubric"]
        if len(rubric) != RUBRIC_SIZE:
            errors.append(f"'rubric' has {len(rubric)} items, expected {RUBRIC_SIZE}")
        for i, entry in enumerate(rubric):
            if not isinstance(entry, dict):
                errors.append(f"rubric[{i}] must be an object")
                continue
            for key in _RUBRIC_ITEM_TEXT:
                if not isinstance(entry.get(key), str):
                    errors.append(f"rubric[{i}].{key} must be a string")
            scores = entry.get("choices")
            if (not isinstance(scores, list) or not scores
                    or not all(isinstance(s, int) and not isinstance(s, bool) for s in scores)):
                errors.append(f"rubric[{i}].choices must be a non-empty list of integers, e.g. [0, 1]")
    return errors


def resolve_audio(item: Mapping, audio_root: str | os.PathLike) -> Path:
    """Where an item's audio lives: `audio_path` (official form './audio/<id>.wav') under `audio_root`."""
    path = Path(item["audio_path"])
    return path if path.is_absolute() else Path(audio_root) / path


def load_meta(meta_path: str | os.PathLike, audio_root: str | os.PathLike | None = None, check_audio: bool = True,
              *, strict: bool = False, require_rubrics: bool = False, exclude_bad_rows: bool = False) -> MetaLoad:
    """Load and validate an MMAR-meta.jsonl (or a JSON list); bad rows by line, missing audio by id.

    `audio_root` defaults to the meta file's folder (the official layout: MMAR-meta.jsonl beside audio/).
    Valid rows get `audio_file` (resolved path). A bad row (not JSON, a schema problem, a duplicate id) raises one
    `MetaError` listing every bad row, unless `exclude_bad_rows=True`: then those rows are left out and listed in
    `excluded`. A meta with no items is always an error. Rows whose audio is missing stay in (text scoring still
    works) and are reported in `problems`; `strict=True` raises on those too."""
    meta_path = Path(meta_path)
    if not meta_path.exists():
        raise FileNotFoundError(f"{meta_path} not found: download MMAR-meta.jsonl from ddlBoJack/MMAR "
                                f"(or build MMAR-synth first)")
    audio_root = Path(audio_root) if audio_root is not None else meta_path.parent
    rows: list[tuple[int | None, Any]] = []
    problems: list[MetaProblem] = []
    if meta_path.suffix == ".json":
        data, problem = parse_line(read_text(meta_path, what="meta file"))
        if problem:
            raise MetaError(f"{meta_path}: {problem}: fix the file")
        rows = [(None, row) for row in (data if isinstance(data, list) else [data])]
    else:
        for number, row, problem in scan_jsonl(meta_path, what="meta file"):
            if problem:
                problems.append(MetaProblem("json", problem, line=number))
            else:
                rows.append((number, row))
    items: list[dict] = []
    seen: dict[str, int | None] = {}
    for number, row in rows:
        row_id = row.get("id") if isinstance(row, dict) and isinstance(row.get("id"), str) else None
        errors = validate_row(row, require_rubrics=require_rubrics)
        if errors:
            problems.append(MetaProblem("schema", "; ".join(errors), line=number, id=row_id))
            continue
        if row_id in seen:
            problems.append(MetaProblem("duplicate_id", f"duplicate id (first seen on line {seen[row_id]})",
                                        line=number, id=row_id))
            continue
        seen[row_id] = number
        item = dict(row)
        item["audio_file"] = str(resolve_audio(row, audio_root))
        items.append(item)
    problems.sort(key=lambda p: p.line or 0)
    result = MetaLoad(items=items, problems=problems, path=str(meta_path))
    if result.excluded and not exclude_bad_rows:
        bad = result.excluded
        listing = "".join(f"\n  {p}" for p in bad[:20]) + (f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else "")
        raise MetaError(f"{meta_path}: {len(bad)} bad row(s), first {bad[0]}: fix them, or exclude them explicitly "
                        f"(exclude_bad_rows=True, --exclude-bad-rows) to score the other {len(items)} items"
                        + (listing if len(bad) > 1 else ""))
    if not items:
        raise MetaError(f"{meta_path}: no valid items" + (f" ({len(problems)} bad row(s))" if problems else
                                                           " (the file is empty)") + ": nothing to score")
    if check_audio:
        for item in items:
            if not Path(item["audio_file"]).is_file():
                problems.append(MetaProblem("missing_audio", f"audio file not found: {item['audio_file']}",
                                            id=item["id"]))
    return result.raise_if_problems() if strict else result
