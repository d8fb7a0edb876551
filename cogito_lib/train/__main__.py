"""`python -m cogito_lib.train --profile P --run-dir D [--variant V ...] [--set train.max_steps=50]`: notebook 06's
variants (`cogito_lib.distill.run_variants`) from the command line, in this process or under `accelerate launch`."""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Sequence

from ..config import ConfigError, load_profile, resolve_run_dir
from ..distill import run_variants
from ..io import DEBUG_HELP, LOCK_WAIT_ENV, cli_main
from ..layout import VARIANTS, MissingInput


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m cogito_lib.train --profile P --run-dir D [--variant V ...] [--set train.max_steps=50]`."""
    parser = argparse.ArgumentParser(prog="python -m cogito_lib.train", description=(
        "Self-distillation fine-tuning (notebook 06): LoRA SFT of the base on the audited traces and the "
        "equal-compute controls. Runs in-process, or data-parallel under `accelerate launch`."))
    parser.add_argument("--profile", default="mini", help="tiny, mini or paper")
    parser.add_argument("--run-dir", default=None, help="run folder (default runs/<profile>)")
    parser.add_argument("--variant", nargs="*", choices=VARIANTS, help="variants to train (default train.variants)")
    parser.add_argument("--max-steps", type=int, help="optimisation steps of every variant (train.max_steps)")
    parser.add_argument("--learning-rate", type=float, help="peak learning rate (train.learning_rate)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (train.threads)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any profile value, e.g. train.replay_atomic=0 (repeatable)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--first-round-only", action="store_true",
                        help="leave later self-distillation rounds (train.rounds > 1) to a later call")
    parser.add_argument("--wait", action="store_true",
                        help="wait while another process writes 06 of the run dir (default: stop)")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    args = parser.parse_args(argv)
    if args.wait:
        os.environ[LOCK_WAIT_ENV] = "1"
    return cli_main(lambda: _train(parser, args), debug=args.debug, usage_errors=(ConfigError, MissingInput))


def _train(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {"train.max_steps": args.max_steps, "train.learning_rate": args.learning_rate,
                                 "train.threads": args.threads}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set {item!r}: expected KEY=VALUE")
        overrides[key.strip()] = _parse_value(value.strip())
    profile = load_profile(args.profile, overrides)
    stats = run_variants(profile, resolve_run_dir(profile, args.run_dir), args.variant,
                         later_rounds=not args.first_round_only, progress=not args.no_progress)
    if int(os.environ.get("RANK", "0")) == 0:
        for name, summary in stats["variants"].items():
            print(f"{name}: {summary.get('status')} steps={summary.get('steps')} "
                  f"examples={summary.get('examples')} final_loss={summary.get('final_loss')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
