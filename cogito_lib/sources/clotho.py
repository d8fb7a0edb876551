"""Clotho v2.1 (Drossos et al., 2020): 15-30 s Freesound clips, each with five crowd-sourced captions.

Published layout (https://zenodo.org/records/4783391), per split `development`, `validation`, `evaluation`:
- `clotho_captions_<split>.csv`: `file_name,caption_1,caption_2,caption_3,caption_4,caption_5`
- `clotho_metadata_<split>.csv`: `file_name,keywords,sound_id,sound_link,start_end_samples,manufacturer,license`
  (keywords separated by `;`; some releases of these files are Latin-1, not UTF-8)
- `clotho_audio_<split>.7z`, unpacked to a folder `<split>/` of `<file_name>` wavs (44.1 kHz).
The captions file is required; the metadata file (keywords, licence) is optional.
"""
from __future__ import annotations

from pathlib import Path

from .base import Adapter, ScanResult, SourceItem, clean_list, csv_dicts, find_files

CAPTION_COLUMNS = tuple(f"caption_{i}" for i in range(1, 6))


class ClothoAdapter(Adapter):
    name = "clotho"
    title = "Clotho"
    domain = "sound"
    skill = "captioning"
    paper_clips = 6_000
    url = "https://zenodo.org/records/4783391 (Clotho v2.1)"
    size = ("5,929 clips (3,839 development, 1,045 validation, 1,045 evaluation) of 15-30 s, ~11 GB unpacked "
            "(44.1 kHz wav)")
    download = "clotho_captions_<split>.csv, clotho_metadata_<split>.csv and clotho_audio_<split>.7z (unpacked)"
    expects = "clotho_captions_<split>.csv (+ clotho_metadata_<split>.csv) and <split>/*.wav"

    def metadata_files(self, root: Path) -> list[Path]:
        return find_files(root, "clotho_captions_*.csv")

    @staticmethod
    def _audio_dir(captions_file: Path, split: str) -> Path:
        for candidate in (captions_file.parent / split, captions_file.parent / "audio" / split,
                          captions_file.parent.parent / split, captions_file.parent.parent / "audio" / split):
            if candidate.is_dir():
                return candidate
        return captions_file.parent / split

    def scan(self, root: Path) -> ScanResult:
        result = ScanResult()
        for captions_file in self.require_files(root):
            split = captions_file.stem[len("clotho_captions_"):]
            result.files.append(str(captions_file))
            metadata: dict[str, dict] = {}
            metadata_file = captions_file.with_name(f"clotho_metadata_{split}.csv")
            if metadata_file.is_file():
                result.files.append(str(metadata_file))
                metadata = {row["file_name"]: row for _, row in csv_dicts(metadata_file, ("file_name",),
                                                                          result.bad_rows)}
            audio_dir = self._audio_dir(captions_file, split)
            if not audio_dir.is_dir():
                result.notes.append(f"{split}: audio folder {audio_dir} not found: unpack clotho_audio_{split}.7z "
                                    f"next to {captions_file.name}")
            for line, row in csv_dicts(captions_file, ("file_name", "caption_1"), result.bad_rows):
                captions = [row[c] for c in CAPTION_COLUMNS if row.get(c)]
                meta = metadata.get(row["file_name"], {})
                facts = {"captions": captions}
                keywords = clean_list(meta.get("keywords", ""), ";")
                if keywords:
                    facts["keywords"] = keywords
                info = {k: meta[k] for k in ("sound_id", "sound_link", "license", "manufacturer") if meta.get(k)}
                result.items.append(SourceItem(
                    dataset=self.name, item_id=f"{split}/{row['file_name']}", audio=audio_dir / row["file_name"],
                    skill=self.skill, caption=captions[0], facts=facts, source_split=split,
                    where=f"{captions_file}:{line}", info=info))
        return result
