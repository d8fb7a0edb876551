"""AudioSet (Gemmeke et al., 2017): 10-second YouTube segments with weak sound-event labels from a 527-class ontology.

Published metadata (https://research.google.com/audioset/download.html):
- `balanced_train_segments.csv`, `unbalanced_train_segments.csv`, `eval_segments.csv`: three header lines starting
  with `#` (creation date; counts; `# YTID, start_seconds, end_seconds, positive_labels`), then one row per segment:
  `--PJHxphWEs, 30.000, 40.000, "/m/09x0r,/t/dd00088"`.
- `class_labels_indices.csv`: `index,mid,display_name`.

Google does not distribute the audio; users fetch the segments from YouTube themselves, so there is no official
audio layout. The adapter lists the audio files under the root once and matches each segment by file stem:
`<YTID>`, `Y<YTID>`, `<YTID>_<start>`, `<YTID>_<start>_<end>` or `Y<YTID>_<start>_<end>` (start/end as written in
the CSV, e.g. `30.000`, or as integers, e.g. `30`). Segments without a file are counted as not downloaded.
"""
from __future__ import annotations

from pathlib import Path

from .base import Adapter, BadRow, ScanResult, SourceItem, clean_list, csv_dicts, csv_rows, find_files, index_audio

LABELS_FILE = "class_labels_indices.csv"


def segment_stems(ytid: str, start: str, end: str) -> list[str]:
    """File stems a downloaded segment may have (see the module docstring)."""
    stems = [ytid, f"Y{ytid}"]
    for s, e in ((start, end), (_int_text(start), _int_text(end))):
        stems += [f"{ytid}_{s}", f"{ytid}_{s}_{e}", f"Y{ytid}_{s}_{e}"]
    return list(dict.fromkeys(stems))


def _int_text(value: str) -> str:
    try:
        return str(int(float(value)))
    except ValueError:
        return value


class AudioSetAdapter(Adapter):
    name = "audioset"
    title = "AudioSet"
    domain = "sound"
    skill = "sound-events"
    paper_clips = 179_000
    url = "https://research.google.com/audioset/download.html"
    size = ("CSVs ~0.1 GB; audio 2.08M x 10 s = ~5,800 h (~670 GB as 16 kHz mono wav); the paper's 179k segments "
            "~500 h (~57 GB as 16 kHz mono wav)")
    download = ("the segment CSVs and class_labels_indices.csv, plus the segments' audio fetched from YouTube with "
                "your own downloader")
    expects = f"*_segments.csv and {LABELS_FILE}"

    def metadata_files(self, root: Path) -> list[Path]:
        labels = find_files(root, LABELS_FILE)
        segments = find_files(root, "*_segments.csv")
        return labels[:1] + segments if labels and segments else []

    def scan(self, root: Path) -> ScanResult:
        result = ScanResult()
        files = self.require_files(root)
        labels_file, segment_files = files[0], files[1:]
        result.files = [str(f) for f in files]
        names = {row["mid"]: row["display_name"]
                 for _, row in csv_dicts(labels_file, ("mid", "display_name"), result.bad_rows)}
        audio = index_audio(root)
        seen: set[tuple[str, str]] = set()
        for path in segment_files:
            split = path.name[: -len("_segments.csv")]
            for line, fields in csv_rows(path, skip_comment_lines=True):
                if fields[0].startswith("\0csv-error"):
                    result.bad_rows.append(BadRow(str(path), line, fields[0][1:]))
                    break
                if fields[0].strip().upper() == "YTID":
                    continue  # a header line written without '#'
                if len(fields) != 4:
                    result.bad_rows.append(BadRow(str(path), line, f"{len(fields)} fields; expected 4 (YTID, "
                                                                    "start_seconds, end_seconds, positive_labels)"))
                    continue
                ytid, start, end, label_text = (f.strip() for f in fields)
                try:
                    start_s, end_s = float(start), float(end)
                except ValueError:
                    result.bad_rows.append(BadRow(str(path), line, f"start/end {start!r}, {end!r} are not numbers"))
                    continue
                mids = clean_list(label_text)
                known = [names[m] for m in mids if m in names]
                if not ytid or not known or end_s <= start_s:
                    detail = ("empty YTID" if not ytid else "end_seconds <= start_seconds" if end_s <= start_s
                              else f"no label of {mids} is in {labels_file.name}")
                    result.bad_rows.append(BadRow(str(path), line, detail))
                    continue
                if (ytid, start) in seen:
                    continue
                seen.add((ytid, start))
                found = next((audio[s] for s in segment_stems(ytid, start, end) if s in audio), None)
                if found is None:
                    result.not_downloaded += 1
                    continue
                result.items.append(SourceItem(
                    dataset=self.name, item_id=f"{ytid}_{start}", audio=found, skill=self.skill,
                    facts={"sound_labels": known}, source_split=split, where=f"{path}:{line}",
                    info={"youtube_id": ytid, "start_s": start_s, "end_s": end_s, "mids": mids}))
        if result.not_downloaded:
            result.notes.append(f"{result.not_downloaded} segment(s) listed in the CSVs have no audio file under "
                                f"{root} (not downloaded or no longer on YouTube); they are not sampled")
        return result
