"""`python -m cogito_lib.train [--profile P] [--config FILE] --run-dir D [--variant V ...] [--set KEY=VALUE]`:
notebook 06's variants (`cogito_lib.distill.run_variants`) from the command line, in this process or under
`accelerate launch`. With `train.engine = "accelerate"` (the paper profile's, or `--set train.engine=accelerate
--set train.processes=8`) it launches the ranks itself; `--job FILE` is what each of those ranks runs."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Sequence

from ..config import ConfigError, resolve_config, resolve_run_dir
from ..distill import run_variants, train_job
from ..io import DEBUG_HELP, LOCK_WAIT_ENV, cli_main
from ..layout import VARIANTS, MissingInput


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m cogito_lib.train --profile P --run-dir D [--variant V ...] [--set train.max_steps=50]`."""
    parser = argparse.ArgumentParser(prog="python -m cogito_lib.train", description=(
        "Self-distillation fine-tuning (notebook 06): LoRA SFT of the base on the audited traces and the "
        "equal-compute controls. Runs in-process, or data-parallel under `accelerate launch`."))
    parser.add_argument("--profile", default=None, help="tiny, mini or paper (default: the config file's, else mini)")
    parser.add_argument("--config", default=None, metavar="FILE", help="run configuration (TOML)")
    parser.add_argument("--run-dir", default=None, help="run folder (default: the config's run_dir, else runs/<profile>)")
    parser.add_argument("--variant", nargs="*", choices=VARIANTS, help="variants to train (default train.variants)")
    parser.add_argument("--max-steps", type=int, help="optimisation steps of every variant (train.max_steps)")
    parser.add_argument("--learning-rate", type=float, help="peak learning rate (train.learning_rate)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (train.threads)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any profile value, e.g. train.replay_atomic=0 (repeatable)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--first-round-only", action="store_true",
                        help="leave later self-distillation rounds (train.rounds > 1) to a later call")
    parser.add_argument("--job", metavar="JOB_JSON",
                        help="train one prepared job (written by notebook 06 with train.engine=accelerate into "
                             "<variant>/launch/job.json); what every rank of `accelerate launch` runs")
    parser.add_argument("--wait", action="store_true",
                        help="wait while another process writes 06 of the run dir (default: stop)")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    args = parser.parse_args(argv)
    if args.wait:
        os.environ[LOCK_WAIT_ENV] = "1"
    if args.job:
        return cli_main(lambda: _train_job(args), debug=args.debug, usage_errors=(ConfigError, MissingInput))
    return cli_main(lambda: _train(args), debug=args.debug, usage_errors=(ConfigError, MissingInput))


def _train_job(args: argparse.Namespace) -> int:
    summary = train_job(args.job, progress=not args.no_progress)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"{summary['variant']}: {summary['status']} steps={summary['steps']} "
              f"final_loss={summary.get('final_loss')} lora={summary.get('lora')}")
    return 0


def _train(args: argparse.Namespace) -> int:
    options: dict[str, Any] = {"train.max_steps": args.max_steps, "train.learning_rate": args.learning_rate,
                               "train.threads": args.threads}
    run_config, profile = resolve_config(args.profile, args.config, args.set, overrides=options)
    stats = run_variants(profile, resolve_run_dir(profile, args.run_dir or run_config.run_dir), args.variant,
                         later_rounds=not args.first_round_only, progress=not args.no_progress)
    if int(os.environ.get("RANK", "0")) == 0:
        for name, summary in stats["variants"].items():
            print(f"{name}: {summary.get('status')} steps={summary.get('steps')} "
                  f"examples={summary.get('examples')} final_loss={summary.get('final_loss')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
