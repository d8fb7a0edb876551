"""AudioCaps (Kim et al., 2019): 10-second AudioSet segments with human-written captions.

Published metadata (https://github.com/cdjkim/audiocaps, folder `dataset/`): `train.csv`, `val.csv`, `test.csv` with
columns `audiocap_id,youtube_id,start_time,caption`; train has one caption per segment, val/test five rows (five
captions) per segment. As for AudioSet, the audio is not distributed: the adapter lists the audio files under the
root once and matches a segment by stem `<audiocap_id>` (of any of its rows), `<youtube_id>`, `Y<youtube_id>`,
`<youtube_id>_<start_time>` or `Y<youtube_id>_<start>_<start+10>` (`30.000` or `30` style). Segments without a
file are counted as not downloaded.
"""
from __future__ import annotations

from pathlib import Path

from .audioset import segment_stems
from .base import Adapter, BadRow, ScanResult, SourceItem, csv_dicts, find_files, index_audio

SPLITS = ("train", "val", "test")


class AudioCapsAdapter(Adapter):
    name = "audiocaps"
    title = "AudioCaps"
    domain = "sound"
    skill = "captioning"
    paper_clips = 40_000
    url = "https://github.com/cdjkim/audiocaps (audio: the listed YouTube segments)"
    size = "CSVs ~5 MB; ~51k segments x 10 s = ~142 h (~16 GB as 16 kHz mono wav)"
    download = "dataset/train.csv, val.csv, test.csv, plus the segments' audio fetched from YouTube"
    expects = "train.csv / val.csv / test.csv (columns audiocap_id,youtube_id,start_time,caption) and the audio files"

    def metadata_files(self, root: Path) -> list[Path]:
        return [p for split in SPLITS for p in find_files(root, f"{split}.csv")[:1]]

    def scan(self, root: Path) -> ScanResult:
        result = ScanResult()
        files = self.require_files(root)
        result.files = [str(f) for f in files]
        audio = index_audio(root)
        for path in files:
            split = path.stem
            segments: dict[tuple[str, str], dict] = {}
            for line, row in csv_dicts(path, ("audiocap_id", "youtube_id", "start_time", "caption"), result.bad_rows):
                try:
                    start = float(row["start_time"])
                except ValueError:
                    result.bad_rows.append(BadRow(str(path), line, f"start_time {row['start_time']!r} is not a number"))
                    continue
                key = (row["youtube_id"], row["start_time"])
                entry = segments.setdefault(key, {"line": line, "ids": [], "captions": [], "start": start})
                entry["ids"].append(row["audiocap_id"])
                if row["caption"] not in entry["captions"]:
                    entry["captions"].append(row["caption"])
            for (ytid, start_text), entry in segments.items():
                start = entry["start"]
                stems = entry["ids"] + segment_stems(ytid, start_text, f"{start + 10:.3f}") \
                    + segment_stems(ytid, f"{start:.3f}", f"{start + 10:.3f}")
                found = next((audio[s] for s in stems if s in audio), None)
                if found is None:
                    result.not_downloaded += 1
                    continue
                result.items.append(SourceItem(
                    dataset=self.name, item_id=f"{split}/{ytid}_{start_text}", audio=found, skill=self.skill,
                    caption=entry["captions"][0], facts={"captions": entry["captions"]}, source_split=split,
                    where=f"{path}:{entry['line']}",
                    info={"youtube_id": ytid, "start_s": start, "audiocap_ids": entry["ids"]}))
        if result.not_downloaded:
            result.notes.append(f"{result.not_downloaded} segment(s) have no audio file under {root} (not downloaded "
                                "or no longer on YouTube); they are not sampled")
        return result
