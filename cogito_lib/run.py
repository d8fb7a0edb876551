"""The papermill runner: execute `notebooks/NN-*.ipynb` in order into one run dir.

    python -m cogito_lib.run --profile mini                # what `make reproduce` calls
    python -m cogito_lib.run --profile tiny --only 00 02   # a subset
    python -m cogito_lib.run --profile paper --plan        # what would run, and what is missing

Each notebook gets `PROFILE` and `RUN_DIR` injected, is executed on the `cogito` kernel, and its executed copy
lands in the run dir beside the stage folders. Wall times and each notebook's recorded metrics are merged into
`RUN_DIR/metrics.json`. On failure the runner stops, names the notebook and the failing cell, and exits 1;
everything earlier notebooks wrote stays in place. For the whole run it is the one writer of the selected stages'
folders (their notebooks' kernels write under its lock); a second runner or stage command on them stops with one
line naming it, or waits with `--wait`.
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .checks import KERNEL_NAME, check_prerequisites
from .config import PROFILES, REPO_ROOT, load_profile, resolve_run_dir
from .metrics import merge_run_metrics
from .io import DEBUG_HELP, LOCK_WAIT_ENV, cli_main, write_json
from .layout import STAGES, stage_lock

NOTEBOOK_DIR = REPO_ROOT / "notebooks"


class RunError(RuntimeError):
    """A notebook failed or the request was invalid; the message says which and where."""


@dataclass(frozen=True)
class NotebookResult:
    stage: str
    wall_s: float
    output: Path


def discover_notebooks(notebook_dir: Path = NOTEBOOK_DIR) -> list[Path]:
    """The stage notebooks `NN-slug.ipynb`, in order (the template and other files are not stages)."""
    return sorted(p for p in notebook_dir.glob("[0-9][0-9]-*.ipynb"))


def select_notebooks(notebooks: Sequence[Path], only: Sequence[str] | None) -> list[Path]:
    if not only:
        return list(notebooks)
    wanted = {str(n).zfill(2) for n in only}
    known = {p.name[:2] for p in notebooks}
    unknown = sorted(wanted - known)
    if unknown:
        raise RunError(f"--only {' '.join(unknown)}: no such notebook; available: {' '.join(sorted(known))}")
    return [p for p in notebooks if p.name[:2] in wanted]


def parameter_names(notebook: Path) -> set[str]:
    """Names assigned in the notebook's `parameters` cell."""
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            names = set()
            for node in ast.parse(source).body:
                target = node.target if isinstance(node, ast.AnnAssign) else (
                    node.targets[0] if isinstance(node, ast.Assign) else None)
                if isinstance(target, ast.Name):
                    names.add(target.id)
            return names
    return set()


def parse_param(text: str) -> tuple[str, Any]:
    """`KEY=VALUE` with VALUE a Python literal (`3`, `0.5`, `True`, `None`, `'x'`) or else a plain string."""
    if "=" not in text:
        raise RunError(f"--param {text!r}: expected KEY=VALUE, e.g. --param NUM_CLIPS=200")
    key, value = text.split("=", 1)
    try:
        return key.strip(), ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key.strip(), value


def _failure_message(notebook: Path, output: Path, err: Exception) -> str:
    cell = getattr(err, "cell_index", None)
    if cell is None:
        return f"{notebook.name} failed before running a cell: {type(err).__name__}: {err}"
    source = (getattr(err, "source", "") or "").strip().splitlines()
    first_line = source[0] if source else ""
    return (f"{notebook.name} failed in cell {cell} (execution count {getattr(err, 'exec_count', '?')}: "
            f"`{first_line[:80]}`): {getattr(err, 'ename', '')}: {getattr(err, 'evalue', '')}\n"
            f"  the executed notebook with the full traceback is {output}")


def run_notebook(notebook: Path, run_dir: Path, parameters: dict, *, kernel: str = KERNEL_NAME,
                 progress: bool = True) -> NotebookResult:
    """Execute one notebook with papermill into `run_dir`; raise RunError naming the failing cell."""
    import papermill as pm

    output = run_dir / notebook.name
    start = time.perf_counter()
    try:
        pm.execute_notebook(str(notebook), str(output), parameters=parameters, kernel_name=kernel,
                            cwd=str(notebook.parent), progress_bar=progress, log_output=False)
    except Exception as err:  # PapermillExecutionError, NoSuchKernel, ...
        wall_s = time.perf_counter() - start
        merge_run_metrics(run_dir, "notebooks", notebook.stem,
                          {"status": "failed", "wall_s": round(wall_s, 2), "error": f"{type(err).__name__}"},
                          replace=True)
        if type(err).__name__ == "NoSuchKernel":
            raise RunError(f"kernel '{kernel}' is not registered: run `make venv`") from err
        raise RunError(_failure_message(notebook, output, err)) from err
    wall_s = time.perf_counter() - start
    merge_run_metrics(run_dir, "notebooks", notebook.stem,
                      {"status": "ok", "wall_s": round(wall_s, 2), "executed": output.name}, replace=True)
    return NotebookResult(notebook.stem, wall_s, output)


