"""Session settings shared by the tiers.

The nbval tier (`tests/nbval/*.ipynb`, collected because `--nbval-lax` is in the pytest options) executes every
teaching notebook under `tiny` and compares the outputs of the cells tagged `nbval-check-output` with the stored
reference outputs. Its kernels run headless (views write their static twins, as under the runner) and write to one
fresh run dir named by `COGITO_RUN_DIR`, shared by the notebooks in order. Its items carry the `notebooks` marker,
so `make test-unit` (`-m "not notebooks"`) leaves them out.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

NBVAL_DIR = Path(__file__).resolve().parent / "nbval"


def pytest_configure(config):
    config.addinivalue_line("markers", "nbval: a teaching notebook executed and compared with its reference outputs")
    if not (getattr(config.option, "nbval", False) or getattr(config.option, "nbval_lax", False)):
        return
    if not config.option.nbval_sanitize_with:
        config.option.nbval_sanitize_with = str(NBVAL_DIR / "sanitize.cfg")
    run_dir = tempfile.mkdtemp(prefix="cogito-nbval-")
    config._cogito_nbval_run_dir = run_dir
    os.environ["COGITO_RUN_DIR"] = run_dir  # inherited by the kernels nbval starts
    os.environ["COGITO_HEADLESS"] = "1"
    os.environ.pop("COGITO_START_FROM", None)


def pytest_unconfigure(config):
    run_dir = getattr(config, "_cogito_nbval_run_dir", None)
    if run_dir:
        shutil.rmtree(run_dir, ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if Path(str(item.fspath)).suffix == ".ipynb":
            item.add_marker(pytest.mark.notebooks)
            item.add_marker(pytest.mark.nbval)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """Every stage notebook run once by the runner under `tiny`: (run dir, results). Shared by the notebook tests,
    the exercise solutions and the static-site test; the tests that use it only read it, or write under
    `RUN_DIR/exercises/` as the solutions do."""
    from cogito_lib import run as runner

    run_dir = tmp_path_factory.mktemp("tiny-run")
    return run_dir, runner.run("tiny", run_dir, progress=False)
