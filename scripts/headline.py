#!/usr/bin/env python
"""The headline across seeds: run the pipeline once per seed, then one table of every model's MMAR accuracy.

    python scripts/headline.py --profile mini --seeds 0 1 2                # run 00-07 per seed, then summarise
    python scripts/headline.py --profile mini --seeds 0 1 2 --summary-only # summarise existing run dirs only
    python scripts/headline.py --profile mini --seeds 0 1 2 --only 02 03 04 05 06 07   # reuse nothing else

Seed S runs into `RUNS_ROOT/<profile>-seed<S>/` through `cogito_lib.run` (papermill). How the seed reaches the
pipeline: `SEED=S` is passed to every selected notebook whose `parameters` cell declares `SEED` (today 02, the
curation world seed, so seeds differ in the questions, samples, survivors and hence the fine-tunes, while the
base and the MMAR-synth benchmark stay the same). A notebook that later declares `SEED` (e.g. 01 for the base's
pretraining world, 06 for `train.seed`) picks it up with no change here. When no selected notebook declares
`SEED`, every seed would be the same run, so nothing is run and only the summary is made.

The summary reads each run dir's `07-mmar-evaluation/summary.json` (written by notebook 07) and writes
`RUNS_ROOT/<profile>-headline/headline.md` and `headline.json`: per model, accuracy overall and per tier in each
seed with its 95% item-bootstrap interval, the mean and standard deviation over seeds, and the same for the
paired difference to the base.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cogito_lib.config import PROFILES  # noqa: E402
from cogito_lib.evaluate import STAGE, seeds_markdown, summarise_seeds  # noqa: E402
from cogito_lib.io import atomic_write_text, write_json  # noqa: E402


def seed_run_dir(runs_root: Path, profile: str, seed: int) -> Path:
    return runs_root / f"{profile}-seed{seed}"


def run_seeds(profile: str, seeds: list[int], runs_root: Path, only: list[str] | None) -> list[int]:
    """Run the selected notebooks once per seed; return the seeds that ran (none when no notebook takes SEED)."""
    from cogito_lib.run import discover_notebooks, parameter_names, run, select_notebooks

    notebooks = select_notebooks(discover_notebooks(), only)
    takes_seed = [nb.name for nb in notebooks if "SEED" in parameter_names(nb)]
    if not takes_seed:
        print("no selected notebook declares a SEED parameter: every seed would be the same run, so nothing is "
              "run; summarising existing run dirs only", file=sys.stderr)
        return []
    print(f"SEED goes to: {', '.join(takes_seed)}")
    for seed in seeds:
        run_dir = seed_run_dir(runs_root, profile, seed)
        print(f"== seed {seed} -> {run_dir}", flush=True)
        run(profile, run_dir, only, {"SEED": seed}, progress=False)
    return seeds


def summarise(profile: str, seeds: list[int], runs_root: Path, out_dir: Path) -> dict:
    """Write headline.md / headline.json from the seeds' run dirs that have notebook 07's summary."""
    run_dirs = {}
    for seed in seeds:
        run_dir = seed_run_dir(runs_root, profile, seed)
        if (run_dir / STAGE / "summary.json").is_file():
            run_dirs[str(seed)] = run_dir
        else:
            print(f"seed {seed}: {run_dir / STAGE / 'summary.json'} not found (run notebook 07 there); left out",
                  file=sys.stderr)
    if not run_dirs:
        raise SystemExit(f"error: no seed has {STAGE}/summary.json under {runs_root}; run the pipeline first")
    summary = summarise_seeds(run_dirs)
    summary["run_dirs"] = {seed: str(path) for seed, path in run_dirs.items()}
    markdown = f"# Headline: profile {profile}, {len(run_dirs)} seed(s)\n\n" + seeds_markdown(summary)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "headline.json", summary)
    atomic_write_text(out_dir / "headline.md", markdown)
    print(markdown)
    print(f"written {out_dir / 'headline.md'} and {out_dir / 'headline.json'}")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="mini", choices=PROFILES)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--runs-root", default=str(ROOT / "runs"), help="folder holding <profile>-seed<S>/ run dirs")
    parser.add_argument("--only", nargs="+", metavar="NN", help="notebooks to run per seed (default: all)")
    parser.add_argument("--summary-only", action="store_true", help="do not run anything; summarise run dirs")
    parser.add_argument("--out", default=None, help="output folder (default RUNS_ROOT/<profile>-headline)")
    args = parser.parse_args(argv)
    runs_root = Path(args.runs_root).resolve()
    if not args.summary_only:
        run_seeds(args.profile, args.seeds, runs_root, args.only)
    out_dir = Path(args.out) if args.out else runs_root / f"{args.profile}-headline"
    summarise(args.profile, args.seeds, runs_root, out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
