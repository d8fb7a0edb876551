"""The papermill runner: execute `notebooks/NN-*.ipynb` in order into one run dir.

    python -m cogito_lib.run --profile mini                # what `make reproduce` calls
    python -m cogito_lib.run --profile tiny --only 00 02   # a subset
    python -m cogito_lib.run --profile paper --plan        # what would run, and what is missing
    python -m cogito_lib.run --config configs/paper/node-8gpu.toml --set eval.num_items=20

The run configuration (`--profile`, a TOML `--config` file, `--set KEY=VALUE` overrides of any profile key) is
resolved and checked before anything runs, written to `RUN_DIR/config.toml`, and handed to each notebook as its
`CONFIG` parameter with `PROFILE` and `RUN_DIR`; `--param NAME=VALUE` sets a notebook's own parameter. Each
notebook is executed on the `cogito` kernel and its executed copy lands in the run dir beside the stage folders.
Wall times and each notebook's recorded metrics are merged into `RUN_DIR/metrics.json`. On failure the runner
stops, names the notebook and the failing cell, and exits 1; everything earlier notebooks wrote stays in place.
For the whole run it is the one writer of the selected stages' folders (their notebooks' kernels write under its
lock); a second runner or stage command on them stops with one line naming it, or waits with `--wait`.
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
from .config import PROFILES, REPO_ROOT, RunConfig, config_text, resolve_config, resolve_run_dir
from .metrics import merge_run_metrics
from .io import DEBUG_HELP, LOCK_WAIT_ENV, cli_main, write_json
from .layout import STAGES, stage_lock

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
CONFIG_FILE = "config.toml"  # the resolved run configuration, in the run dir


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


def _check_params(params: dict, notebooks: Sequence[Path], profile_keys: Sequence[str]) -> None:
    for key in params:
        if not any(key in parameter_names(nb) for nb in notebooks):
            hint = (f"; {key} is a profile key: pass it with --set {key}=..." if key in profile_keys else "")
            raise RunError(f"--param {key}: no selected notebook has a parameter named {key}{hint}")


def run(profile_name: str | None, run_dir: str | Path | None = None, only: Sequence[str] | None = None,
        params: dict | None = None, *, config: str | Path | None = None, sets: Sequence[str] | dict = (),
        kernel: str = KERNEL_NAME, progress: bool = True, notebook_dir: Path = NOTEBOOK_DIR) -> list[NotebookResult]:
    """Run the selected notebooks in order under the resolved configuration (`profile_name`, the `config` file,
    the `sets` overrides); return their wall times. Every key and type is checked before anything runs."""
    run_config, profile = resolve_config(profile_name, config, sets)
    run_path = resolve_run_dir(profile, run_dir or run_config.run_dir)
    notebooks = select_notebooks(discover_notebooks(notebook_dir), only)
    params = dict(params or {})
    _check_params(params, notebooks, profile.keys())
    run_path.mkdir(parents=True, exist_ok=True)
    with hold_stages(run_path, notebooks):  # one writer of these stages (and their executed notebooks)
        write_json(run_path / "profile.json", profile.to_dict())
        config_path = write_run_config(run_path, profile, run_config)
        results = []
        total = len(notebooks)
        for number, notebook in enumerate(notebooks, start=1):
            names = parameter_names(notebook)
            injected = {"PROFILE": profile.name, "RUN_DIR": str(run_path)}
            if "CONFIG" in names:
                injected["CONFIG"] = str(config_path)
            injected.update({k: v for k, v in params.items() if k in names})
            print(f"[{number}/{total}] {notebook.name} (profile {profile.name}) ...", flush=True)
            result = run_notebook(notebook, run_path, injected, kernel=kernel, progress=progress)
            print(f"[{number}/{total}] {notebook.name} done in {result.wall_s:.1f} s -> {result.output}", flush=True)
            results.append(result)
    merge_run_metrics(run_path, "run", "last", {
        "profile": profile.name, "notebooks": [r.stage for r in results],
        "wall_s": round(sum(r.wall_s for r in results), 2)})
    return results


def write_run_config(run_path: Path, profile, run_config: RunConfig) -> Path:
    """`RUN_DIR/config.toml`: the resolved configuration, the file every notebook of the run reads (CONFIG)."""
    from .io import atomic_write_text

    source = run_config.source or "no config file"
    sets = ", ".join(sorted(run_config.overrides)) or "none"
    header = (f"The resolved run configuration, written by `python -m cogito_lib.run` (from {source}; keys set: "
              f"{sets}).\nIt holds every value that differs from the '{profile.name}' profile; rerun with "
              f"--config {run_path / CONFIG_FILE}.")
    path = run_path / CONFIG_FILE
    atomic_write_text(path, config_text(profile, header=header))
    return path


def plan(profile_name: str | None, run_dir: str | Path | None = None, only: Sequence[str] | None = None,
         notebook_dir: Path = NOTEBOOK_DIR, *, config: str | Path | None = None,
         sets: Sequence[str] | dict = ()) -> bool:
    """Print what would run and every prerequisite check; return True when nothing required is missing."""
    from .notebook import resolved_text

    run_config, profile = resolve_config(profile_name, config, sets)
    run_path = resolve_run_dir(profile, run_dir or run_config.run_dir)
    notebooks = select_notebooks(discover_notebooks(notebook_dir), only)
    print(f"profile {profile.name}: {profile.description}")
    print(f"run dir {run_path}")
    print(resolved_text(profile, run_config.source))
    print("would run:")
    for notebook in notebooks:
        print(f"  {notebook.name}")
    print("prerequisites:")
    checks = check_prerequisites(profile)
    for check in checks:
        print(f"  {check.line()}")
    missing = [c for c in checks if not c.ok and c.required]
    optional = [c for c in checks if not c.ok and not c.required]
    print((f"{len(missing)} missing" if missing else "all prerequisites present")
          + (f"; {len(optional)} optional piece(s) missing" if optional else ""))
    return not missing


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cogito_lib.run", description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default=None,
                        help=f"one of {', '.join(PROFILES)} (default: the config file's, else mini)")
    parser.add_argument("--config", default=None, metavar="FILE",
                        help="run configuration (TOML; configs/paper/ has examples)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="sets",
                        help="override one profile key, e.g. --set models.device=cpu (repeatable)")
    parser.add_argument("--run-dir", default=None, help="output folder (default: the config's run_dir, else "
                                                        "runs/<profile>)")
    parser.add_argument("--only", nargs="+", metavar="NN", help="run only these notebook numbers, e.g. 00 02")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="a notebook's own parameter, e.g. --param SEED=1 (repeatable)")
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
        return 0 if plan(args.profile, args.run_dir, args.only, config=args.config, sets=args.sets) else 1
    params = dict(parse_param(p) for p in args.param)
    start = time.perf_counter()
    results = run(args.profile, args.run_dir, args.only, params, config=args.config, sets=args.sets,
                  kernel=args.kernel, progress=not args.no_progress and sys.stderr.isatty())
    where = results[0].output.parent if results else "the run dir"
    print(f"{len(results)} notebook(s) in {time.perf_counter() - start:.1f} s; metrics in {where}/metrics.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
