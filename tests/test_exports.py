"""Exports of the audited traces for ms-swift and LLaMA-Factory, checked by the schema validators."""
import json

import numpy as np
import pytest
import soundfile as sf

from cogito_lib import exports as E
from cogito_lib.mmar import format_prompt


@pytest.fixture
def records(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "02-data-collection" / "audio").mkdir(parents=True)
    out = []
    for i in range(3):
        sf.write(run_dir / "02-data-collection" / "audio" / f"c{i}.wav", np.zeros(1600, dtype="float32"), 16000)
        out.append({"id": f"q{i}-s0", "question_id": f"q{i}", "clip_id": f"c{i}",
                    "audio_path": f"02-data-collection/audio/c{i}.wav", "question": "How many beeps are there?",
                    "choices": ["1", "2", "3"], "answer": "2", "thinking": "I hear: beep; beep\nCount: 2\n"
                    "So the answer is 2.", "answer_prediction": "2", "sample_index": 0})
    return run_dir, out


def test_sft_record_is_audio_tag_plus_mmar_prompt_and_think_block(records):
    run_dir, recs = records
    sample = E.sft_record(recs[0], run_dir)
    user, assistant = sample["messages"]
    assert user == {"role": "user", "content": "<audio>" + format_prompt("How many beeps are there?", ["1", "2", "3"])}
    assert assistant["content"] == "<think>\nI hear: beep; beep\nCount: 2\nSo the answer is 2.\n</think>\n\n2"
    assert sample["audios"] == ["02-data-collection/audio/c0.wav"]  # relative to the run dir: a copy still works
    outside = E.sft_record(dict(recs[0], audio_path="/data/clotho/a.wav"), run_dir)
    inside_abs = E.sft_record(dict(recs[0], audio_path=str((run_dir / recs[0]["audio_path"]).resolve())), run_dir)
    assert outside["audios"] == ["/data/clotho/a.wav"] and inside_abs["audios"] == ["02-data-collection/audio/c0.wav"]


def test_both_exports_validate_and_hold_every_record(records, tmp_path):
    run_dir, recs = records
    paths = E.export_all(recs, run_dir, tmp_path / "exports")
    swift = [json.loads(line) for line in open(paths["ms_swift"])]
    factory = json.loads(open(paths["llamafactory"]).read())
    assert len(swift) == len(factory) == 3 and swift == factory
    assert E.validate_ms_swift(paths["ms_swift"], media_root=run_dir) == []
    assert E.validate_llamafactory(tmp_path / "exports" / "llamafactory", media_root=run_dir) == []
    # resolved against the wrong root, the relative paths are missing: the media root matters
    assert any("audio file not found" in p for p in E.validate_ms_swift(paths["ms_swift"]))
    info = json.loads(open(paths["llamafactory_dataset_info"]).read())
    assert info == {"audio_cogito": {"file_name": "audio_cogito.json", "formatting": "sharegpt",
                                     "columns": {"messages": "messages", "audios": "audios"},
                                     "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                                              "assistant_tag": "assistant"}}}


def test_llamafactory_export_keeps_other_dataset_info_entries(records, tmp_path):
    run_dir, recs = records
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "dataset_info.json").write_text(json.dumps({"alpaca_en_demo": {"file_name": "alpaca_en_demo.json"}}))
    E.export_llamafactory(recs, run_dir, folder, name="cogito_round1")
    info = json.loads((folder / "dataset_info.json").read_text())
    assert set(info) == {"alpaca_en_demo", "cogito_round1"}
    assert E.validate_llamafactory(folder, "cogito_round1", media_root=run_dir) == []


def test_empty_exports_are_valid(records, tmp_path):
    run_dir, _ = records
    paths = E.export_all([], run_dir, tmp_path / "exports")
    assert open(paths["ms_swift"]).read() == "" and json.loads(open(paths["llamafactory"]).read()) == []


GOOD = {"messages": [{"role": "user", "content": "<audio>q"},
                     {"role": "assistant", "content": "<think>\nr\n</think>\n\na"}]}


@pytest.mark.parametrize("change, problem", [
    (lambda s: s.pop("messages"), "missing required key 'messages'"),
    (lambda s: s["messages"].reverse(), "expected 'user'"),
    (lambda s: s["messages"].pop(), "must end with the assistant"),
    (lambda s: s["messages"][0].update(content="<audio><audio>q"), "2 <audio> tag(s) but 1 audio path(s)"),
    (lambda s: s["messages"][0].update(content="q"), "0 <audio> tag(s) but 1 audio path(s)"),
    (lambda s: s.update(audios=["/no/such/clip.wav"]), "audio file not found"),
    (lambda s: s["messages"][1].update(content="just an answer"), "is not '<think>"),
    (lambda s: s["messages"][1].update(content="<think>\n\n</think>\n\na"), "empty reasoning"),
    (lambda s: s["messages"][1].update(content="<audio><think>\nr\n</think>\n\na"), "assistant message holds"),
    (lambda s: s.update(audios="clip.wav"), "'audios' must be a list"),
])
def test_ms_swift_validator_catches_each_schema_violation(tmp_path, change, problem):
    wav = tmp_path / "clip.wav"
    sf.write(wav, np.zeros(160, dtype="float32"), 16000)
    sample = json.loads(json.dumps({**GOOD, "audios": [str(wav)]}))
    assert E.validate_ms_swift_record(sample) == []
    change(sample)
    problems = E.validate_ms_swift_record(sample)
    assert any(problem in p for p in problems), problems


def test_ms_swift_file_validator_reports_line_numbers(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps({**GOOD, "audios": []}) + "\nnot json\n")
    problems = E.validate_ms_swift(path)
    assert any(p.startswith("line 1: 1 <audio> tag(s) but 0") for p in problems)
    assert any(p.startswith("line 2: not valid JSON") for p in problems)


def test_llamafactory_validator_checks_the_declaration_and_resolves_relative_paths(tmp_path):
    sf.write(tmp_path / "clip.wav", np.zeros(160, dtype="float32"), 16000)
    (tmp_path / "d.json").write_text(json.dumps([{**GOOD, "audios": ["clip.wav"]}]))
    entry = {"file_name": "d.json", **E.LLAMAFACTORY_ENTRY}
    (tmp_path / "dataset_info.json").write_text(json.dumps({"d": entry}))
    assert E.validate_llamafactory(tmp_path, "d") == []  # relative to the dataset dir, as LLaMA-Factory reads it
    assert E.validate_llamafactory(tmp_path, "other") == ["dataset_info.json has no entry 'other'"]
    (tmp_path / "dataset_info.json").write_text(json.dumps({"d": {**entry, "formatting": "alpaca",
                                                                   "columns": {"messages": "messages"}}}))
    problems = E.validate_llamafactory(tmp_path, "d")
    assert "formatting is 'alpaca', expected 'sharegpt'" in problems and "columns.audios is not declared" in problems
    # without tags LLaMA-Factory reads from/value/human/gpt: role/content messages then do not parse
    (tmp_path / "dataset_info.json").write_text(json.dumps({"d": {k: v for k, v in entry.items() if k != "tags"}}))
    assert E.validate_llamafactory(tmp_path, "d")


def test_export_all_refuses_to_write_an_invalid_dataset(records, tmp_path):
    run_dir, recs = records
    (run_dir / recs[1]["audio_path"]).unlink()
    with pytest.raises(E.ExportError, match="audio file not found"):
        E.export_all(recs, run_dir, tmp_path / "exports")
