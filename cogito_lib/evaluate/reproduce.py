"""Published numbers, checkable: a run's per-item scores recorded once, and a later run compared with them item by
item (`scripts/check_reproduce.py`).

A record holds, for one run dir of one commit: the command that made it, the benchmark's fingerprint, the item ids
in order and, per model, its per-item correctness as a string of 0/1 (one character per item, in the ids' order)
and its accuracy. Recorded per-item scores of the `mini` headline's seed 0 live in `docs/results/`; `make reproduce`
on the commit a record names must give them back exactly.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from ..io import read_json
from ..layout import EVAL

FORMAT = "cogito-per-item-v1"


def load_summary(run_dir: str | Path) -> dict:
    """A run dir's notebook-07 summary, or FileNotFoundError saying what to run."""
    path = Path(run_dir) / EVAL / "summary.json"
    summary = read_json(path)
    if summary is None:
        raise FileNotFoundError(f"{path} not found: run notebook 07 in {run_dir} first (make reproduce)")
    return summary


def record(summary: Mapping, *, commit: str, command: str, note: str = "") -> dict:
    """The per-item record of a run from its summary.json (see the module's doc)."""
    ids = sorted(summary["item_tiers"])
    models = {}
    for name, entry in summary["models"].items():
        per = entry["per_item"]
        missing = [i for i in ids if i not in per]
        if missing:
            raise ValueError(f"model {name} has no score for {len(missing)} item(s), e.g. {missing[0]}")
        models[name] = {"accuracy": round(float(entry["accuracy"]), 4),
                        "per_item": "".join(str(int(per[i])) for i in ids)}
    return {"format": FORMAT, "commit": commit, "command": command, "note": note,
            "benchmark": summary.get("benchmark"), "benchmark_fingerprint": summary.get("benchmark_fingerprint"),
            "num_items": len(ids), "ids": ids, "models": models}


def compare(expected: Mapping, summary: Mapping) -> dict[str, Any]:
    """Every recorded model's per-item scores against a run's summary: {"identical": bool, "benchmark": same
    fingerprint?, "models": {name: {"status": "identical" | "differs" | "missing", "differing": [ids], ...}}}.
    Models the run has beyond the record are listed under "extra" and do not count."""
    if expected.get("format") != FORMAT:
        raise ValueError(f"not a per-item record of format {FORMAT!r} (got {expected.get('format')!r})")
    ids = list(expected["ids"])
    out: dict[str, Any] = {"benchmark": expected.get("benchmark_fingerprint") == summary.get("benchmark_fingerprint"),
                           "models": {}, "extra": sorted(set(summary["models"]) - set(expected["models"]))}
    for name, want in expected["models"].items():
        got = (summary["models"].get(name) or {}).get("per_item")
        if got is None:
            out["models"][name] = {"status": "missing", "differing": []}
            continue
        have = "".join(str(int(got[i])) if i in got else "?" for i in ids)
        differing = [i for i, a, b in zip(ids, want["per_item"], have) if a != b]
        out["models"][name] = {"status": "identical" if not differing else "differs", "differing": differing,
                               "expected_accuracy": want["accuracy"],
                               "accuracy": round(float(summary["models"][name]["accuracy"]), 4)}
    out["identical"] = out["benchmark"] and all(m["status"] == "identical" for m in out["models"].values())
    return out


def report(result: Mapping, expected: Mapping) -> str:
    """The comparison in lines a reader can act on."""
    lines = [f"record: commit {expected.get('commit')}, {expected['num_items']} items, command: "
             f"{expected.get('command')}",
             "benchmark: " + ("same items (fingerprint matches)" if result["benchmark"]
                              else "DIFFERENT benchmark fingerprint: the run did not score the recorded items")]
    for name, m in result["models"].items():
        if m["status"] == "identical":
            lines.append(f"{name}: identical ({expected['num_items']} items, accuracy {m['accuracy']:.2f})")
        elif m["status"] == "missing":
            lines.append(f"{name}: MISSING from the run")
        else:
            lines.append(f"{name}: DIFFERS on {len(m['differing'])} item(s) (accuracy {m['accuracy']:.2f}, recorded "
                         f"{m['expected_accuracy']:.2f}), e.g. {', '.join(m['differing'][:5])}")
    if result["extra"]:
        lines.append(f"not in the record (not checked): {', '.join(result['extra'])}")
    lines.append("REPRODUCED: every recorded per-item score is identical" if result["identical"]
                 else "NOT REPRODUCED")
    return "\n".join(lines)
