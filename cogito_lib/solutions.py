"""Run the exercise solutions (`notebooks/solutions/NN-*-solutions.ipynb`) against an executed run.

    python -m cogito_lib.solutions --profile mini --run-dir runs/mini          # what `make solutions` calls
    python -m cogito_lib.solutions --profile tiny --run-dir runs/tiny --only 05

Each solution notebook reads the run (`RUN_DIR`), reruns stages only in scratch run dirs under
`RUN_DIR/exercises/`, records its checked predictions and fails when one does not hold. The executed solutions,
their `metrics.json` and the scratch run dirs all land in `RUN_DIR/exercises/`; the run itself is not written.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

from . import layout
from .checks import KERNEL_NAME
from .config import PROFILES, REPO_ROOT, load_profile, resolve_run_dir
from .io import DEBUG_HELP, cli_main
from .metrics import load_run_metrics
from .run import NotebookResult, RunError, run_notebook, select_notebooks

SOLUTIONS_DIR = REPO_ROOT / "notebooks" / "solutions"


def discover_solutions(solutions_dir: Path = SOLUTIONS_DIR) -> list[Path]:
    """The solution notebooks `NN-slug-solutions.ipynb`, in notebook order."""
    return sorted(solutions_dir.glob("[0-9][0-9]-*-solutions.ipynb"))


def run_solutions(profile_name: str, run_dir: str | Path | None = None, only: Sequence[str] | None = None, *,
                  kernel: str = KERNEL_NAME, solutions_dir: Path = SOLUTIONS_DIR) -> list[NotebookResult]:
    """Execute the selected solution notebooks against the executed run `run_dir`; RunError names the first one
    that fails (a prediction that did not hold, or a notebook error) and its executed copy."""
    profile = load_profile(profile_name)
    run_path = resolve_run_dir(profile, run_dir)
    if not (run_path / "metrics.json").is_file():
        raise RunError(f"{run_path} is not an executed run (no metrics.json): run `make reproduce "
                       f"PROFILE={profile.name}` (or pass --run-dir) first")
    out_dir = run_path / layout.EXERCISES
    out_dir.mkdir(parents=True, exist_ok=True)
    notebooks = select_notebooks(discover_solutions(solutions_dir), only)
    results = []
    for number, notebook in enumerate(notebooks, start=1):
        print(f"[{number}/{len(notebooks)}] {notebook.name} (profile {profile.name}) ...", flush=True)
        result = run_notebook(notebook, out_dir, {"PROFILE": profile.name, "RUN_DIR": str(run_path)}, kernel=kernel,
                              progress=False)
        checks = load_run_metrics(out_dir).get("stages", {}).get(notebook.stem, {}).get("checks", {})
        print(f"[{number}/{len(notebooks)}] {notebook.name}: {sum(checks.values())} of {len(checks)} predictions "
              f"hold ({result.wall_s:.1f} s)", flush=True)
        results.append(result)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cogito_lib.solutions", description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="mini", help=f"one of {', '.join(PROFILES)} (default mini)")
    parser.add_argument("--run-dir", default=None, help="the executed run (default runs/<profile>)")
    parser.add_argument("--only", nargs="+", metavar="NN", help="only these notebook numbers, e.g. 03 05")
    parser.add_argument("--kernel", default=KERNEL_NAME, help="Jupyter kernel (default cogito)")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    args = parser.parse_args(argv)
    return cli_main(lambda: _main(args), debug=args.debug)


def _main(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    results = run_solutions(args.profile, args.run_dir, args.only, kernel=args.kernel)
    print(f"{len(results)} solution notebook(s) in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
