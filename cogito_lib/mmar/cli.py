"""`python -m cogito_lib.mmar {score,validate-submission,rubrics}`."""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from .jsonl import write_json
from .meta import load_meta
from .rubrics import score_rubrics
from .scoring import DUPLICATE_POLICIES, DuplicatePredictions, format_table, read_predictions, score_predictions
from .submission import validate_submission


def _load(args: argparse.Namespace, *, require_rubrics: bool = False):
    load = load_meta(args.meta, check_audio=False, require_rubrics=require_rubrics,
                     exclude_bad_rows=args.exclude_bad_rows)
    if load.excluded:
        print(f"warning: {load.excluded_summary()}", file=sys.stderr)
    return load


def _load_items(args: argparse.Namespace, *, require_rubrics: bool = False) -> list[dict]:
    return _load(args, require_rubrics=require_rubrics).items


def _excluded(load) -> list[dict]:
    return [{"line": p.line, "id": p.id, "problem": p.message} for p in load.excluded]


def _cmd_score(args: argparse.Namespace) -> int:
    load = _load(args)
    try:
        scores = score_predictions(load.items, read_predictions(args.predictions), duplicates=args.duplicates)
    except DuplicatePredictions as err:
        raise DuplicatePredictions(f"{args.predictions}: {err}") from None
    if load.excluded:
        scores["excluded_meta_rows"] = _excluded(load)
    print(format_table(scores))
    if load.excluded:
        print(f"({len(load.excluded)} bad meta row(s) excluded on request: --exclude-bad-rows)")
    if args.out:
        write_json(args.out, scores)
        print(f"wrote {args.out}")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    items = _load_items(args)
    problems = validate_submission(items, args.predictions)
    for problem in problems:
        print(problem if problem.startswith(str(args.predictions)) else f"{args.predictions}: {problem}")
    if problems:
        print(f"{len(problems)} problem(s): the submission is not valid", file=sys.stderr)
        return 1
    print(f"OK: {args.predictions} is a valid submission for {len(items)} items")
    return 0


def _cmd_rubrics(args: argparse.Namespace) -> int:
    # the one place the benchmark package reaches into the kit: its OpenAI-compatible rubric judge
    from ..judges import OpenAIRubricJudge

    items = _load_items(args, require_rubrics=True)
    judge = OpenAIRubricJudge(model=args.model, base_url=args.base_url, cache_dir=args.cache_dir,
                              requests_per_minute=args.rpm)
    result = score_rubrics(items, read_predictions(args.predictions), judge, runs=args.runs,
                           progress=args.progress, duplicates=args.duplicates)
    print(format_table(result, value="rubrics"))
    if args.out:
        write_json(args.out, result)
        print(f"wrote {args.out}")
    return 0 if result["complete"] else 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cogito_lib.mmar",
        description="MMAR evaluation: official accuracy, challenge submissions, MMAR-Rubrics/CRS.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("score", help="accuracy by the official rule, with breakdowns")
    p.add_argument("--meta", required=True, help="MMAR-meta.jsonl (or MMAR-synth meta)")
    p.add_argument("--predictions", required=True, help="JSONL of {id, thinking_prediction, answer_prediction}")
    p.add_argument("--out", help="write the scores JSON here")
    p.set_defaults(func=_cmd_score)
    p = sub.add_parser("validate-submission", help="check a challenge submission file")
    p.add_argument("--meta", required=True)
    p.add_argument("--predictions", required=True)
    p.set_defaults(func=_cmd_validate)
    p = sub.add_parser("rubrics", help="MMAR-Rubrics and CRS with an OpenAI-compatible judge (needs a key)")
    p.add_argument("--meta", required=True)
    p.add_argument("--predictions", required=True)
    p.add_argument("--out")
    p.add_argument("--runs", type=int, default=5, help="rater runs per item (highest and lowest dropped)")
    p.add_argument("--model", default="gpt-4o-2024-11-20")
    p.add_argument("--base-url", default=None, help="default: $OPENAI_BASE_URL or the OpenAI API")
    p.add_argument("--cache-dir", default=None, help="judge response cache (a rerun costs nothing)")
    p.add_argument("--rpm", type=float, default=60.0, help="requests per minute")
    p.add_argument("--progress", action="store_true", help="show a progress bar")
    p.set_defaults(func=_cmd_rubrics)
    for command in sub.choices.values():
        command.add_argument("--exclude-bad-rows", action="store_true",
                             help="score without the meta's bad rows (listed on stderr) instead of stopping on them")
        if command.prog.split()[-1] != "validate-submission":
            command.add_argument("--duplicates", choices=DUPLICATE_POLICIES, default="error",
                                 help="a prediction id given twice: stop (error, default) or keep the first/last")
        command.add_argument("--debug", action="store_true", help="show the traceback of an error, not one line")
    args = parser.parse_args(argv)
    return _one_line_errors(lambda: args.func(args), debug=args.debug)


def _one_line_errors(body, *, debug: bool) -> int:
    """The command's status, or its error as one `error: ...` line on stderr and status 1 (`--debug`: the
    traceback). The benchmark package's own copy of the kit's `cogito_lib.io.cli_main`: it imports nothing else."""
    try:
        return body()
    except Exception as err:  # noqa: BLE001 - every error becomes one line, unless --debug
        if debug:
            raise
        if isinstance(err, OSError) and getattr(err, "filename", None):
            text = f"{err.filename}: {err.strerror or err}"
        elif isinstance(err, (ValueError, LookupError, OSError)):
            text = str(err)
        else:
            text = f"{type(err).__name__}: {err} (unexpected: rerun with --debug for the traceback)"
        print(f"error: {text}", file=sys.stderr)
        return 1

