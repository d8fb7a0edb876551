"""What every dataset adapter shares: the item it yields, its scan result, and readers that keep line numbers.

An adapter reads one dataset's *published* metadata files (CSV/TSV/JSON as released) under the user's local root
and yields one `SourceItem` per clip it can offer: where the audio is, the dataset's own metadata as `facts`,
and what questions it supports (`skill`). A row it cannot use is reported as a `BadRow` with file and line and
skipped; nothing in a scan raises for a bad row. Scans read metadata only (and, for the two YouTube-sourced
datasets whose download layout is up to the user, list the audio files once), never audio.
"""
from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".m4a", ".mp4", ".opus", ".webm", ".aac")


@dataclass
class SourceItem:
    """One clip a dataset offers: its audio file and its metadata (nothing decoded yet)."""

    dataset: str  # adapter name (a key of cogito_lib.config.DATASET_ENV)
    item_id: str  # unique and stable within the dataset, e.g. "development/Water flowing.wav"
    audio: Path  # the audio file this item decodes (it may turn out to be missing or broken)
    facts: dict  # the dataset's own metadata later stages ask about (labels, captions, transcripts, ...)
    skill: str  # what questions it supports: sound-events, captioning, emotion, translation, dialogue, ...
    caption: str | None = None  # the dataset's caption, when it has one
    speech: dict | None = None  # {"text", "voice", "language"}: the clip is one spoken utterance
    source_split: str | None = None  # the dataset's own split name
    where: str = ""  # "file:line" of the metadata row it came from
    info: dict = field(default_factory=dict)  # provenance (ids, licence, links): kept, not asked about


@dataclass
class BadRow:
    """A metadata row that was skipped, with where it is and what is wrong."""

    file: str
    line: int | None
    detail: str

    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.line is not None else self.file


@dataclass
class ScanResult:
    """What an adapter found under its root."""

    items: list[SourceItem] = field(default_factory=list)
    bad_rows: list[BadRow] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # metadata files read
    not_downloaded: int = 0  # rows whose audio is not on disk where a partial download is normal (YouTube)
    notes: list[str] = field(default_factory=list)  # anything the user should know (e.g. a split without audio)


class SourceError(Exception):
    """A dataset root that cannot be read at all (no metadata files): the message says what to download."""


class Adapter:
    """Base class: one per dataset. Subclasses set the class attributes and implement `metadata_files` and `scan`."""

    name: str = ""  # key of cogito_lib.config.DATASET_ENV
    title: str = ""  # the dataset's name as published
    domain: str = ""  # sound, speech or music (the clip's modality)
    skill: str = ""  # default skill of its clips
    paper_clips: int = 0  # clips the paper took from it
    url: str = ""  # official source
    size: str = ""  # size on disk of what to download
    download: str = ""  # what to download
    expects: str = ""  # the files the adapter reads, relative to the root
    available: bool = True  # False: no adapter (the reason says why)
    unavailable_reason: str = ""

    def metadata_files(self, root: Path) -> list[Path]:  # pragma: no cover - every adapter overrides it
        raise NotImplementedError

    def probe(self, root: str | os.PathLike) -> tuple[bool, str]:
        """Cheap check that the root holds this dataset's metadata files (no rows read, no audio listed)."""
        root = Path(root)
        if not self.available:
            return False, f"no adapter: {self.unavailable_reason}"
        if not root.is_dir():
            return False, f"{root} is not a folder"
        files = self.metadata_files(root)
        if not files:
            return False, f"none of {self.expects} found under {root}: download {self.download} from {self.url}"
        names = ", ".join(str(f.relative_to(root)) for f in files[:4]) + (" ..." if len(files) > 4 else "")
        return True, f"{len(files)} metadata file(s): {names}"

    def scan(self, root: Path) -> ScanResult:  # pragma: no cover - every adapter overrides it
        raise NotImplementedError

    def require_files(self, root: Path) -> list[Path]:
        files = self.metadata_files(root)
        if not files:
            raise SourceError(f"{self.title}: none of {self.expects} found under {root}; download {self.download} "
                              f"from {self.url} and point {self.env_var()} at the folder that holds them")
        return files

    def env_var(self) -> str:
        from cogito_lib.config import DATASET_ENV

        return DATASET_ENV[self.name]


# ---------------------------------------------------------------------------------------------------------------
# readers that keep line numbers

def read_text(path: Path) -> str:
    """A metadata file's text: UTF-8 (with or without BOM), else Windows-1252, else Latin-1 (some releases, e.g.
    Clotho's metadata and MELD's CSVs, are not valid UTF-8)."""
    data = path.read_bytes()
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1")


