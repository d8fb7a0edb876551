"""Reading and writing the benchmark's JSONL files (meta, predictions, submissions) with the standard library only,
so that `cogito_lib.mmar` stands alone."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator


def scan_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, Any, str | None]]:
    """Every non-blank line of a JSONL file as (line number, parsed value or None, problem or None), for
    validators that report every bad line instead of stopping at the first."""
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line), None
        except json.JSONDecodeError as err:
            yield number, None, f"not valid JSON ({err.msg})"


def _atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_jsonl(path: str | os.PathLike, records: Iterable[dict]) -> Path:
    """Write a whole JSONL file atomically (one record a line, keys sorted, UTF-8)."""
    return _atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n"
                                            for r in records))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write a JSON file atomically (indented, keys sorted)."""
    return _atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=True) + "\n")
