"""Small file helpers every stage shares: atomic writes, crash-tolerant JSONL, stable ids.

Stages communicate only through files in the run dir. A stage killed with `kill -9` must leave nothing half
written that a rerun would trust: whole files are written to a temp file and renamed; JSONL journals are
appended line by line and a torn last line is ignored on reading. Two processes never write one stage at once
(`exclusive`, a lock file naming its holder); a clip is checked against the content hash recorded when it was
written (`clip_problem`); command lines turn errors into one line (`cli_main`).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator


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


def current_umask() -> int:
    """The process's umask, read without changing it (Linux: /proc/self/status; elsewhere set and restored)."""
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


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` through a temp file in the same folder and a rename. The file gets the mode a plain
    `open` would give it (0644 under the usual umask 022), so a run dir can be shared."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp makes 0600
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
    validators that report every bad line instead of stopping at the first. Only `\n` ends a line, as in JSON
    Lines (U+2028 or U+0085 inside a string are text)."""
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").split("\n"), start=1):
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


# ------------------------------------------------------------------------------------------------ one writer
LOCK_TOKEN_ENV = "COGITO_LOCK_TOKEN"  # a holder that shares its locks with its children (kernels) exports this
LOCK_WAIT_ENV = "COGITO_LOCK_WAIT"  # "1": wait for another writer to finish instead of stopping (CLIs' --wait)
_HELD: dict[str, list] = {}  # lock path -> [info, depth] for the locks this process holds


class LockHeld(RuntimeError):
    """Another process writes there; the message names it (pid, host, since when, command) and what to do."""


def _proc_start(pid: int) -> str | None:
    """The start time of process `pid` in clock ticks since boot (Linux), telling a reused pid from the holder."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _pid_alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by another user
    now = _proc_start(pid)
    return start is None or now is None or now == start


def _read_lock(path: Path) -> dict | None:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        return info if isinstance(info, dict) else None
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # being written, or damaged


def _holder_text(info: dict) -> str:
    return (f"pid {info.get('pid', '?')} on host {info.get('host', '?')} since {info.get('since', '?')}"
            + (f" (`{info['command']}`)" if info.get("command") else ""))


@contextlib.contextmanager
def exclusive(path: str | os.PathLike, what: str, *, wait: bool | None = None, share: bool = False):
    """Hold the lock file `path` (pid, host, start time, command) while writing `what`; a second writer stops with
    LockHeld naming the holder, or waits with `wait=True` (default: the COGITO_LOCK_WAIT environment variable).

    A lock whose process is gone (same host: checked by pid and process start time) is taken over; one held on
    another host is reported, since its process cannot be checked from here. Nested calls in one process count
    as one writer. `share=True` exports a token so that child processes (notebook kernels, worker launches)
    write under this lock; ranks > 0 of a distributed launch write under rank 0's lock."""
    path = Path(path)
    key = str(path.resolve())
    if key in _HELD:
        _HELD[key][1] += 1
        try:
            yield _HELD[key][0]
        finally:
            _HELD[key][1] -= 1
        return
    if os.environ.get("RANK", "0") not in ("", "0"):
        yield None
        return
    wait = os.environ.get(LOCK_WAIT_ENV, "") not in ("", "0") if wait is None else wait
    info = _acquire(path, what, wait)
    if info.get("pid") != os.getpid():
        yield info  # our parent (the runner) holds it for us
        return
    _HELD[key] = [info, 1]
    previous = os.environ.get(LOCK_TOKEN_ENV)
    if share:
        os.environ[LOCK_TOKEN_ENV] = info["token"]
    try:
        yield info
    finally:
        del _HELD[key]
        if share:
            if previous is None:
                os.environ.pop(LOCK_TOKEN_ENV, None)
            else:
                os.environ[LOCK_TOKEN_ENV] = previous
        if (_read_lock(path) or {}).get("token") == info["token"]:
            path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                path.parent.rmdir()  # leave no empty lock folder behind (fails while another lock is there)


def _acquire(path: Path, what: str, wait: bool) -> dict:
    """Create the lock file (this process's info), or return the holder's info when it is our parent's shared lock;
    LockHeld (or waiting) when another live writer holds it."""
    inherited = os.environ.get(LOCK_TOKEN_ENV)
    host = socket.gethostname()
    info = {"pid": os.getpid(), "host": host, "start": _proc_start(os.getpid()),
            "since": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(sys.argv)[:200], "what": what,
            "token": inherited or f"{host}:{os.getpid()}:{time.time_ns()}"}
    path.parent.mkdir(parents=True, exist_ok=True)
    told = False
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileNotFoundError:  # the lock folder was just removed by a writer that finished
            path.parent.mkdir(parents=True, exist_ok=True)
            continue
        except FileExistsError:
            holder = _read_lock(path)
            if holder is None:
                continue  # released just now
            if inherited and holder.get("token") == inherited:
                return holder
            if not holder and time.time() - _mtime(path) <= 30:
                time.sleep(0.05)  # being written this instant
                continue
            stale = (holder.get("host") == host and isinstance(holder.get("pid"), int)
                     and not _pid_alive(holder["pid"], holder.get("start")))
            if not holder and time.time() - _mtime(path) > 30:
                stale = True  # created and never written: its writer died at once
            if stale:
                _break_stale(path, holder)
                continue
            if not wait:
                elsewhere = (f" (another machine: whether it still runs cannot be checked from here; if it has "
                             f"stopped, delete {path})") if holder.get("host") not in (None, host) else ""
                raise LockHeld(f"{what} is being written by {_holder_text(holder)}{elsewhere}: wait for it to "
                               f"finish (or pass --wait), or stop it first") from None
            if not told:
                print(f"waiting: {what} is being written by {_holder_text(holder)}", file=sys.stderr, flush=True)
                told = True
            time.sleep(1.0)
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(info, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        return info


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return time.time()


def _break_stale(path: Path, seen: dict) -> None:
    """Remove a dead writer's lock file, unless another process replaced it meanwhile (checked under a guard)."""
    import fcntl

    with open(path.with_name(path.name + ".guard"), "a") as guard:
        fcntl.flock(guard.fileno(), fcntl.LOCK_EX)
        if _read_lock(path) == seen:
            path.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------------ clip integrity
AUDIO_HASH = "audio_sha256"  # the manifest field holding a clip's content hash, recorded when its wav is written
_CLIP_CHECKS: dict[tuple, tuple[str, str] | None] = {}  # (path, size, mtime) -> problem: each file read once
_MANIFEST_HASHES: dict[tuple, dict[str, str]] = {}


def content_hash(data: bytes) -> str:
    """The hex sha256 of a clip's bytes (what AUDIO_HASH holds)."""
    return hashlib.sha256(data).hexdigest()


def wav_structure_problem(data: bytes) -> tuple[str, str] | None:
    """(kind, detail) of what is wrong with a WAV file's structure ("unreadable": no RIFF/WAVE header, no samples;
    "truncated": a data chunk longer than the bytes present), or None. Other containers are not checked here."""
    if len(data) < 12 or data[:4] not in (b"RIFF", b"RF64") or data[8:12] != b"WAVE":
        return "unreadable", "no RIFF/WAVE header"
    offset = 12
    while offset + 8 <= len(data):
        chunk, size = data[offset:offset + 4], int.from_bytes(data[offset + 4:offset + 8], "little")
        body = offset + 8
        if chunk == b"data":
            present = len(data) - body
            if data[:4] == b"RIFF" and size > present:
                return "truncated", f"the header announces {size} bytes of samples, the file holds {present}"
            if min(size, present) == 0:
                return "unreadable", "no samples"
            return None
        offset = body + size + (size & 1)
    return "unreadable", "no data chunk"


def manifest_hash(audio_file: str | os.PathLike) -> str | None:
    """The content hash a stage-1 manifest recorded for `audio_file` (`<folder>/audio/<clip>.wav`, recorded in
    `<folder>/manifest.jsonl` as `audio/<clip>.wav`), or None when no manifest there knows it."""
    path = Path(audio_file)
    manifest = path.parent.parent / "manifest.jsonl"
    try:
        stat = manifest.stat()
    except OSError:
        return None
    key = (str(manifest.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _MANIFEST_HASHES:
        hashes = {}
        try:
            for record in read_jsonl(manifest):
                if isinstance(record, dict) and isinstance(record.get(AUDIO_HASH), str):
                    hashes[str(record.get("audio_path"))] = record[AUDIO_HASH]
        except ValueError:
            pass  # a damaged manifest: its stage reports it; no hashes from it
        _MANIFEST_HASHES[key] = hashes
    return _MANIFEST_HASHES[key].get(f"{path.parent.name}/{path.name}")


AUDIO_PROBLEMS = {
    "audio_missing": "the clip's file does not exist",
    "audio_unreadable": "the clip's file is not a readable WAV or holds no samples",
    "audio_truncated": "the clip's WAV is shorter than its header says (cut short)",
    "audio_changed": "the clip's bytes differ from the hash its stage recorded when it wrote it",
}


def clip_problem(audio_file: str | os.PathLike, expected: str | None = None) -> tuple[str, str] | None:
    """(kind, detail) when a clip cannot be trusted, kind one of AUDIO_PROBLEMS; None when it is the clip its stage
    wrote. `expected` is its recorded content hash (default: looked up with `manifest_hash`). Each file is read and
    hashed once per process (again only when its size or time changes)."""
    path = Path(audio_file)
    try:
        stat = path.stat()
    except OSError:
        return "audio_missing", f"audio file not found: {path}"
    expected = expected if expected is not None else manifest_hash(path)
    key = (str(path), stat.st_size, stat.st_mtime_ns, expected)
    if key not in _CLIP_CHECKS:
        try:
            data = path.read_bytes()
        except OSError as err:
            _CLIP_CHECKS[key] = ("audio_unreadable", f"{path}: {err.strerror or err}")
            return _CLIP_CHECKS[key]
        problem = wav_structure_problem(data) if path.suffix.lower() == ".wav" else None
        if problem is not None:
            found = (f"audio_{problem[0]}", f"{path}: {problem[1]}")
        elif expected is not None and content_hash(data) != expected:
            found = ("audio_changed", f"{path}: its content differs from the one recorded when it was written")
        else:
            found = None
        _CLIP_CHECKS[key] = found
    return _CLIP_CHECKS[key]


class AudioIntegrityError(ValueError):
    """A clip is missing, cut short, unreadable or changed since its stage wrote it (`kind`: an AUDIO_PROBLEMS key)."""

    def __init__(self, kind: str, detail: str):
        super().__init__(f"{detail}: rerun the stage that wrote it (stage 1, `collect`, for the curation clips) to "
                         "make it again")
        self.kind = kind


def check_clip(audio_file: str | os.PathLike, expected: str | None = None) -> None:
    """Raise AudioIntegrityError when `clip_problem` finds one."""
    problem = clip_problem(audio_file, expected)
    if problem is not None:
        raise AudioIntegrityError(*problem)


# ------------------------------------------------------------------------------------------------ command lines
DEBUG_HELP = "show the full traceback of an error instead of one line"


def error_line(err: BaseException) -> str:
    """An exception as the message a command line prints: the kit's own errors as they are, file-system errors
    with the path and what to do, anything else with its type and a pointer to --debug."""
    import errno

    if isinstance(err, OSError) and getattr(err, "filename", None) and not type(err).__module__.startswith("cogito"):
        where = err.filename
        hints = {errno.ENOENT: "not found", errno.EISDIR: "is a folder, expected a file",
                 errno.ENOTDIR: "a part of this path is not a folder",
                 errno.EACCES: "permission denied: check its owner and mode (or pick a run dir you can write)",
                 errno.EROFS: "read-only file system: pick a writable run dir",
                 errno.ENOSPC: "no space left on the device: free some space and rerun (finished work is kept)"}
        return f"{where}: {hints.get(err.errno, err.strerror or str(err))}"
    if isinstance(err, RecursionError):
        return f"input nested too deeply to read ({err}); rerun with --debug to see where"
    text = str(err).strip() or type(err).__name__
    if type(err).__module__.startswith("cogito_lib") or isinstance(err, (ValueError, FileNotFoundError, LookupError)):
        return text
    return f"{type(err).__name__}: {text} (unexpected: rerun with --debug for the traceback)"


def cli_main(body: Callable[[], int], *, debug: bool = False, usage_errors: tuple[type, ...] = ()) -> int:
    """Run a command line's work: its exit status, or one `error: ...` line on stderr and 1 (2 for `usage_errors`,
    e.g. ConfigError) instead of a traceback. `debug=True` lets the traceback through."""
    try:
        return body()
    except KeyboardInterrupt:
        if debug:
            raise
        print("interrupted: finished work is kept; rerun the same command to resume", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - every error becomes one line, unless --debug
        if debug:
            raise
        print(f"error: {error_line(err)}", file=sys.stderr)
        return 2 if isinstance(err, usage_errors) else 1
