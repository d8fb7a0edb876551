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

Before any notebook runs, every `--param` is checked against the type its notebooks declare, and the run dir is
checked to be writable. While a notebook runs, its long loops report here (`cogito_lib.progress`): a line per loop
every few seconds with the step, the rate and the time left. The kernel runs headless (`cogito_lib.env.headless`):
its views write static HTML that the executed notebook keeps.
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import errno
import json
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from .checks import KERNEL_NAME, check_prerequisites, check_stage_inputs
from .config import PROFILES, REPO_ROOT, RunConfig, config_text, resolve_config, resolve_run_dir
from .env import HEADLESS_ENV
from .metrics import merge_run_metrics
from .io import DEBUG_HELP, LOCK_WAIT_ENV, cli_main, write_json
from .layout import STAGES, stage_lock
from .progress import LOG_ENV as PROGRESS_LOG_ENV

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


def parameter_types(notebook: Path) -> dict[str, str]:
    """{name: annotated type} of the notebook's `parameters` cell (`NUM_CLIPS: int = -1` gives `int`)."""
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            return {node.target.id: ast.unparse(node.annotation) for node in ast.parse(source).body
                    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)}
    return {}


# Injected by the runner from --profile and --run-dir: as --param they would contradict them.
RUNNER_PARAMS = {"PROFILE": "--profile tiny|mini|paper", "RUN_DIR": "--run-dir DIR", "CONFIG": "--config FILE.toml"}
EXAMPLES = {"int": "3", "float": "0.5", "bool": "True", "str": "abc"}


def coerce_param(key: str, value: Any, annotation: str, where: str) -> Any:
    """`value` as the notebook's declared type, or RunError saying what the parameter takes."""
    ok = {"int": isinstance(value, int) and not isinstance(value, bool),
          "float": isinstance(value, (int, float)) and not isinstance(value, bool),
          "bool": isinstance(value, bool),
          "str": isinstance(value, (str, int, float)) and not isinstance(value, bool)}.get(annotation)
    if ok is None:
        return value  # a type this check does not know: papermill passes the value as given
    if not ok:
        raise RunError(f"--param {key}={value!r}: {where} declares {key}: {annotation}; give a value of that type, "
                       f"e.g. --param {key}={EXAMPLES[annotation]}")
    if annotation == "float":
        return float(value)
    if annotation == "str" and not isinstance(value, str):
        return str(value)
    return value


def check_params(params: dict, notebooks: Sequence[Path], profile_keys: Sequence[str] = ()) -> dict:
    """Every `--param` checked before anything runs: not PROFILE or RUN_DIR, declared by a selected notebook, and
    of the type each notebook that declares it gives it. Returns the values converted to those types."""
    checked = {}
    for key, value in params.items():
        if key in RUNNER_PARAMS:
            raise RunError(f"--param {key}: the runner sets {key} itself; use {RUNNER_PARAMS[key]} instead")
        declared = {nb.name: parameter_types(nb).get(key) for nb in notebooks}
        declared = {name: annotation for name, annotation in declared.items() if annotation is not None}
        if not declared:
            hint = f"; {key} is a profile key: pass it with --set {key}=..." if key in profile_keys else ""
            raise RunError(f"--param {key}: no selected notebook has a parameter named {key}{hint}")
        for name, annotation in declared.items():
            checked[key] = coerce_param(key, value, annotation, name)
    return checked


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


# ---------------------------------------------------------------------------------------- the run dir's disk
WRITE_ERRORS = {errno.EACCES: "not writable", errno.EPERM: "not writable", errno.EROFS: "on a read-only file system",
                errno.ENOSPC: "on a full disk", errno.EDQUOT: "over its disk quota"}


def disk_problem(err: BaseException, run_dir: Path) -> str | None:
    """One line for a write that failed because of the run dir's disk (read-only, no permission, full), naming the
    path and what to do; None for any other error."""
    if not isinstance(err, OSError) or err.errno not in WRITE_ERRORS:
        return None
    where = err.filename or run_dir
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return (f"cannot write {where}: the run dir {run_dir} is {WRITE_ERRORS[err.errno]}. Free some space "
                f"(`df -h {run_dir}`) or pass --run-dir on another disk, then rerun: finished stages are reused")
    return (f"cannot write {where}: the run dir {run_dir} is {WRITE_ERRORS[err.errno]}. Pass --run-dir with a "
            f"folder you can write (e.g. --run-dir ~/cogito-runs/{run_dir.name}) or make it writable")


