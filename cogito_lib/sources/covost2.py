"""CoVoST 2 (Wang et al., 2020): speech translation from 21 languages into English and from English into 15.

Published layout (https://github.com/facebookresearch/covost): the release `covost_v2.<src>_<tgt>.tsv` is joined with
Common Voice's `validated.tsv` by the authors' `get_covost_splits.py`, which writes `covost_v2.<src>_<tgt>.<split>.tsv`
(split = train, dev, test): tab-separated, header `path sentence translation client_id`, written with
`quoting=QUOTE_NONE, escapechar='\\'`. The audio is Common Voice (version 4) `clips/<path>` (mp3) of the source
language, e.g. `<root>/fr/clips/common_voice_fr_17299399.mp3`. One English clip that appears in several en->X
pairs becomes one item with every translation.
"""
from __future__ import annotations

import csv
import re
from pathlib import Path

from .base import Adapter, BadRow, ScanResult, SourceItem, csv_dicts, find_files

SPLIT_TSV = re.compile(r"^covost_v2\.([A-Za-z-]+)_([A-Za-z-]+)\.(train|dev|test)\.tsv$")
LANGUAGES = {"en": "english", "fr": "french", "de": "german", "es": "spanish", "ca": "catalan", "it": "italian",
             "ru": "russian", "zh-CN": "chinese", "pt": "portuguese", "fa": "persian", "et": "estonian",
             "mn": "mongolian", "nl": "dutch", "tr": "turkish", "ar": "arabic", "sv-SE": "swedish", "lv": "latvian",
             "sl": "slovenian", "ta": "tamil", "ja": "japanese", "id": "indonesian", "cy": "welsh"}


def language_name(code: str) -> str:
    return LANGUAGES.get(code, code)


def _clips_dirs(root: Path) -> list[Path]:
    dirs = [p for depth in range(5) for p in root.glob("/".join(["*"] * depth + ["clips"])) if p.is_dir()]
    return sorted(set(dirs), key=lambda p: (len(p.parts), str(p)))


def _clips_dir_for(dirs: list[Path], language: str) -> Path | None:
    """The Common Voice clips folder of `language` (a folder named after it above `clips/`), else the only one."""
    for d in dirs:
        if language in (d.parent.name, d.parent.name.split("-")[0]) or d.parent.name.startswith(f"{language}_"):
            return d
    return dirs[0] if len(dirs) == 1 else None


class CoVoST2Adapter(Adapter):
    name = "covost2"
    title = "CoVoST2"
    domain = "speech"
    skill = "translation"
    paper_clips = 56_000
    url = ("https://github.com/facebookresearch/covost (translations) + https://commonvoice.mozilla.org "
           "(Common Voice 4.0 audio)")
    size = ("2,880 h over 21+1 languages in all; the paper's 56k utterances (~5 s each) ~80 h (~9 GB as 16 kHz wav); "
            "Common Voice language archives range from <1 GB to ~40 GB (English)")
    download = ("covost_v2.<src>_<tgt>.tsv.tar.gz, run get_covost_splits.py against Common Voice 4.0's validated.tsv, "
                "plus the Common Voice 4.0 clips of each source language")
    expects = "covost_v2.<src>_<tgt>.<split>.tsv and <lang>/clips/*.mp3"

    def metadata_files(self, root: Path) -> list[Path]:
        return [p for p in find_files(root, "covost_v2.*.tsv") if SPLIT_TSV.match(p.name)]

    def probe(self, root):
        ok, message = super().probe(root)
        if not ok and Path(root).is_dir() and any(find_files(Path(root), "covost_v2.*.tsv")):
            message += ("; only the unsplit covost_v2.<src>_<tgt>.tsv was found: run the authors' get_covost_splits.py "
                        "(--version 2 --src-lang .. --tgt-lang .. --root .. --cv-tsv validated.tsv)")
        return ok, message

    def scan(self, root: Path) -> ScanResult:
        result = ScanResult()
        clips = _clips_dirs(root)
        items: dict[tuple[str, str], SourceItem] = {}
        for path in self.require_files(root):
            src, tgt, split = SPLIT_TSV.match(path.name).groups()
            result.files.append(str(path))
            clips_dir = _clips_dir_for(clips, src)
            if clips_dir is None:
                result.notes.append(f"{path.name}: no Common Voice clips folder for '{src}' under {root} (expected "
                                    f"{src}/clips/); its rows point at {root / src / 'clips'}")
                clips_dir = root / src / "clips"
            rows = csv_dicts(path, ("path", "sentence", "translation"), result.bad_rows, delimiter="\t",
                             quoting=csv.QUOTE_NONE, escapechar="\\")
            for line, row in rows:
                key = (src, row["path"])
                item = items.get(key)
                if item is not None:
                    if item.facts["transcript"] != row["sentence"]:
                        result.bad_rows.append(BadRow(str(path), line, f"{row['path']}: sentence differs from "
                                                                       f"{item.where}"))
                        continue
                    item.facts["translations"][language_name(tgt)] = row["translation"]
                    continue
                audio = clips_dir / row["path"]
                if not audio.suffix:
                    audio = audio.with_suffix(".mp3")
                items[key] = SourceItem(
                    dataset=self.name, item_id=f"{src}/{row['path']}", audio=audio, skill=self.skill,
                    facts={"transcript": row["sentence"], "language": language_name(src),
                           "translations": {language_name(tgt): row["translation"]}},
                    speech={"text": row["sentence"], "voice": None, "language": language_name(src)},
                    source_split=split, where=f"{path}:{line}",
                    info={"client_id": row.get("client_id", ""), "pair": f"{src}_{tgt}"})
        result.items = list(items.values())
        return result
