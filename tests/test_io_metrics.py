import json

import numpy as np
import pytest

from cogito_lib.io import JsonlJournal, read_jsonl, stable_id, write_jsonl
from cogito_lib.metrics import load_run_metrics, merge_run_metrics, record_metrics


def test_stable_id_is_deterministic_and_content_sensitive():
    assert stable_id("clip", 1, 2026) == stable_id("clip", 1, 2026)
    assert stable_id("clip", 1, 2026) != stable_id("clip", 2, 2026)


def test_journal_survives_a_torn_last_line(tmp_path):
    path = tmp_path / "j.jsonl"
    with JsonlJournal(path) as journal:
        journal.append({"i": 1})
        journal.append({"i": 2})
    with open(path, "a") as fh:  # a writer killed mid-line
        fh.write('{"i": 3, "tor')
    assert [r["i"] for r in read_jsonl(path)] == [1, 2]
    with JsonlJournal(path) as journal:
        journal.append({"i": 3})
    assert [r["i"] for r in read_jsonl(path)] == [1, 2, 3]


def test_a_bad_line_in_the_middle_is_reported_with_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"a": 1}\nnot json\n{"a": 2}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2"):
        read_jsonl(path)


def test_write_jsonl_round_trips(tmp_path):
    records = [{"b": 1, "a": "é"}, {"a": 2}]
    write_jsonl(tmp_path / "x.jsonl", records)
    assert read_jsonl(tmp_path / "x.jsonl") == records


def test_record_metrics_writes_stage_file_and_merges(tmp_path):
    record_metrics(tmp_path, "02-data-collection", {"num_clips": np.int64(5), "rate": float("nan")})
    merge_run_metrics(tmp_path, "notebooks", "02-data-collection", {"wall_s": 1.5})
    record_metrics(tmp_path, "03-qa", {"n": 2})
    data = load_run_metrics(tmp_path)
    assert data["stages"]["02-data-collection"] == {"num_clips": 5, "rate": None}
    assert data["stages"]["03-qa"] == {"n": 2}
    assert data["notebooks"]["02-data-collection"]["wall_s"] == 1.5
    assert json.loads((tmp_path / "02-data-collection" / "metrics.json").read_text())["num_clips"] == 5


def test_a_rerun_notebook_record_replaces_an_earlier_failure(tmp_path):
    merge_run_metrics(tmp_path, "notebooks", "04-cot", {"status": "failed", "error": "PapermillExecutionError"})
    merge_run_metrics(tmp_path, "notebooks", "04-cot", {"status": "ok", "wall_s": 3.0}, replace=True)
    assert load_run_metrics(tmp_path)["notebooks"]["04-cot"] == {"status": "ok", "wall_s": 3.0}
    merge_run_metrics(tmp_path, "notebooks", "04-cot", {"extra": 1})  # without replace, values merge
    assert load_run_metrics(tmp_path)["notebooks"]["04-cot"] == {"status": "ok", "wall_s": 3.0, "extra": 1}


def test_record_metrics_rejects_objects_it_cannot_store(tmp_path):
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        record_metrics(tmp_path, "x", {"obj": object()})


def test_portable_paths_name_places_inside_the_run_dir_relative_to_it(tmp_path):
    from cogito_lib.io import from_portable, portable

    run = tmp_path / "run"
    value = {"audio": str(run / "02-data-collection" / "a.wav"), "base": "Qwen/Qwen3-Omni-30B-A3B-Instruct",
             "near": str(tmp_path / "run-2" / "x"), "list": (str(run), 3)}
    moved = portable(value, run)
    assert moved == {"audio": "<run>/02-data-collection/a.wav", "base": "Qwen/Qwen3-Omni-30B-A3B-Instruct",
                     "near": str(tmp_path / "run-2" / "x"), "list": ["<run>", 3]}
    assert portable(value, tmp_path / "elsewhere") == {**value, "list": [str(run), 3]}
    assert from_portable(moved["audio"], tmp_path / "new") == str(tmp_path / "new" / "02-data-collection" / "a.wav")
    assert from_portable("Qwen/x", tmp_path) == "Qwen/x" and from_portable(None, tmp_path) is None
