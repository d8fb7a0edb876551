#!/usr/bin/env python
"""The headline across seeds: run the pipeline once per seed, then one table of every model's MMAR accuracy.

    python scripts/headline.py --profile mini --seeds 0 1 2                # run 00-07 per seed, then summarise
    python scripts/headline.py --profile mini --seeds 0 1 2 --summary-only # summarise existing run dirs only
    python scripts/headline.py --profile mini --seeds 0 1 2 --only 02 03 04 05 06 07   # reuse nothing else

Seed S runs into `RUNS_ROOT/<profile>-seed<S>/` through `cogito_lib.run` (papermill). How the seed reaches the
pipeline: `SEED=S` is passed to every selected notebook whose `parameters` cell declares `SEED`: 01 (the base's
pretraining world and initialisation), 02 (the curation world), 03 (the annotator's draws), 04 (the thinker's
samples) and 06 (batch order, replay draw, initialisation). Each moves its profile seeds by S x 10000
(`cogito_lib.notebook.replicate_seed`), so seed 0 is the default run and seeds are independent replicates of the
whole loop. The MMAR-synth benchmark of 07 stays the same, so every seed is scored on the same items. When no
selected notebook declares `SEED`, every seed would be the same run, so nothing is run and only the summary is made.

The summary reads each run dir's `07-mmar-evaluation/summary.json` (written by notebook 07) and writes
`RUNS_ROOT/<profile>-headline/headline.md` and `headline.json`: per model, accuracy overall and per tier in each
seed with its 95% item-bootstrap interval, the mean and standard deviation over seeds, and the same for the
paired difference to the base; MMAR-Rubrics and CRS per seed; the final self-distilled model minus every control
(`cogito_lib.layout.CONTROLS`), overall, per tier (atomic, composite, held-out) and on MMAR-Rubrics, pooled over
seeds with a 95% interval from a paired bootstrap over items within each seed; accuracy per skill; and the four
bars of `cogito_lib.evaluate.headline_verdicts`, each stated as met or not met. When it ran the seeds, the wall
time of the run is recorded too.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cogito_lib.config import PROFILES  # noqa: E402
from cogito_lib.evaluate import seeds_markdown, summarise_seeds  # noqa: E402
from cogito_lib.layout import EVAL as STAGE  # noqa: E402
from cogito_lib.io import atomic_write_text, write_json  # noqa: E402


def seed_run_dir(runs_root: Path, profile: str, seed: int) -> Path:
    return runs_root / f"{profile}-seed{seed}"


def core_groups(jobs: int) -> list[set[int]]:
    """The usable cores split into `jobs` disjoint groups (one per concurrent seed)."""
    cores = sorted(os.sched_getaffinity(0))
    jobs = max(1, min(jobs, len(cores)))
    return [set(cores[i::jobs]) for i in range(jobs)]


def run_seeds(profile: str, seeds: list[int], runs_root: Path, only: list[str] | None, jobs: int = 1) -> list[int]:
    """Run the selected notebooks once per seed; return the seeds that ran (none when no notebook takes SEED).

    With jobs > 1, that many seeds run at once as separate runner processes, each pinned to its own share of the
    cores (every stage sizes its threads and workers from the cores it may use), so they do not contend."""
    from cogito_lib.run import discover_notebooks, parameter_names, run, select_notebooks

    notebooks = select_notebooks(discover_notebooks(), only)
    takes_seed = [nb.name for nb in notebooks if "SEED" in parameter_names(nb)]
    if not takes_seed:
        print("no selected notebook declares a SEED parameter: every seed would be the same run, so nothing is "
              "run; summarising existing run dirs only", file=sys.stderr)
        return []
    print(f"SEED goes to: {', '.join(takes_seed)}")
    if jobs <= 1:
        for seed in seeds:
            run_dir = seed_run_dir(runs_root, profile, seed)
            print(f"== seed {seed} -> {run_dir}", flush=True)
            run(profile, run_dir, only, {"SEED": seed}, progress=False)
        return seeds
    groups = core_groups(jobs)
    pending, running, failed = list(seeds), {}, []
    while pending or running:
        free = [g for g in range(len(groups)) if g not in running.values()]
        while pending and free:
            seed, group = pending.pop(0), free.pop(0)
            run_dir = seed_run_dir(runs_root, profile, seed)
            run_dir.mkdir(parents=True, exist_ok=True)
            cmd = [sys.executable, "-m", "cogito_lib.run", "--profile", profile, "--run-dir", str(run_dir),
                   "--param", f"SEED={seed}", "--no-progress"] + (["--only", *only] if only else [])
            log = open(run_dir / "headline-run.log", "w")
            cores = groups[group]
            proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                    preexec_fn=lambda cores=cores: os.sched_setaffinity(0, cores))
            print(f"== seed {seed} -> {run_dir} on cores {sorted(cores)} (log: {run_dir / 'headline-run.log'})",
                  flush=True)
            running[proc] = group
            proc.seed = seed
        time.sleep(2)
        for proc in [p for p in running if p.poll() is not None]:
            del running[proc]
            print(f"== seed {proc.seed} {'done' if proc.returncode == 0 else f'FAILED (exit {proc.returncode})'}",
                  flush=True)
            if proc.returncode:
                failed.append(proc.seed)
    if failed:
        print(f"seeds {failed} failed: see their headline-run.log; the summary leaves them out", file=sys.stderr)
    return [s for s in seeds if s not in failed]


def code_version(root: Path = ROOT) -> str:
    """The commit the code is at, and whether tracked files differ from it ("unknown" outside a git checkout)."""
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + (" with uncommitted changes" if dirty else "")


def summarise(profile: str, seeds: list[int], runs_root: Path, out_dir: Path, wall_s: float | None = None) -> dict:
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
    summary["code"] = code_version()
    code = (f"Run and summarised at commit {summary['code']}." if wall_s is not None else
            f"Summarised at commit {summary['code']} (from existing run dirs, which may be older).")
    markdown = f"# Headline: profile {profile}, {len(run_dirs)} seed(s)\n\n{code} " + seeds_markdown(summary)
    if wall_s is not None:
        summary["wall_s"] = round(wall_s, 1)
        markdown += f"\nWall time of the seeds' runs: {wall_s / 60:.1f} min.\n"
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
    parser.add_argument("--jobs", type=int, default=1,
                        help="seeds run at once, each on its own share of the cores (default 1: one after another)")
    parser.add_argument("--summary-only", action="store_true", help="do not run anything; summarise run dirs")
    parser.add_argument("--out", default=None, help="output folder (default RUNS_ROOT/<profile>-headline)")
    args = parser.parse_args(argv)
    runs_root = Path(args.runs_root).resolve()
    wall_s = None
    if not args.summary_only:
        started = time.perf_counter()
        if run_seeds(args.profile, args.seeds, runs_root, args.only, args.jobs):
            wall_s = time.perf_counter() - started
    out_dir = Path(args.out) if args.out else runs_root / f"{args.profile}-headline"
    summarise(args.profile, args.seeds, runs_root, out_dir, wall_s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
