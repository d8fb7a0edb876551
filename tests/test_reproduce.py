"""Published numbers are checkable: per-item records of a run, the item-by-item check of a later run against one, and
the records committed under docs/results/ that docs/results.md cites."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cogito_lib import layout
from cogito_lib.evaluate.reproduce import FORMAT, compare, record, report

ROOT = Path(__file__).resolve().parents[1]
RECORDS = sorted((ROOT / "docs" / "results").glob("*-per-item.json"))


def _summary(per: dict[str, dict[str, int]], fingerprint: str = "abc") -> dict:
    ids = sorted(next(iter(per.values())))
    return {"benchmark": "mmar-synth", "benchmark_fingerprint": fingerprint,
            "item_tiers": {i: "atomic" for i in ids},
            "models": {name: {"accuracy": 100.0 * sum(p.values()) / len(p), "per_item": p} for name, p in per.items()}}


def test_a_run_matches_its_own_record_and_a_changed_item_is_named():
    per = {"base": {"q1": 1, "q2": 0, "q3": 1}, "self_distill": {"q1": 1, "q2": 1, "q3": 1}}
    rec = record(_summary(per), commit="deadbeef", command="make reproduce")
    assert rec["format"] == FORMAT and rec["ids"] == ["q1", "q2", "q3"]
    assert rec["models"]["base"] == {"accuracy": pytest.approx(66.6667, abs=1e-3), "per_item": "101"}
    same = compare(rec, _summary(per))
    assert same["identical"] and "REPRODUCED" in report(same, rec)

    changed = {"base": dict(per["base"], q2=1), "self_distill": per["self_distill"], "answer_only": per["base"]}
    result = compare(rec, _summary(changed))
    assert not result["identical"] and result["models"]["base"] == {
        "status": "differs", "differing": ["q2"], "expected_accuracy": rec["models"]["base"]["accuracy"],
        "accuracy": 100.0}
    assert result["models"]["self_distill"]["status"] == "identical" and result["extra"] == ["answer_only"]
    text = report(result, rec)
    assert "base: DIFFERS on 1 item(s)" in text and "q2" in text and "NOT REPRODUCED" in text

    missing = compare(rec, _summary({"base": per["base"]}))
    assert missing["models"]["self_distill"]["status"] == "missing" and not missing["identical"]
    other_items = compare(rec, _summary(per, fingerprint="xyz"))
    assert not other_items["identical"] and "DIFFERENT benchmark" in report(other_items, rec)


def test_the_script_records_then_checks_a_run_dir(tmp_path):
    run = tmp_path / "run"
    (run / layout.EVAL).mkdir(parents=True)
    summary = _summary({"base": {"a": 1, "b": 0}})
    (run / layout.EVAL / "summary.json").write_text(json.dumps(summary))
    script = [sys.executable, str(ROOT / "scripts" / "check_reproduce.py"), "--run-dir", str(run)]
    out = tmp_path / "rec.json"
    done = subprocess.run(script + ["--record", "--out", str(out), "--commit", "c0ffee", "--command", "x"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    check = subprocess.run(script + ["--expected", str(out)], capture_output=True, text=True, timeout=120)
    assert check.returncode == 0 and "base: identical (2 items" in check.stdout
    summary["models"]["base"]["per_item"]["b"] = 1
    (run / layout.EVAL / "summary.json").write_text(json.dumps(summary))
    check = subprocess.run(script + ["--expected", str(out)], capture_output=True, text=True, timeout=120)
    assert check.returncode == 1 and "DIFFERS on 1 item(s)" in check.stdout
    nothing = subprocess.run(script[:2] + ["--run-dir", str(tmp_path / "none")], capture_output=True, text=True,
                             timeout=120)
    assert nothing.returncode == 2 and "run notebook 07" in nothing.stderr


def test_the_committed_records_are_whole_and_cited_by_the_results_log():
    """docs/results/ holds the per-item scores of the published seed-0 run; each model's accuracy is what the
    per-item string gives, and docs/results.md names the record, its commit and its command."""
    assert RECORDS, "no per-item record under docs/results/"
    results = (ROOT / "docs" / "results.md").read_text()
    for path in RECORDS:
        rec = json.loads(path.read_text())
        assert rec["format"] == FORMAT and rec["ids"] == sorted(rec["ids"]) and len(rec["ids"]) == rec["num_items"]
        assert re.fullmatch(r"[0-9a-f]{40}", rec["commit"]) and rec["command"]
        for name, model in rec["models"].items():
            assert len(model["per_item"]) == rec["num_items"] and set(model["per_item"]) <= {"0", "1"}
            assert model["accuracy"] == pytest.approx(100.0 * model["per_item"].count("1") / rec["num_items"],
                                                      abs=1e-3), name
        assert f"docs/results/{path.name}" in results and rec["commit"][:7] in results
