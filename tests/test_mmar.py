"""MMAR loader, official matching rule, CLI, submission format, bootstrap and MMAR-Rubrics aggregation."""
import json
import shutil
import subprocess
import sys
import wave
from pathlib import Path

import pytest

from cogito_lib.mmar import (CATEGORIES, LAYERS, MODALITIES, MetaError, bootstrap_ci, format_prompt, is_correct,
                             load_meta, normalise_category, read_predictions, score_predictions, score_rubrics,
                             trimmed_run_mean, validate_submission, write_submission)

FIXTURES = Path(__file__).parent / "fixtures" / "mmar"
REPO = Path(__file__).resolve().parents[1]


def write_silence(path: Path, seconds: float = 0.5, sample_rate: int = 16000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as fh:
        fh.setnchannels(1)
        fh.setsampwidth(2)
        fh.setframerate(sample_rate)
        fh.writeframes(b"\x00\x00" * int(seconds * sample_rate))


@pytest.fixture
def mmar_dir(tmp_path):
    """The fixture meta copied beside an audio/ folder of 0.5 s silent wavs (the official layout)."""
    meta = tmp_path / "MMAR-meta.jsonl"
    shutil.copy(FIXTURES / "MMAR-meta.jsonl", meta)
    for line in meta.read_text().splitlines():
        write_silence(tmp_path / json.loads(line)["audio_path"])
    return tmp_path


def meta_rows():
    return [json.loads(line) for line in (FIXTURES / "MMAR-meta.jsonl").read_text().splitlines()]


# --- the official matching rule ---------------------------------------------------------------------------

CHOICES = ["Two", "Three", "Four", "Five"]


@pytest.mark.parametrize("prediction, expected", [
    ("Three", True),
    ("three", True),                                  # case
    ("THREE.", True),                                 # punctuation
    ("(Three)!", True),
    ("The dog barks three times, so the answer is Three.", True),   # full sentence containing the answer
    ("Three or Four", False),                         # names two choices
    ("Four", False),
    ("", False),                                      # empty
    ("   ", False),
    ("?!", False),                                    # no word tokens at all
    (None, False),
    ("thre", False),                                  # a partial word is not the word
])
def test_rule_single_word_choices(prediction, expected):
    assert is_correct(prediction, "Three", CHOICES) is expected


def test_rule_tokens_shared_with_a_wrong_choice_do_not_count_against():
    choices = ["In a busy street", "In a quiet park", "In a concert hall", "In a kitchen"]
    assert is_correct("in a quiet park", "In a quiet park", choices)
    assert is_correct("We are in a quiet park, I think", "In a quiet park", choices)  # 'in', 'a' shared: fine
    assert not is_correct("It sounds like a quiet park", "In a quiet park", choices)  # answer token 'in' missing
    assert not is_correct("a quiet park or a busy street", "In a quiet park", choices)
    assert not is_correct("quiet", "In a quiet park", choices)                     # not every answer token
    choices = ["Cooking dinner", "Washing dishes", "Cooking breakfast"]
    assert is_correct("He is cooking dinner", "Cooking dinner", choices)
    assert not is_correct("Cooking breakfast", "Cooking dinner", choices)


def test_rule_numbers_and_symbols():
    choices = ["3/4", "4/4", "6/8"]
    assert is_correct("3/4", "3/4", choices)
    assert is_correct("The meter is 3/4 time", "3/4", choices)
    assert not is_correct("4/4", "3/4", choices)          # '3' missing
    assert not is_correct("3/4 or 6/8", "3/4", choices)


def test_rule_keeps_the_official_quirk_for_reordered_choices():
    # a distractor with exactly the answer's token set adds no wrong tokens, so it also matches (official behaviour)
    choices = ["From near to far", "From far to near"]
    assert is_correct("From near to far", "From far to near", choices)
    assert is_correct("from FAR to near", "From far to near", choices)


def test_rule_unicode_words():
    choices = ["粤语", "普通话"]
    assert is_correct("答案是 粤语", "粤语", choices)
    assert not is_correct("普通话", "粤语", choices)


def test_format_prompt_is_the_mmar_layout():
    prompt = format_prompt("How many barks?", ["Two", "Three"])
    assert prompt == "How many barks?\nSelect one option from the provided choices:\nTwo\nThree"


def test_normalise_category():
    assert [normalise_category(c) for c in CATEGORIES] == list(LAYERS)
    assert normalise_category("semantic") == "Semantic"
    assert normalise_category("Cultural") == "Cultural"
    with pytest.raises(ValueError, match="unknown MMAR category"):
        normalise_category("Emotional Layer")


# --- loader -----------------------------------------------------------------------------------------------

def test_fixture_loads_clean_with_audio(mmar_dir):
    load = load_meta(mmar_dir / "MMAR-meta.jsonl", require_rubrics=True)
    assert load.ok, [str(p) for p in load.problems]
    assert len(load.items) == 8
    assert {it["modality"] for it in load.items} == set(MODALITIES)
    assert {it["category"] for it in load.items} == set(CATEGORIES)
    assert all(Path(it["audio_file"]).is_file() for it in load.items)


def test_bad_rows_are_reported_by_line_and_missing_audio_by_id(mmar_dir):
    rows = meta_rows()
    rows[1]["answer"] = "5/4"                        # line 2: answer not among choices
    rows[2]["modality"] = "noise"                    # line 3: unknown modality
    rows[3]["category"] = "Perception"               # line 4: not the official spelling
    del rows[4]["question"]                          # line 5: missing key
    rows[5]["choices"] = "Japanese, Cantonese"       # line 6: wrong type
    rows[6]["rubric"] = rows[6]["rubric"][:4]        # line 7: 4 rubric items
    lines = [json.dumps(r) for r in rows]
    lines.insert(8, "{not json")                     # line 9
    lines.append(json.dumps(rows[0]))                # line 10: duplicate id
    meta = mmar_dir / "MMAR-meta.jsonl"
    meta.write_text("\n".join(lines) + "\n")
    (mmar_dir / rows[7]["audio_path"]).unlink()      # m08's audio is gone

    with pytest.raises(MetaError) as err:  # bad rows stop the load unless excluded explicitly
        load_meta(meta)
    assert "8 bad row(s), first line 2" in str(err.value) and "--exclude-bad-rows" in str(err.value)
    load = load_meta(meta, exclude_bad_rows=True)
    by_line = {p.line: p for p in load.problems if p.line is not None}
    assert sorted(by_line) == [2, 3, 4, 5, 6, 7, 9, 10]
    assert "not one of the choices" in by_line[2].message
    assert "modality" in by_line[3].message
    assert "official spelling" in by_line[4].message
    assert "missing key 'question'" in by_line[5].message
    assert "'choices' must be list" in by_line[6].message
    assert "rubric" in by_line[7].message
    assert by_line[9].kind == "json"
    assert by_line[10].kind == "duplicate_id"
    missing = [p for p in load.problems if p.kind == "missing_audio"]
    assert [p.id for p in missing] == [rows[7]["id"]]
    # valid rows kept (m01 and m08; m08 kept despite its missing audio), every problem in one list
    assert [it["id"] for it in load.items] == [rows[0]["id"], rows[7]["id"]]
    assert "line 2" in str(by_line[2]) and rows[1]["id"] in str(by_line[2])

    with pytest.raises(MetaError) as err:
        load_meta(meta, strict=True, exclude_bad_rows=True)
    text = str(err.value)
    assert "9 problem(s)" in text and "line 9" in text and rows[7]["id"] in text


def test_check_audio_off_and_explicit_audio_root(mmar_dir, tmp_path_factory):
    meta = mmar_dir / "MMAR-meta.jsonl"
    elsewhere = tmp_path_factory.mktemp("empty")
    assert len(load_meta(meta, audio_root=elsewhere).problems) == 8
    assert load_meta(meta, audio_root=elsewhere, check_audio=False).ok


def test_rubric_fields_are_optional_in_plain_mmar(tmp_path):
    rows = meta_rows()
    for row in rows:
        for key in ("thinking", "cue", "rubric"):
            del row[key]
    meta = tmp_path / "plain.jsonl"
    meta.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert load_meta(meta, check_audio=False).ok
    with pytest.raises(MetaError, match="8 bad row") as err:
        load_meta(meta, check_audio=False, require_rubrics=True)
    problems = str(err.value).splitlines()[1:]
    assert len(problems) == 8 and "missing key 'thinking'" in problems[0]


# --- scoring and the CLI ----------------------------------------------------------------------------------

EXPECTED_MODALITY = {
    "sound": (100.0, 2, 2), "music": (0.0, 1, 0), "speech": (100.0, 1, 1), "mix-sound-music": (100.0, 1, 1),
    "mix-sound-speech": (0.0, 1, 0), "mix-music-speech": (0.0, 1, 0), "mix-sound-music-speech": (0.0, 1, 0),
}
EXPECTED_CATEGORY = {"Signal": (100.0, 1, 1), "Perception": (200 / 3, 3, 2), "Semantic": (50.0, 2, 1),
                     "Cultural": (0.0, 2, 0)}
EXPECTED_SUB = {
    "Counting and Statistics": (100.0, 1, 1), "Music Theory": (0.0, 1, 0), "Emotion and Intention": (100.0, 1, 1),
    "Environmental Perception and Reasoning": (100.0, 1, 1), "Content Analysis": (0.0, 1, 0),
    "Culture of Speaker": (0.0, 1, 0), "Professional Knowledge and Reasoning": (0.0, 1, 0),
    "Spatial Analysis": (100.0, 1, 1),
}


def as_triples(breakdown):
    return {name: (row["accuracy"], row["n"], row["correct"]) for name, row in breakdown.items()}


def test_cli_score_on_the_fixture(mmar_dir, tmp_path):
    out = tmp_path / "scores.json"
    proc = subprocess.run(
        [sys.executable, "-m", "cogito_lib.mmar", "score", "--meta", str(mmar_dir / "MMAR-meta.jsonl"),
         "--predictions", str(FIXTURES / "predictions.jsonl"), "--out", str(out)],
        capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Total accuracy: 50.00 over 8 items" in proc.stdout
    assert "Perception" in proc.stdout and "66.67" in proc.stdout
    scores = json.loads(out.read_text())
    assert scores["accuracy"] == 50.0
    assert (scores["num_items"], scores["num_correct"]) == (8, 4)
    assert scores["missing"] == 1 and scores["missing_ids"] == ["m07_festival_00-00-30_00-01-00"]
    assert scores["parse_failures"] == 1 and scores["parse_failure_ids"] == ["m05_kitchen-talk_00-00-00_00-00-20"]
    assert as_triples(scores["by_modality"]) == EXPECTED_MODALITY
    cat = as_triples(scores["by_category"])
    assert cat.keys() == EXPECTED_CATEGORY.keys()
    for name, (acc, n, correct) in EXPECTED_CATEGORY.items():
        assert cat[name][0] == pytest.approx(acc) and cat[name][1:] == (n, correct)
    assert as_triples(scores["by_sub_category"]) == EXPECTED_SUB
    assert scores["per_item"] == {
        "m01_dog-barks_00-00-00_00-00-05": 1, "m02_waltz_00-00-10_00-00-40": 0, "m03_sigh_00-00-00_00-00-08": 1,
        "m04_park_00-01-00_00-01-30": 1, "m05_kitchen-talk_00-00-00_00-00-20": 0, "m06_song_00-02-00_00-02-30": 0,
        "m07_festival_00-00-30_00-01-00": 0, "m08_car-pass_00-00-00_00-00-06": 1}


def test_score_counts_whitespace_and_missing_answer_as_parse_failures():
    items = load_meta(FIXTURES / "MMAR-meta.jsonl", check_audio=False).items[:3]
    preds = [{"id": items[0]["id"], "thinking_prediction": "x"},                        # no answer_prediction
             {"id": items[1]["id"], "thinking_prediction": "x", "answer_prediction": "  "},
             {"id": items[2]["id"], "thinking_prediction": "x", "answer_prediction": "Sad", "parse_failed": True},
             {"id": "stranger", "thinking_prediction": "", "answer_prediction": "Sad"}]
    scores = score_predictions(items, preds)
    assert list(scores["by_modality"]) == ["sound", "music", "speech"]          # canonical MMAR order
    assert scores["parse_failures"] == 3 and scores["missing"] == 0
    assert scores["per_item"][items[2]["id"]] == 1          # the flagged answer is still scored by the rule
    assert scores["unknown_prediction_ids"] == ["stranger"]


# --- submission format ------------------------------------------------------------------------------------

def run_validate(meta, predictions):
    return subprocess.run([sys.executable, "-m", "cogito_lib.mmar", "validate-submission", "--meta", str(meta),
                           "--predictions", str(predictions)], capture_output=True, text=True, cwd=REPO, timeout=60)


def test_write_submission_is_valid_and_validate_accepts_it(tmp_path):
    meta = FIXTURES / "MMAR-meta.jsonl"
    items = load_meta(meta, check_audio=False).items
    records = [{"id": it["id"], "thinking_prediction": it["thinking"], "answer_prediction": it["answer"],
                "parse_failed": False} for it in items]
    path = write_submission(records, tmp_path / "submission.jsonl")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert all(set(line) == {"id", "thinking_prediction", "answer_prediction"} for line in lines)
    assert validate_submission(items, path) == []
    proc = run_validate(meta, path)
    assert proc.returncode == 0 and "OK" in proc.stdout
    assert score_predictions(items, read_predictions(path))["accuracy"] == 100.0


def test_write_submission_refuses_or_truncates_long_thinking(tmp_path):
    record = {"id": "a", "thinking_prediction": "x" * 10_000, "answer_prediction": "y"}
    with pytest.raises(ValueError, match="10000 characters"):
        write_submission([record], tmp_path / "s.jsonl")
    path = write_submission([record], tmp_path / "s.jsonl", truncate=True)
    assert len(json.loads(path.read_text())["thinking_prediction"]) == 9_999
    with pytest.raises(ValueError, match="duplicate id"):
        write_submission([record, record], tmp_path / "s.jsonl", truncate=True)


def test_validate_submission_catches_each_problem(tmp_path):
    meta = FIXTURES / "MMAR-meta.jsonl"
    ids = [row["id"] for row in meta_rows()]
    lines = [
        json.dumps({"id": ids[0], "thinking_prediction": "ok", "answer_prediction": "Three"}),
        json.dumps({"id": ids[0], "thinking_prediction": "again", "answer_prediction": "Three"}),   # duplicate
        json.dumps({"id": "not-an-mmar-id", "thinking_prediction": "", "answer_prediction": "x"}),  # unknown
        json.dumps({"id": ids[1], "answer_prediction": "3/4"}),                                    # missing key
        json.dumps({"id": ids[2], "thinking_prediction": ["list"], "answer_prediction": 3}),       # types
        json.dumps({"id": ids[3], "thinking_prediction": "t" * 10_000, "answer_prediction": "x"}), # too long
        "{broken",                                                                                 # bad JSON
        json.dumps(["not", "an", "object"]),
    ]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    problems = validate_submission(load_meta(meta, check_audio=False).items, path)
    text = "\n".join(problems)
    assert "line 2: duplicate id" in text
    assert "line 3: unknown id not-an-mmar-id" in text
    assert "line 4: missing key 'thinking_prediction'" in text
    assert "line 5: 'thinking_prediction' must be a string" in text
    assert "line 5: 'answer_prediction' must be a string" in text
    assert "line 6: thinking_prediction has 10000 characters" in text
    assert "line 7: not valid JSON" in text
    assert "line 8: expected a JSON object" in text
    for missing in ids[4:]:
        assert f"missing prediction for id {missing}" in text
    proc = run_validate(meta, path)
    assert proc.returncode != 0
    assert "duplicate id" in proc.stdout and "missing prediction" in proc.stdout


# --- bootstrap --------------------------------------------------------------------------------------------

def test_bootstrap_identical_systems_interval_is_zero():
    a = [1, 0] * 100
    ci = bootstrap_ci(a, list(a), n_boot=500, seed=1)
    assert ci["paired"] and ci["estimate"] == 0.0 and ci["low"] <= 0.0 <= ci["high"]


def test_bootstrap_noisy_equal_systems_cover_zero():
    import numpy as np
    rng = np.random.default_rng(3)
    a = (rng.random(400) < 0.6).astype(int)
    b = a.copy()
    b[rng.choice(np.flatnonzero(a == 1), size=20, replace=False)] = 0   # 20 items lost ...
    b[rng.choice(np.flatnonzero(a == 0), size=20, replace=False)] = 1   # ... and 20 gained: same accuracy
    ci = bootstrap_ci(a.tolist(), b.tolist(), n_boot=1000, seed=0)
    assert ci["low"] < 0.0 < ci["high"]


def test_bootstrap_clearly_better_system_excludes_zero_and_is_deterministic():
    better = {f"i{k}": int(k % 10 < 8) for k in range(300)}   # 80 %
    worse = {f"i{k}": int(k % 10 < 5) for k in range(300)}    # 50 %
    ci = bootstrap_ci(better, worse, n_boot=1000, seed=7)
    assert ci["estimate"] == pytest.approx(30.0)
    assert ci["low"] > 0.0
    assert ci == bootstrap_ci(better, worse, n_boot=1000, seed=7)
    single = bootstrap_ci(list(better.values()), n_boot=1000, seed=0)
    assert not single["paired"] and single["low"] < 80.0 < single["high"]
    with pytest.raises(ValueError, match="same item ids"):
        bootstrap_ci(better, {"other": 1})


# --- MMAR-Rubrics and CRS ---------------------------------------------------------------------------------

class ScriptedJudge:
    """Returns fixed per-run scores for each item id and counts the calls (a test double, not a library judge)."""

    def __init__(self, script):
        self.script = script
        self.calls = []

    def score(self, item, thinking_prediction, answer_prediction, run):
        self.calls.append((item["id"], run))
        return self.script[item["id"]][run]


def test_trimmed_run_mean_drops_high_and_low():
    assert trimmed_run_mean([0.2, 1.0, 0.6, 0.4, 0.8]) == pytest.approx(0.6)
    assert trimmed_run_mean([0.0, 0.0, 1.0, 1.0, 1.0]) == pytest.approx(2 / 3)
    assert trimmed_run_mean([0.4, 0.6]) == pytest.approx(0.5)


def test_score_rubrics_aggregation_and_crs():
    items = load_meta(FIXTURES / "MMAR-meta.jsonl", check_audio=False, require_rubrics=True).items
    preds = read_predictions(FIXTURES / "predictions.jsonl")
    correct_ids = ["m01_dog-barks_00-00-00_00-00-05", "m03_sigh_00-00-00_00-00-08",
                   "m04_park_00-01-00_00-01-30", "m08_car-pass_00-00-00_00-00-06"]
    ones, zeros = [1] * 5, [0] * 5
    script = {
        # run totals 1.0, 0.8, 0.6, 0.4, 0.2 -> drop 1.0 and 0.2 -> mean(0.8, 0.6, 0.4) = 0.6
        correct_ids[0]: [ones, [1, 1, 1, 1, 0], [1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]],
        correct_ids[1]: [ones] * 5,                                          # 1.0
        correct_ids[2]: [zeros, zeros, ones, ones, ones],                    # mean(0, 1, 1) = 2/3
        correct_ids[3]: [[0, 0, 0, 0, 1]] * 5,                               # 0.2
    }
    judge = ScriptedJudge(script)
    result = score_rubrics(items, preds, judge, runs=5)
    # wrong answers (and the missing m07) never reach the judge
    assert {item_id for item_id, _ in judge.calls} == set(correct_ids)
    assert len(judge.calls) == 4 * 5
    expected = {correct_ids[0]: 0.6, correct_ids[1]: 1.0, correct_ids[2]: 2 / 3, correct_ids[3]: 0.2}
    for item_id, score in result["per_item"].items():
        assert score == pytest.approx(expected.get(item_id, 0.0))
    assert result["rubrics"] == pytest.approx(100 * sum(expected.values()) / 8)
    assert result["crs"] == pytest.approx(sum(expected.values()) / 4)
    assert result["accuracy"] == 50.0 and result["num_correct"] == 4 and result["complete"]
    assert result["details"][correct_ids[0]]["run_totals"] == pytest.approx([1.0, 0.8, 0.6, 0.4, 0.2])
    assert result["by_modality"]["sound"]["rubrics"] == pytest.approx(100 * (0.6 + 0.2) / 2)


def test_score_rubrics_records_judge_failures_and_bad_scores():
    items = load_meta(FIXTURES / "MMAR-meta.jsonl", check_audio=False, require_rubrics=True).items[:3]
    preds = [{"id": it["id"], "thinking_prediction": "t", "answer_prediction": it["answer"]} for it in items]

    class FlakyJudge:
        def score(self, item, thinking_prediction, answer_prediction, run):
            if item["id"] == items[0]["id"]:
                raise RuntimeError("judge down")
            if item["id"] == items[1]["id"]:
                return [1, 1, 1]                       # wrong length
            return [1, 0, 1, 0, 1]

    result = score_rubrics(items, preds, FlakyJudge(), runs=3)
    assert not result["complete"] and result["judge_failures"] == 2
    assert set(result["judge_failure_ids"]) == {items[0]["id"], items[1]["id"]}
    assert result["num_evaluated"] == 1 and result["crs"] == pytest.approx(0.6)
    with pytest.raises(ValueError, match="no 'rubric'"):
        score_rubrics([{k: v for k, v in items[0].items() if k != "rubric"}], preds, FlakyJudge())
