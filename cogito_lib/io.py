"""Small file helpers every stage shares: atomic writes, crash-tolerant JSONL, stable ids.

Stages communicate only through files in the run dir. A stage killed with `kill -9` must leave nothing half
written that a rerun would trust: whole files are written to a temp file and renamed; JSONL journals are
appended line by line and a torn last line is ignored on reading.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator


def stable_id(*parts: Any, length: int = 12) -> str:
    """A short hex id derived from the content and seed it names (same inputs, same id)."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:length]


def portable(value: Any, run_dir: str | os.PathLike) -> Any:
    """`value` with every path string inside `run_dir` written as `<run>/relative/part` (strings, and lists, tuples
    and dicts of them, walked; anything else as is). Cache keys hash this instead of absolute paths, so a run dir
    that is moved or copied (`cp -a`, which keeps the files' times) reuses everything it holds."""
    root = Path(run_dir)
    prefixes = sorted({str(root), os.path.abspath(root), str(root.resolve())}, key=len, reverse=True)

    def convert(item: Any) -> Any:
        if isinstance(item, str):
            for prefix in prefixes:
                if item == prefix:
                    return "<run>"
                if item.startswith(prefix + os.sep):
                    return "<run>/" + item[len(prefix) + 1:]
            return item
        if isinstance(item, (list, tuple)):
            return [convert(x) for x in item]
        if isinstance(item, dict):
            return {k: convert(x) for k, x in item.items()}
        return item

    return convert(value)


def from_portable(value: str | None, run_dir: str | os.PathLike) -> str | None:
    """The path a `portable` string names in `run_dir` (`<run>/x` -> `run_dir/x`); other strings and None as is."""
    if value == "<run>":
        return str(Path(run_dir))
    if isinstance(value, str) and value.startswith("<run>/"):
        return str(Path(run_dir) / value[len("<run>/"):])
    return value


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` through a temp file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def encode_wav(audio, sample_rate: int) -> bytes:
    """16-bit PCM mono WAV bytes of a float waveform in [-1, 1] (no timestamps: the same audio gives the same
    bytes). Write them with `atomic_write_bytes`."""
    import io

    import numpy as np
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(audio, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
    return buf.getvalue()


def clean_stage_dir(stage_dir: str | os.PathLike, keep: set[str]) -> None:
    """Remove temp files of killed writers, and wavs under `audio/` whose `audio/<name>` is not in `keep` (the
    final manifest's audio paths)."""
    stage_dir = Path(stage_dir)
    for path in stage_dir.rglob(".*.tmp"):
        path.unlink(missing_ok=True)
    for path in (stage_dir / "audio").glob("*.wav"):
        if f"audio/{path.name}" not in keep:
            path.unlink()


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def dumps_line(record: dict) -> str:
    """One JSONL line, keys in a fixed order so the same record is the same bytes."""
    return json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n"


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike, default: Any = None) -> Any:
    path = Path(path)
    if not path.exists():
        return default
    return json.loads(path.read_text(encoding="utf-8"))


def write_jsonl(path: str | os.PathLike, records: Iterable[dict]) -> Path:
    """Write a whole JSONL file atomically."""
    return atomic_write_text(path, "".join(dumps_line(r) for r in records))


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


def read_jsonl(path: str | os.PathLike, *, tolerate_torn_tail: bool = True) -> list[dict]:
    """Read a JSONL file. A torn last line (a writer killed mid-append) is skipped; any other bad line raises
    ValueError naming the file and line number."""
    path = Path(path)
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").split("\n")
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            is_tail = all(not rest.strip() for rest in lines[number:])
            if tolerate_torn_tail and is_tail:
                break
            raise ValueError(f"{path}:{number}: not valid JSON ({err.msg}); fix or delete that line") from err
    return records


class JsonlJournal:
    """Append-only JSONL journal for resumable stages: each finished item is one flushed, fsynced line.

    On open, a torn last line from a killed writer is cut off so later appends start on a clean line.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._repair()
        self._fh = open(self.path, "a", encoding="utf-8")

    def _repair(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if not data or data.endswith(b"\n"):
            return
        cut = data.rfind(b"\n") + 1  # drop the partial line
        with open(self.path, "r+b") as fh:
            fh.truncate(cut)

    def records(self) -> list[dict]:
        return read_jsonl(self.path)

    def append(self, record: dict) -> None:
        self._fh.write(dumps_line(record))
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> "JsonlJournal":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def iter_jsonl(path: str | os.PathLike) -> Iterator[dict]:
    yield from read_jsonl(path)