def _disk_problem_in_notebook(err: BaseException, run_dir: Path) -> str | None:
    """disk_problem for an error raised inside a notebook (papermill reports its name and text only)."""
    name, text = getattr(err, "ename", ""), str(getattr(err, "evalue", ""))
    for code in WRITE_ERRORS:
        if name in ("OSError", "PermissionError") and text.startswith(f"[Errno {code}]"):
            path = text.split(": ", 1)[1].strip("'") if ": " in text else None
            return disk_problem(OSError(code, os.strerror(code), path), run_dir)
    return None


def check_inputs(profile, run_dir: Path, notebooks: Sequence[Path]) -> None:
    """RunError in one line, before any notebook runs, when a selected stage needs a file that neither the run dir
    holds nor an earlier selected notebook writes (e.g. `--only 04` on an empty run dir)."""
    missing = [c for c in check_stage_inputs(profile, run_dir, [nb.stem for nb in notebooks]) if not c.ok]
    if missing:
        more = f" ({len(missing) - 1} more input(s) missing: `--plan` lists them all)" if len(missing) > 1 else ""
        raise RunError(f"nothing was run: {missing[0].name}: {missing[0].message}{more}")


def check_run_dir_writable(run_dir: Path) -> None:
    """Create the run dir and write a probe file there, or RunError in one line (before any notebook runs)."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=run_dir, prefix=".write-check-"):
            pass
    except OSError as err:
        problem = disk_problem(err, run_dir)
        if problem is None:
            raise RunError(f"cannot use {run_dir} as the run dir: {err.strerror or err}") from err
        raise RunError(problem) from err


# ------------------------------------------------------------------------------------ the kernel's surroundings
@contextlib.contextmanager
def headless_kernel(out=None) -> Iterator[None]:
    """While a notebook runs: the kernel is headless (views write static HTML) and its progress bars append to a
    log that a thread prints here as the lines come, indented under the notebook's name."""
    out = out or sys.stdout
    fd, log_path = tempfile.mkstemp(prefix="cogito-progress-", suffix=".log")
    os.close(fd)
    saved = {key: os.environ.get(key) for key in (HEADLESS_ENV, PROGRESS_LOG_ENV)}
    os.environ[HEADLESS_ENV], os.environ[PROGRESS_LOG_ENV] = "1", log_path
    done = threading.Event()

    def relay() -> None:
        with open(log_path, encoding="utf-8", errors="replace") as log:
            pending = ""
            while True:
                finished = done.is_set()
                pending += log.read()
                *lines, pending = pending.split("\n")
                for line in lines:
                    print(f"      {line}", file=out, flush=True)
                if finished:
                    return
                done.wait(0.5)

    thread = threading.Thread(target=relay, name="cogito-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=5)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        Path(log_path).unlink(missing_ok=True)


def children_cpu_s() -> float | None:
    """CPU seconds used so far by this process's finished children (each notebook's kernel and the processes it
    started), or None where the platform does not say."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return None
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def keep_executed(partial: Path, output: Path) -> None:
    """Put the executed notebook papermill wrote (cell by cell, to `partial`) in place, whole: a copy cut short by
    a full disk is dropped, so the previous executed notebook, if any, stays as it was."""
    try:
        json.loads(partial.read_text(encoding="utf-8"))
        os.replace(partial, output)
    except (OSError, ValueError):
        with contextlib.suppress(OSError):
            partial.unlink()


def kernel_config():
    """The kernel manager's settings: CurveZMQ encryption of the kernel's sockets when pyzmq and the kernel
    support it (the kernel then has no reason to warn that it runs over TCP in plain text)."""
    from traitlets.config import Config

    config = Config()
    try:
        import zmq

        if zmq.has("curve"):
            config.KernelManager.transport_encryption = "auto"
    except ImportError:  # pragma: no cover - jupyter_client needs pyzmq
        pass
    return config


def run_notebook(notebook: Path, run_dir: Path, parameters: dict, *, kernel: str = KERNEL_NAME,
                 progress: bool = True) -> NotebookResult:
    """Execute one notebook with papermill into `run_dir`; raise RunError naming the failing cell."""
    import papermill as pm

    output = run_dir / notebook.name
    partial = run_dir / f".{notebook.stem}.partial.ipynb"
    start, cpu_before = time.perf_counter(), children_cpu_s()
    try:
        with headless_kernel():
            pm.execute_notebook(str(notebook), str(partial), parameters=parameters, kernel_name=kernel,
                                cwd=str(notebook.parent), progress_bar=progress, log_output=False,
                                config=kernel_config())
        keep_executed(partial, output)
    except Exception as err:  # PapermillExecutionError, NoSuchKernel, OSError, ...
        keep_executed(partial, output)
        wall_s = time.perf_counter() - start
        with contextlib.suppress(OSError):  # a full or read-only disk: the message below says so
            merge_run_metrics(run_dir, "notebooks", notebook.stem,
                              {"status": "failed", "wall_s": round(wall_s, 2), "error": f"{type(err).__name__}"},
                              replace=True)
        if type(err).__name__ == "NoSuchKernel":
            raise RunError(f"kernel '{kernel}' is not registered: run `make venv`") from err
        problem = disk_problem(err, run_dir) or _disk_problem_in_notebook(err, run_dir)
        if problem is not None:
            raise RunError(f"{notebook.name}: {problem}") from err
        raise RunError(_failure_message(notebook, output, err)) from err
    wall_s = time.perf_counter() - start
    cpu_after = children_cpu_s()
    timing = {"wall_s": round(wall_s, 2)}
    if cpu_before is not None and cpu_after is not None:
        timing["cpu_s"] = round(cpu_after - cpu_before, 2)  # the kernel's CPU time: what a busy machine does not inflate
    merge_run_metrics(run_dir, "notebooks", notebook.stem, {"status": "ok", **timing, "executed": output.name},
                      replace=True)
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


def run(profile_name: str | None, run_dir: str | Path | None = None, only: Sequence[str] | None = None,
        params: dict | None = None, *, config: str | Path | None = None, sets: Sequence[str] | dict = (),
        kernel: str = KERNEL_NAME, progress: bool = True, notebook_dir: Path = NOTEBOOK_DIR) -> list[NotebookResult]:
    """Run the selected notebooks in order under the resolved configuration (`profile_name`, the `config` file,
    the `sets` overrides); return their wall times. Every key, type and earlier stage's input is checked before
    anything runs."""
    run_config, profile = resolve_config(profile_name, config, sets)
    run_path = resolve_run_dir(profile, run_dir or run_config.run_dir)
    notebooks = select_notebooks(discover_notebooks(notebook_dir), only)
    params = check_params(dict(params or {}), notebooks, profile.keys())
    check_inputs(profile, run_path, notebooks)
    check_run_dir_writable(run_path)
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
    stages = [notebook.stem for notebook in notebooks]
    inputs = check_stage_inputs(profile, run_path, stages)
    if inputs:
        print("inputs from earlier stages (in the run dir, or written by a notebook that runs before):")
        for check in inputs:
            print(f"  {check.line()}")
    checks = checks + inputs
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


def _run_path(args: argparse.Namespace) -> Path:
    """The run dir this command line writes, as `run` resolves it."""
    run_config, profile = resolve_config(args.profile, args.config, args.sets)
    return resolve_run_dir(profile, args.run_dir or run_config.run_dir)


def _main(args: argparse.Namespace) -> int:
    if args.plan:
        return 0 if plan(args.profile, args.run_dir, args.only, config=args.config, sets=args.sets) else 1
    params = dict(parse_param(p) for p in args.param)
    start = time.perf_counter()
    try:
        results = run(args.profile, args.run_dir, args.only, params, config=args.config, sets=args.sets,
                      kernel=args.kernel, progress=not args.no_progress and sys.stderr.isatty())
    except OSError as err:  # the run dir's disk (read-only, full) outside a notebook: what to do about the run dir
        problem = disk_problem(err, _run_path(args))
        if problem is None:
            raise
        raise RunError(problem) from err
    where = results[0].output.parent if results else _run_path(args)
    print(f"{len(results)} notebook(s) in {time.perf_counter() - start:.1f} s; metrics in {where}/metrics.json")
    return 0


if __name__ == "__main__":
    from cogito_lib.run import main as _module_main  # the kit's errors keep their module (one-line messages)

    sys.exit(_module_main())
