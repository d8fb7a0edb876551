"""MusicBench (Melechovsky et al., 2024): MusicCaps clips and musically meaningful augmentations, with captions and
extracted music features.

Published layout (https://huggingface.co/datasets/amaai-lab/MusicBench): `MusicBench_train.json`,
`MusicBench_test_A.json`, `MusicBench_test_B.json` (JSON lines; test A and B share their audio) and `MusicBench.tar.gz`
(16.8 GB). Each line has `dataset`, `location` (the wav's path inside the unpacked tarball, e.g. `data/<id>.wav` or
`data_aug2/<id>.wav`), `main_caption`, `alt_caption`, `prompt_aug`, `prompt_ch`, `prompt_bt`, `prompt_bpm`,
`prompt_key`, `beats` ([beat times, beat positions in the bar]), `bpm`, `chords`, `chords_time`, `key` ([tonic, mode])
and `keyprob`. `location` is resolved against the root, the JSON's folder and a `datashare/` folder in either.
"""
from __future__ import annotations

import math
from pathlib import Path

from .base import Adapter, BadRow, ScanResult, SourceItem, find_files, json_lines


def _number(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def music_facts(row: dict) -> dict:
    """Tempo, metre, key, mode and chords from a MusicBench row (only the fields that are present and sane)."""
    facts: dict = {}
    bpm = _number(row.get("bpm"))
    if bpm and bpm > 0:
        facts["tempo_bpm"] = round(bpm, 1)
    beats = row.get("beats")
    if isinstance(beats, list) and len(beats) == 2 and isinstance(beats[1], list) and beats[1]:
        positions = [_number(b) for b in beats[1]]
        positions = [int(p) for p in positions if p is not None]
        if positions and max(positions) > 1:
            facts["metre"] = max(positions)
    key = row.get("key")
    if isinstance(key, list) and key and isinstance(key[0], str) and key[0]:
        mode = key[1] if len(key) > 1 and isinstance(key[1], str) else ""
        facts["key"] = f"{key[0]} {mode}".strip()
        if mode in ("major", "minor"):
            facts["scale_mode"] = mode
    chords = row.get("chords")
    if isinstance(chords, list) and chords and all(isinstance(c, str) for c in chords):
        facts["chords"] = chords
        times = row.get("chords_time")
        if isinstance(times, list) and len(times) == len(chords):
            facts["chord_times_s"] = [round(t, 2) if isinstance(t, (int, float)) else t for t in times]
    return facts


class MusicBenchAdapter(Adapter):
    name = "musicbench"
    title = "MusicBench"
    domain = "music"
    skill = "music-theory"
    paper_clips = 88_000
    url = "https://huggingface.co/datasets/amaai-lab/MusicBench"
    size = "52,768 train + 400 test clips of 10 s; MusicBench.tar.gz 16.8 GB"
    download = "MusicBench_train.json, MusicBench_test_A.json, MusicBench_test_B.json and MusicBench.tar.gz (unpacked)"
    expects = "MusicBench_*.json (JSON lines with location, main_caption, bpm, key, chords, ...) and the unpacked wavs"

    def metadata_files(self, root: Path) -> list[Path]:
        return find_files(root, "MusicBench*.json", max_depth=2)

    @staticmethod
    def _bases(root: Path, json_file: Path) -> list[Path]:
        bases = [root, root / "datashare", json_file.parent, json_file.parent / "datashare"]
        return list(dict.fromkeys(b for b in bases if b.is_dir()))

    def scan(self, root: Path) -> ScanResult:
        result = ScanResult()
        seen: set[str] = set()
        for path in self.require_files(root):
            result.files.append(str(path))
            split = "train" if "train" in path.stem.lower() else "test"
            bases = self._bases(root, path)
            for line, row in json_lines(path, result.bad_rows):
                location, caption = row.get("location"), row.get("main_caption")
                if not isinstance(location, str) or not location.strip() or not isinstance(caption, str) \
                        or not caption.strip():
                    result.bad_rows.append(BadRow(str(path), line, "needs a non-empty 'location' and 'main_caption'"))
                    continue
                location = location.strip()
                if location in seen:
                    continue  # test A and B list the same audio
                seen.add(location)
                audio = next((b / location for b in bases if (b / location).is_file()), root / location)
                captions = [caption.strip()]
                alt = row.get("alt_caption")
                if isinstance(alt, str) and alt.strip() and alt.strip() != captions[0]:
                    captions.append(alt.strip())
                facts = {"captions": captions, **music_facts(row)}
                if isinstance(row.get("prompt_aug"), str) and row["prompt_aug"].strip():
                    facts["augmentation"] = row["prompt_aug"].strip()
                result.items.append(SourceItem(
                    dataset=self.name, item_id=location, audio=audio, skill=self.skill, caption=captions[0],
                    facts=facts, source_split=split, where=f"{path}:{line}" if line else str(path),
                    info={"keyprob": row.get("keyprob")} if row.get("keyprob") is not None else {}))
        return result
