"""`python -m cogito_lib.mmar {score,validate-submission,rubrics}`."""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from .jsonl import write_json
from .meta import first_items, load_meta
from .rubrics import score_rubrics
from .scoring import format_table, read_predictions, score_predictions
from .submission import validate_submission


def _load_items(meta: str, *, require_rubrics: bool = False) -> list[dict]:
    load = load_meta(meta, check_audio=False, require_rubrics=require_rubrics)
    for problem in load.problems:
        print(f"warning: {meta}: {problem}", file=sys.stderr)
    return load.items


def _cmd_score(args: argparse.Namespace) -> int:
    items = _load_items(args.meta)
    scores = score_predictions(items, read_predictions(args.predictions))
    print(format_table(scores))
    if args.out:
        write_json(args.out, scores)
        print(f"wrote {args.out}")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    every = _load_items(args.meta)
    items = first_items(every, args.num_items)
    problems = validate_submission(items, args.predictions)
    for problem in problems:
        print(f"{args.predictions}: {problem}")
    scope = f"the first {len(items)} of {len(every)} items" if len(items) < len(every) else f"{len(items)} items"
    if problems:
        print(f"{len(problems)} problem(s): the submission is not valid for {scope}", file=sys.stderr)
        return 1
    print(f"OK: {args.predictions} is a valid submission for {scope}"
          + (" (a partial one: the challenge needs every item)" if len(items) < len(every) else ""))
    return 0


def _cmd_rubrics(args: argparse.Namespace) -> int:
    # the one place the benchmark package reaches into the kit: its OpenAI-compatible rubric judge, configured
    # like the rest of a run (models.rubric_judge, models.rubric_backend, serve.rubric_urls, serve.api_key_env)
    from ..judges import rubric_judge_for

    items = _load_items(args.meta, require_rubrics=True)
    sets = list(args.set) + ([f"models.rubric_judge={args.model}"] if args.model else []) + (
        [f'serve.rubric_urls=["{args.base_url}"]'] if args.base_url else [])
    judge = rubric_judge_for(args.config, sets, cache_dir=args.cache_dir, requests_per_minute=args.rpm)
    result = score_rubrics(items, read_predictions(args.predictions), judge, runs=args.runs, progress=args.progress)
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
    p.add_argument("--num-items", type=int, default=None,
                   help="check it against the first N items of the meta only (a partial run, eval.num_items)")
    p.set_defaults(func=_cmd_validate)
    p = sub.add_parser("rubrics", help="MMAR-Rubrics and CRS with an OpenAI-compatible judge (needs a key)")
    p.add_argument("--meta", required=True)
    p.add_argument("--predictions", required=True)
    p.add_argument("--out")
    p.add_argument("--runs", type=int, default=5, help="rater runs per item (highest and lowest dropped)")
    p.add_argument("--config", default=None, metavar="FILE",
                   help="a run configuration (TOML): its models.rubric_judge, models.rubric_backend, serve.rubric_urls")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one profile key")
    p.add_argument("--model", default=None, help="the judge model (models.rubric_judge; default gpt-4o-2024-11-20)")
    p.add_argument("--base-url", default=None, help="its endpoint (serve.rubric_urls; default: $OPENAI_BASE_URL or "
                                                    "the OpenAI API)")
    p.add_argument("--cache-dir", default=None, help="judge response cache (a rerun costs nothing)")
    p.add_argument("--rpm", type=float, default=60.0, help="requests per minute")
    p.add_argument("--progress", action="store_true", help="show a progress bar")
    p.set_defaults(func=_cmd_rubrics)
    args = parser.parse_args(argv)
    return args.func(args)

