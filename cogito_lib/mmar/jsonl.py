"""Reading and writing the benchmark's JSONL files (meta, predictions, submissions) with the standard library only,
so that `cogito_lib.mmar` stands alone.

One reader for every command (`scan_jsonl`): it parses a file exactly as the `json` module does, one value per
line, where only `\\n` ends a line (U+2028, U+0085 and other separators inside a string are text, as the kit's own
writer leaves them). What cannot be read at all (a missing file, a folder, text that is not UTF-8, a byte-order
mark) raises `JsonlError` naming the file, the line and what to do.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

JSON_WHITESPACE = " \t\r"  # what may surround a value on a line besides the `\n` that ends it
_BOMS = ((b"\xef\xbb\xbf", "a UTF-8 byte-order mark (BOM)"), (b"\xff\xfe", "UTF-16 or UTF-32 (byte-order mark FF FE)"),
         (b"\xfe\xff", "UTF-16 (byte-order mark FE FF)"), (b"\x00\x00\xfe\xff", "UTF-32 (byte-order mark)"))


class JsonlError(ValueError):
    """A JSONL file cannot be read; the message names the file (and line) and what to do."""


def read_text(path: str | os.PathLike, *, what: str = "JSONL file") -> str:
    """The file's text, decoded as strict UTF-8; JsonlError for a missing file, a folder, a byte-order mark or bytes
    that are not UTF-8 (with the line they are on)."""
    path = Path(path)
    if path.is_dir():
        raise JsonlError(f"{path} is a folder: pass the {what} itself")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise JsonlError(f"{path} not found: check the path of the {what}") from None
    except OSError as err:
        raise JsonlError(f"{path}: cannot read it ({err.strerror or err})") from None
    for bom, name in _BOMS:
        if data.startswith(bom):
            raise JsonlError(f"{path}:1: the file starts with {name}; JSON Lines is UTF-8 without one: save it as "
                             f"plain UTF-8")
    if b"\x00" in data:
        line = data[:data.index(b"\x00")].count(b"\n") + 1
        raise JsonlError(f"{path}:{line}: holds NUL bytes (UTF-16 text, or not a text file): save it as UTF-8")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise JsonlError(f"{path}:{line}: not UTF-8 (byte 0x{data[err.start]:02x} at offset {err.start}): save the "
                         f"file as UTF-8") from None


def parse_line(line: str) -> tuple[Any, str | None]:
    """(value, None) for one line that `json.loads` reads, else (None, the problem)."""
    try:
        return json.loads(line), None
    except json.JSONDecodeError as err:
        return None, f"not valid JSON ({err.msg} at column {err.colno})"
    except RecursionError:
        return None, "JSON nested too deeply to read"


def scan_jsonl(path: str | os.PathLike, *, what: str = "JSONL file") -> Iterator[tuple[int, Any, str | None]]:
    """Every non-blank line of a JSONL file as (line number, parsed value or None, problem or None), for
    validators that report every bad line; JsonlError when the file itself cannot be read (see `read_text`)."""
    text = read_text(path, what=what)
    lines = text.split("\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip(JSON_WHITESPACE):
            continue
        value, problem = parse_line(line)
        if problem and number == len(lines):
            problem += "; the file does not end with a newline: it may be cut short"
        yield number, value, problem


def _atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the mode a plain open() would
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_jsonl(path: str | os.PathLike, records: Iterable[dict]) -> Path:
    """Write a whole JSONL file atomically (one record a line, keys sorted, UTF-8)."""
    return _atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n"
                                            for r in records))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write a JSON file atomically (indented, keys sorted)."""
    return _atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=True) + "\n")