def csv_rows(path: Path, *, delimiter: str = ",", quoting: int = csv.QUOTE_MINIMAL, escapechar: str | None = None,
             skip_comment_lines: bool = False) -> Iterator[tuple[int, list[str]]]:
    """(line number where the record starts, fields) for every non-blank record of a CSV/TSV file."""
    text = read_text(path)
    lines = text.splitlines(keepends=True)
    if skip_comment_lines:  # AudioSet's segment CSVs start with '#' lines; keep numbering by blanking them
        lines = ["\n" if line.lstrip().startswith("#") else line for line in lines]
    reader = csv.reader(io.StringIO("".join(lines)), delimiter=delimiter, quoting=quoting, escapechar=escapechar,
                        skipinitialspace=True)
    previous_end = 0
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as err:  # e.g. a NUL byte or an unterminated quote: report and stop this file
            yield reader.line_num, [f"\0csv-error: {err}"]
            return
        start = previous_end + 1
        previous_end = reader.line_num
        if not fields or all(not f.strip() for f in fields):
            continue
        yield start, fields


def csv_dicts(path: Path, required: tuple[str, ...], bad: list[BadRow], *, delimiter: str = ",",
              quoting: int = csv.QUOTE_MINIMAL, escapechar: str | None = None) -> Iterator[tuple[int, dict]]:
    """(line, row as dict) for rows with the header's number of fields and every `required` column non-empty;
    other rows go to `bad` with their line. A header without a required column is one bad row for the file."""
    rows = csv_rows(path, delimiter=delimiter, quoting=quoting, escapechar=escapechar)
    try:
        header_line, header = next(rows)
    except StopIteration:
        bad.append(BadRow(str(path), None, "empty file (no header)"))
        return
    header = [h.strip() for h in header]
    missing = [c for c in required if c not in header]
    if missing:
        bad.append(BadRow(str(path), header_line, f"header lacks column(s) {missing}; found {header}"))
        return
    for line, fields in rows:
        if fields and fields[0].startswith("\0csv-error"):
            bad.append(BadRow(str(path), line, fields[0][1:]))
            return
        if len(fields) != len(header):
            bad.append(BadRow(str(path), line, f"{len(fields)} fields, the header has {len(header)}"))
            continue
        row = {h: v.strip() for h, v in zip(header, fields)}
        empty = [c for c in required if not row[c]]
        if empty:
            bad.append(BadRow(str(path), line, f"empty required field(s) {empty}"))
            continue
        yield line, row


def json_lines(path: Path, bad: list[BadRow]) -> Iterator[tuple[int, dict]]:
    """(line, object) of a JSON-lines file; a bad line goes to `bad`. A file holding one JSON array of objects
    also works (its elements have no line of their own: None)."""
    text = read_text(path)
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            values = json.loads(text)
        except json.JSONDecodeError as err:
            bad.append(BadRow(str(path), err.lineno, f"not valid JSON ({err.msg})"))
            return
        for value in values:
            if isinstance(value, dict):
                yield None, value
            else:
                bad.append(BadRow(str(path), None, f"array element is {type(value).__name__}, not an object"))
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            bad.append(BadRow(str(path), number, f"not valid JSON ({err.msg})"))
            continue
        if not isinstance(value, dict):
            bad.append(BadRow(str(path), number, f"a JSON {type(value).__name__}, not an object"))
            continue
        yield number, value


def index_audio(root: Path, extensions: tuple[str, ...] = AUDIO_EXTENSIONS) -> dict[str, Path]:
    """Every audio file under `root` by file stem (first in sorted walk order wins, so the result is stable)."""
    found: dict[str, Path] = {}
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            stem, ext = os.path.splitext(name)
            if ext.lower() in extensions and not name.startswith("."):
                found.setdefault(stem, Path(folder) / name)
    return found


def find_files(root: Path, pattern: str, max_depth: int = 3) -> list[Path]:
    """Files matching a glob `pattern` in `root` and folders up to `max_depth` levels below it, sorted (no
    recursive walk, so huge audio folders are never listed)."""
    found: list[Path] = []
    for depth in range(max_depth + 1):
        found.extend(p for p in root.glob("/".join(["*"] * depth + [pattern])) if p.is_file())
    return sorted(set(found))


def clean_list(text: str, sep: str = ",") -> list[str]:
    return [part.strip() for part in text.split(sep) if part.strip()]