def hold_stages(run_dir: Path, notebooks: Sequence[Path]) -> contextlib.ExitStack:
    """Hold the lock of every selected notebook's stage folder for the whole run, shared with the kernels that run
    them; LockHeld (naming the holder) when another process writes one of them."""
    stack = contextlib.ExitStack()
    with stack:
        for notebook in notebooks:
            if notebook.stem in STAGES:
                stack.enter_context(stage_lock(run_dir, notebook.stem, share=True))
        return stack.pop_all()


def run(profile_name: str, run_dir: str | Path | None = None, only: Sequence[str] | None = None,
        params: dict | None = None, *, kernel: str = KERNEL_NAME, progress: bool = True,
        notebook_dir: Path = NOTEBOOK_DIR) -> list[NotebookResult]:
    """Run the selected notebooks in order under `profile_name`; return their wall times."""
    profile = load_profile(profile_name)  # fail on a bad profile before anything runs
    run_path = resolve_run_dir(profile, run_dir)
    notebooks = select_notebooks(discover_notebooks(notebook_dir), only)
    params = dict(params or {})
    for key in params:
        if not any(key in parameter_names(nb) for nb in notebooks):
            raise RunError(f"--param {key}: no selected notebook has a parameter named {key}")
    run_path.mkdir(parents=True, exist_ok=True)
    with hold_stages(run_path, notebooks):  # one writer of these stages (and their executed notebooks)
        write_json(run_path / "profile.json", profile.to_dict())
        results = []
        total = len(notebooks)
        for number, notebook in enumerate(notebooks, start=1):
            names = parameter_names(notebook)
            injected = {"PROFILE": profile.name, "RUN_DIR": str(run_path)}
            injected.update({k: v for k, v in params.items() if k in names})
            print(f"[{number}/{total}] {notebook.name} (profile {profile.name}) ...", flush=True)
            result = run_notebook(notebook, run_path, injected, kernel=kernel, progress=progress)
            print(f"[{number}/{total}] {notebook.name} done in {result.wall_s:.1f} s -> {result.output}", flush=True)
            results.append(result)
    merge_run_metrics(run_path, "run", "last", {
        "profile": profile.name, "notebooks": [r.stage for r in results],
        "wall_s": round(sum(r.wall_s for r in results), 2)})
    return results


def plan(profile_name: str, run_dir: str | Path | None = None, only: Sequence[str] | None = None,
         notebook_dir: Path = NOTEBOOK_DIR) -> bool:
    """Print what would run and every prerequisite check; return True when nothing is missing."""
    profile = load_profile(profile_name)
    run_path = resolve_run_dir(profile, run_dir)
    notebooks = select_notebooks(discover_notebooks(notebook_dir), only)
    print(f"profile {profile.name}: {profile.description}")
    print(f"run dir {run_path}")
    print("would run:")
    for notebook in notebooks:
        print(f"  {notebook.name}")
    print("prerequisites:")
    checks = check_prerequisites(profile)
    for check in checks:
        print(f"  {check.line()}")
    missing = [c for c in checks if not c.ok]
    print(f"{len(missing)} missing" if missing else "all prerequisites present")
    return not missing


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cogito_lib.run", description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="mini", help=f"one of {', '.join(PROFILES)} (default mini)")
    parser.add_argument("--run-dir", default=None, help="output folder (default runs/<profile>)")
    parser.add_argument("--only", nargs="+", metavar="NN", help="run only these notebook numbers, e.g. 00 02")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="extra notebook parameter, e.g. --param SEED=1 (repeatable)")
    parser.add_argument("--plan", action="store_true", help="print what would run and check prerequisites")
    parser.add_argument("--kernel", default=KERNEL_NAME, help="Jupyter kernel (default cogito)")
    parser.add_argument("--no-progress", action="store_true", help="no per-cell progress bars")
    parser.add_argument("--wait", action="store_true",
                        help="wait while another process writes a selected stage of the run dir (default: stop)")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    args = parser.parse_args(argv)
    if args.wait:
        os.environ[LOCK_WAIT_ENV] = "1"
    return cli_main(lambda: _main(args), debug=args.debug)


def _main(args: argparse.Namespace) -> int:
    if args.plan:
        return 0 if plan(args.profile, args.run_dir, args.only) else 1
    params = dict(parse_param(p) for p in args.param)
    start = time.perf_counter()
    results = run(args.profile, args.run_dir, args.only, params, kernel=args.kernel,
                  progress=not args.no_progress and sys.stderr.isatty())
    print(f"{len(results)} notebook(s) in {time.perf_counter() - start:.1f} s; metrics in "
          f"{resolve_run_dir(args.profile, args.run_dir) / 'metrics.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
