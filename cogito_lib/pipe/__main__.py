"""Command line for Cogito-pipe stages: `python -m cogito_lib.pipe <stage> --profile P --run-dir D [...]`.

Each stage is a subcommand registered in STAGES. A stage folder has one writer at a time: a second command on the
same run dir and stage stops with one line naming the first (`--wait` waits for it). An error prints one line
(`error: ...`, naming the file and what to do) and exits 2 for a profile or input error, 1 otherwise; `--debug`
shows the traceback instead.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Callable

from cogito_lib.config import PROFILES, ConfigError, Profile, load_profile, resolve_run_dir
from cogito_lib.io import DEBUG_HELP, LOCK_WAIT_ENV, cli_main
from cogito_lib.layout import AUDIT, COLLECT, COT, QA, MissingInput


def _parse_override(text: str) -> tuple[str, object]:
    """KEY=VALUE with VALUE read as JSON when it parses (numbers, true/false, null), else as a string."""
    key, sep, value = text.partition("=")
    if not sep:
        raise ConfigError(f"--set expects KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _run_collect(profile: Profile, args: argparse.Namespace) -> dict:
    run_dir = resolve_run_dir(profile, args.run_dir)
    if args.split != "curation":  # another world split (pretrain, heldout, ...): always the procedural world
        if profile.collect.source == "datasets":
            raise ConfigError(f"--split {args.split}: the paper's datasets only make the curation pool; other "
                              "splits come from the procedural world (collect.source=world)")
        from cogito_lib.world import collect as collect_world

        return collect_world(profile, run_dir, split=args.split, out_subdir=args.out_subdir,
                             progress=not args.no_progress)
    from cogito_lib.pipe.collect import collect

    return collect(profile, run_dir, out_subdir=args.out_subdir, progress=not args.no_progress)


def _add_collect(parser: argparse.ArgumentParser) -> dict[str, str]:
    parser.add_argument("--num-clips", type=int, help="clips to make (collect.num_clips)")
    parser.add_argument("--workers", type=int, help="worker processes, 0 = all cores (collect.workers)")
    parser.add_argument("--seed", type=int, help="world seed, or the datasets' sampling seed (collect.seed)")
    parser.add_argument("--split", default="curation", help="world split name: curation, pretrain, heldout")
    parser.add_argument("--out-subdir", default=COLLECT, help="stage folder inside the run dir")
    parser.add_argument("--mix", help="datasets only: weights like 'audioset=0.3,clotho=0.1' (collect.mix); "
                                      "default the paper's mix")
    parser.add_argument("--max-clip-s", type=float, help="datasets only: seconds kept per clip (collect.max_clip_s)")
    return {"num_clips": "collect.num_clips", "workers": "collect.workers", "seed": "collect.seed",
            "mix": "collect.mix", "max_clip_s": "collect.max_clip_s"}


def _lazy(module: str, name: str) -> Callable:
    """A stage's function imported on use, so `--help` stays fast and stages stay independent."""
    def call(*args, **kwargs):
        import importlib

        return getattr(importlib.import_module(f"cogito_lib.pipe.{module}"), name)(*args, **kwargs)
    return call


# stage name -> (help, add arguments (returns option -> profile key), run)
STAGES: dict[str, tuple[str, Callable, Callable]] = {
    "collect": ("stage 1: synthesise world clips, or sample the paper's datasets (collect.source=datasets), "
                f"with metadata ({COLLECT})", _add_collect, _run_collect),
    "annotate": (f"stage 2: the annotator writes multiple-choice questions per clip ({QA})",
                 _lazy("annotate", "add_arguments"), _lazy("annotate", "run_cli")),
    "think": (f"stage 3: the thinker (the base model) answers with K reasoning samples ({COT})",
              _lazy("think", "add_arguments"), _lazy("think", "run_cli")),
    "audit": (f"stage 4: the auditor keeps consistent, judge-approved traces ({AUDIT})",
              _lazy("audit", "add_arguments"), _lazy("audit", "run_cli")),
}


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, dict[str, str]]]:
    parser = argparse.ArgumentParser(prog="python -m cogito_lib.pipe", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="stage", required=True, metavar="{" + ",".join(STAGES) + "}")
    option_keys = {}
    for name, (help_text, add_arguments, _) in STAGES.items():
        stage = sub.add_parser(name, help=help_text, description=help_text)
        stage.add_argument("--profile", default="mini", help=f"one of {', '.join(PROFILES)} (default mini)")
        stage.add_argument("--run-dir", help="run folder (default runs/<profile>)")
        stage.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                           help="override a profile value, e.g. world.max_duration_s=3 (repeatable)")
        stage.add_argument("--no-progress", action="store_true", help="no progress bar")
        stage.add_argument("--wait", action="store_true",
                           help="wait while another process writes this stage of the run dir (default: stop)")
        stage.add_argument("--debug", action="store_true", help=DEBUG_HELP)
        option_keys[name] = add_arguments(stage)
    return parser, option_keys


def main(argv: list[str] | None = None) -> int:
    parser, option_keys = build_parser()
    args = parser.parse_args(argv)

    def run() -> int:
        overrides = dict(_parse_override(item) for item in args.set)
        overrides.update({key: getattr(args, option) for option, key in option_keys[args.stage].items()})
        profile = load_profile(args.profile, overrides)
        if args.wait:
            os.environ[LOCK_WAIT_ENV] = "1"
        stats = STAGES[args.stage][2](profile, args)
        print(json.dumps(stats, indent=2, sort_keys=True))
        return 0

    return cli_main(run, debug=args.debug, usage_errors=(ConfigError, MissingInput))


if __name__ == "__main__":
    sys.exit(main())
