"""DailyTalk (Lee et al., 2022): 2,541 two-speaker dialogues from DailyDialog, recorded as ~20 h of speech.

Released layout (https://github.com/keonlee9420/DailyTalk, dataset link in its README): a folder `dailytalk/` with
`metadata.json` and `data/<dialogue>/<utterance>_<speaker>_d<dialogue>.wav` plus a `.txt` transcript beside each
wav. `metadata.json` maps dialogue id -> utterance id -> attributes inherited from DailyDialog (`text`, `speaker`,
`emotion` such as "no emotion"/"happiness", the dialogue act `act`, and `topic` where present).
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

from .base import Adapter, BadRow, ScanResult, SourceItem, find_files, read_text

UTTERANCE = re.compile(r"^(\d+)_(\d+)_d(\d+)\.wav$")
HISTORY_TURNS = 2


def _text(value) -> str | None:
    return str(value).strip() if value not in (None, "") else None


class DailyTalkAdapter(Adapter):
    name = "dailytalk"
    title = "DailyTalk"
    domain = "speech"
    skill = "dialogue"
    paper_clips = 9_000
    url = "https://github.com/keonlee9420/DailyTalk (dataset link in its README)"
    size = "23,773 utterances in 2,541 dialogues, ~20 h, ~6 GB (44.1 kHz wav)"
    download = "the DailyTalk release (dailytalk.zip), unpacked"
    expects = "metadata.json and data/<dialogue>/<utt>_<speaker>_d<dialogue>.wav (+ .txt)"

    def metadata_files(self, root: Path) -> list[Path]:
        return [p for p in find_files(root, "metadata.json", max_depth=2) if (p.parent / "data").is_dir()]

    def scan(self, root: Path) -> ScanResult:
        result = ScanResult()
        meta_file = self.require_files(root)[0]
        result.files.append(str(meta_file))
        try:
            metadata = json.loads(read_text(meta_file))
        except json.JSONDecodeError as err:
            result.bad_rows.append(BadRow(str(meta_file), err.lineno, f"not valid JSON ({err.msg}); every utterance "
                                                                      "is read without its emotion and act"))
            metadata = {}
        if not isinstance(metadata, dict):
            result.bad_rows.append(BadRow(str(meta_file), 1, "top level is not an object of dialogues"))
            metadata = {}
        data_dir = meta_file.parent / "data"
        utterances: list[tuple[int, int, int, Path]] = []
        for folder, dirs, files in os.walk(data_dir):
            dirs.sort()
            for name in files:
                match = UTTERANCE.match(name)
                if match:
                    utt, speaker, dialogue = (int(g) for g in match.groups())
                    utterances.append((dialogue, utt, speaker, Path(folder) / name))
        utterances.sort()
        history: dict[int, list[str]] = {}
        for dialogue, utt, speaker, wav in utterances:
            dialogue_meta = metadata.get(str(dialogue), {})
            if not isinstance(dialogue_meta, dict):
                result.bad_rows.append(BadRow(str(meta_file), None, f"dialogue {dialogue}: entry is "
                                                                    f"{type(dialogue_meta).__name__}, not an object"))
                continue
            entry = dialogue_meta.get(str(utt), {})
            if not isinstance(entry, dict):
                result.bad_rows.append(BadRow(str(meta_file), None, f"dialogue {dialogue} utterance {utt}: entry "
                                                                    f"is {type(entry).__name__}, not an object"))
                continue
            txt = wav.with_suffix(".txt")
            text = read_text(txt).strip().splitlines()[0].strip() if txt.is_file() and txt.stat().st_size else None
            text = text or _text(entry.get("text"))
            if not text:
                result.bad_rows.append(BadRow(str(txt), None, "no transcript: the .txt is missing or empty and "
                                                              "metadata.json has no text"))
                continue
            facts: dict = {"transcript": text, "speaker": f"speaker {speaker}"}
            emotion = _text(entry.get("emotion"))
            if emotion:
                facts["emotion"] = "neutral" if emotion in ("no emotion", "none") else emotion
            act = _text(entry.get("act") or entry.get("dialog_act"))
            if act:
                facts["dialogue_act"] = act
            topic = _text(entry.get("topic") or dialogue_meta.get("topic"))
            if topic:
                facts["topic"] = topic
            turns = history.setdefault(dialogue, [])
            if turns:
                facts["dialogue_history"] = turns[-HISTORY_TURNS:]
            turns.append(f"speaker {speaker}: {text}")
            result.items.append(SourceItem(
                dataset=self.name, item_id=f"{dialogue}/{wav.name}", audio=wav, skill=self.skill, facts=facts,
                speech={"text": text, "voice": f"speaker {speaker}", "language": "english"},
                where=f"{meta_file}: dialogue {dialogue} utterance {utt}",
                info={"dialogue_id": dialogue, "utterance_id": utt}))
        if not utterances:
            result.notes.append(f"no <utt>_<speaker>_d<dialogue>.wav files under {data_dir}")
        return result
