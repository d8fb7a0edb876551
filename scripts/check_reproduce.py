#!/usr/bin/env python
"""Check that a run reproduces recorded per-item scores exactly, or record a run's per-item scores.

    make reproduce                                    # on the commit the record names: runs/mini
    python scripts/check_reproduce.py                 # runs/mini against docs/results/mini-seed0-per-item.json
    python scripts/check_reproduce.py --run-dir runs/mini-seed0 --expected docs/results/mini-seed0-per-item.json
    python scripts/check_reproduce.py --record --run-dir runs/mini-seed0 --out docs/results/mini-seed0-per-item.json \
        --commit $(git rev-parse HEAD) --command "make headline"

Exit status 0 when every recorded model's score on every item is identical (and the benchmark is the same), 1
otherwise; the output names each model that differs and the first items where it does.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cogito_lib.evaluate.reproduce import compare, load_summary, record, report  # noqa: E402
from cogito_lib.io import write_json  # noqa: E402

DEFAULT_RECORD = ROOT / "docs" / "results" / "mini-seed0-per-item.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run-dir", default=str(ROOT / "runs" / "mini"), help="the run dir to check or record")
    parser.add_argument("--expected", default=str(DEFAULT_RECORD), help="the recorded per-item file to compare with")
    parser.add_argument("--record", action="store_true", help="write the run's per-item record instead of checking")
    parser.add_argument("--out", help="where --record writes (default: --expected)")
    parser.add_argument("--commit", default="", help="with --record: the commit the run was made on")
    parser.add_argument("--command", default="", help="with --record: the command that made the run")
    parser.add_argument("--note", default="", help="with --record: a line on what the run is")
    args = parser.parse_args(argv)
    try:
        summary = load_summary(args.run_dir)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.record:
        if not args.commit or not args.command:
            print("error: --record needs --commit and --command (what made this run)", file=sys.stderr)
            return 2
        out = Path(args.out or args.expected)
        write_json(out, record(summary, commit=args.commit, command=args.command, note=args.note))
        print(f"recorded {len(summary['models'])} model(s) x {len(summary['item_tiers'])} items -> {out}")
        return 0
    expected_path = Path(args.expected)
    if not expected_path.is_file():
        print(f"error: {expected_path} not found (make one with --record)", file=sys.stderr)
        return 2
    expected = json.loads(expected_path.read_text())
    result = compare(expected, summary)
    print(f"run dir: {args.run_dir}")
    print(report(result, expected))
    return 0 if result["identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
