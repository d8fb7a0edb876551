"""Medley-solos-DB (Lostanlen & Cella, 2016): 2.97-second excerpts of solo instruments, 8 classes.

Published layout (https://zenodo.org/records/3464194): `Medley-solos-DB_metadata.csv` with columns
`subset,instrument,instrument_id,song_id,uuid4` (subset: training, validation, test; instruments: clarinet,
distorted electric guitar, female singer, flute, piano, tenor saxophone, trumpet, violin) and
`Medley-solos-DB.tar.gz` holding `Medley-solos-DB_<subset>-<instrument_id>_<uuid4>.wav` (44.1 kHz mono).
"""
from __future__ import annotations

from pathlib import Path

from .base import Adapter, BadRow, ScanResult, SourceItem, csv_dicts, find_files

METADATA = "Medley-solos-DB_metadata.csv"


def file_name(subset: str, instrument_id: int, uuid4: str) -> str:
    return f"Medley-solos-DB_{subset}-{instrument_id}_{uuid4}.wav"


class MedleySolosDBAdapter(Adapter):
    name = "medley_solos_db"
    title = "Medley-solos-DB"
    domain = "music"
    skill = "instrument"
    paper_clips = 35_000
    url = "https://zenodo.org/records/3464194"
    size = "21,571 clips of 2.97 s, ~2.8 GB (44.1 kHz mono wav)"
    download = f"{METADATA} and Medley-solos-DB.tar.gz (unpacked)"
    expects = f"{METADATA} and Medley-solos-DB_<subset>-<instrument_id>_<uuid4>.wav"

    def metadata_files(self, root: Path) -> list[Path]:
        return find_files(root, METADATA, max_depth=2)[:1]

    def scan(self, root: Path) -> ScanResult:
        result = ScanResult()
        meta = self.require_files(root)[0]
        result.files = [str(meta)]
        wavs = {p.name: p for p in find_files(root, "Medley-solos-DB_*.wav", max_depth=3)}
        if not wavs:
            result.notes.append(f"no Medley-solos-DB_*.wav under {root}: unpack Medley-solos-DB.tar.gz there")
        default_dir = next(iter(wavs.values())).parent if wavs else meta.parent
        for line, row in csv_dicts(meta, ("subset", "instrument", "instrument_id", "uuid4"), result.bad_rows):
            try:
                instrument_id = int(row["instrument_id"])
            except ValueError:
                result.bad_rows.append(BadRow(str(meta), line, f"instrument_id {row['instrument_id']!r} is not an "
                                                               "integer"))
                continue
            name = file_name(row["subset"], instrument_id, row["uuid4"])
            result.items.append(SourceItem(
                dataset=self.name, item_id=name, audio=wavs.get(name, default_dir / name), skill=self.skill,
                facts={"instrument": row["instrument"]}, source_split=row["subset"], where=f"{meta}:{line}",
                info={"song_id": row.get("song_id", ""), "instrument_id": instrument_id}))
        return result
