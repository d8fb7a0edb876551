"""MELD (Poria et al., 2019): utterances from the TV series Friends with emotion and sentiment labels.

Published layout (https://affective-meld.github.io, `MELD.Raw.tar.gz`):
- `train_sent_emo.csv`, `dev_sent_emo.csv`, `test_sent_emo.csv` with columns `Sr No.,Utterance,Speaker,Emotion,
  Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime` (the text is not always valid UTF-8);
- the clips `dia<Dialogue_ID>_utt<Utterance_ID>.mp4` in `train_splits/`, `dev_splits_complete/` and
  `output_repeated_splits_test/` (the tarball nests them as `train.tar.gz`, `dev.tar.gz`, `test.tar.gz`).
The clips are video: they decode through `ffmpeg` when it is on PATH. Audio already extracted to `.wav`/`.flac`/
`.mp3` with the same stem, in the same folders (or in `audio/<same folder>`), is used first and needs no ffmpeg.
"""
from __future__ import annotations

from pathlib import Path

from .base import Adapter, BadRow, ScanResult, SourceItem, csv_dicts, find_files

SPLIT_DIRS = {"train": ("train_splits", "train"), "dev": ("dev_splits_complete", "dev_splits", "dev"),
              "test": ("output_repeated_splits_test", "test_splits", "test")}
EXTENSIONS = (".wav", ".flac", ".mp3", ".mp4")
REQUIRED = ("Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID")
HISTORY_TURNS = 2


def _split_dirs(root: Path, split: str) -> list[Path]:
    names = SPLIT_DIRS.get(split, (split,))
    dirs: list[Path] = []
    for depth in range(4):
        for name in names:
            for prefix in ("", "audio/"):
                dirs += [p for p in root.glob("/".join(["*"] * depth + [prefix + name])) if p.is_dir()]
    return list(dict.fromkeys(sorted(dirs, key=lambda p: (len(p.parts), str(p)))))


class MELDAdapter(Adapter):
    name = "meld"
    title = "MELD"
    domain = "speech"
    skill = "emotion"
    paper_clips = 24_000
    url = "https://affective-meld.github.io (MELD.Raw.tar.gz)"
    size = "13,708 utterances (train 9,989, dev 1,109, test 2,610), MELD.Raw.tar.gz ~10 GB (mp4 video)"
    download = "MELD.Raw.tar.gz, unpacked (the *_sent_emo.csv files and the train/dev/test clip folders)"
    expects = "train_sent_emo.csv / dev_sent_emo.csv / test_sent_emo.csv and dia<D>_utt<U>.mp4 (or .wav/.flac)"

    def metadata_files(self, root: Path) -> list[Path]:
        return [p for split in SPLIT_DIRS for p in find_files(root, f"{split}_sent_emo.csv")[:1]]

    def scan(self, root: Path) -> ScanResult:
        result = ScanResult()
        for path in self.require_files(root):
            split = path.name[: -len("_sent_emo.csv")]
            result.files.append(str(path))
            dirs = _split_dirs(root, split)
            if not dirs:
                result.notes.append(f"{split}: no clip folder ({' or '.join(SPLIT_DIRS[split])}) under {root}: unpack "
                                    f"{split}.tar.gz from MELD.Raw")
            history: dict[str, list[str]] = {}
            for line, row in csv_dicts(path, REQUIRED, result.bad_rows):
                try:
                    dialogue, utterance = int(row["Dialogue_ID"]), int(row["Utterance_ID"])
                except ValueError:
                    result.bad_rows.append(BadRow(str(path), line, "Dialogue_ID/Utterance_ID "
                                                  f"{row['Dialogue_ID']!r}/{row['Utterance_ID']!r} are not integers"))
                    continue
                stem = f"dia{dialogue}_utt{utterance}"
                audio = next((d / (stem + ext) for d in dirs for ext in EXTENSIONS if (d / (stem + ext)).is_file()),
                             (dirs[0] if dirs else root / SPLIT_DIRS[split][0]) / f"{stem}.mp4")
                turns = history.setdefault(str(dialogue), [])
                facts = {"transcript": row["Utterance"], "speaker": row["Speaker"],
                         "emotion": row["Emotion"].lower(), "sentiment": row["Sentiment"].lower()}
                if turns:
                    facts["dialogue_history"] = turns[-HISTORY_TURNS:]
                turns.append(f"{row['Speaker']}: {row['Utterance']}")
                info = {k.lower(): row[k] for k in ("Season", "Episode", "StartTime", "EndTime") if row.get(k)}
                result.items.append(SourceItem(
                    dataset=self.name, item_id=f"{split}/{stem}", audio=audio, skill=self.skill, facts=facts,
                    speech={"text": row["Utterance"], "voice": row["Speaker"], "language": "english"},
                    source_split=split, where=f"{path}:{line}",
                    info={"dialogue_id": dialogue, "utterance_id": utterance, **info}))
        return result
