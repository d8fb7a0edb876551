"""Regenerate the nbval tier's reference outputs (`tests/nbval/NN-*.ipynb`) from a fresh `tiny` run.

    .venv/bin/python scripts/nbval_refs.py          # what `make nbval-refs` calls (about as long as a tiny run)

Every stage notebook is executed in order with papermill, headless, under the `tiny` profile, into one fresh run dir
named by `COGITO_RUN_DIR` (so the stored notebooks keep `RUN_DIR = ""` and run anywhere). The executed notebooks are
then stored without what cannot or need not be compared: images (nbval does not compare them), the bytes of
embedded audio and images (`data:...;base64,<data>`, as the tier's sanitizer writes them), widget state and
papermill's timing metadata. Which cells nbval checks is decided by the source notebooks' `nbval-check-output` tags,
which the references inherit; the sanitizer (`tests/nbval/sanitize.cfg`) masks paths, rates and memory addresses.
Review the diff before committing: a changed reference is a changed notebook output.
"""
from __future__ import annotations

import os
import re
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cogito_lib.notebook import RUN_DIR_ENV, START_FROM_ENV  # noqa: E402
from cogito_lib.run import discover_notebooks, headless_kernel, kernel_config  # noqa: E402

REFERENCES = ROOT / "tests" / "nbval"
DATA_URL = re.compile(r"data:([\w/+.-]+);base64,[A-Za-z0-9+/=]+")


def compact(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The executed notebook as the tier stores it (see the module docstring)."""
    nb.metadata.pop("widgets", None)
    nb.metadata.pop("papermill", None)
    for cell in nb.cells:
        if "injected-parameters" in cell.metadata.get("tags", []):
            cell.id = "injected-parameters"  # papermill draws a new id each time: keep the diff to real changes
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        for output in cell.get("outputs", []):
            data = output.get("data")
            if data is None:
                continue
            for mime in ("image/png", "image/jpeg", "image/svg+xml"):
                data.pop(mime, None)
            if "text/html" in data:
                data["text/html"] = DATA_URL.sub(r"data:\1;base64,<data>", "".join(data["text/html"]))
    return nb


def main() -> int:
    import papermill as pm

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cogito-nbval-refs-") as run_dir:
        os.environ[RUN_DIR_ENV] = run_dir
        os.environ.pop(START_FROM_ENV, None)
        for notebook in discover_notebooks():
            target = REFERENCES / notebook.name
            print(f"{notebook.name} ...", flush=True)
            with tempfile.TemporaryDirectory() as scratch, headless_kernel():
                executed = Path(scratch) / notebook.name
                pm.execute_notebook(str(notebook), str(executed), parameters={"PROFILE": "tiny"}, kernel_name="cogito",
                                    cwd=str(REFERENCES), progress_bar=False, config=kernel_config())
                nbformat.write(compact(nbformat.read(executed, as_version=4)), target)
            checked = sum("nbval-check-output" in c.metadata.get("tags", []) for c in nbformat.read(target, 4).cells)
            print(f"  -> {target.relative_to(ROOT)} ({checked} checked cells)", flush=True)
    print(f"references regenerated in {time.perf_counter() - started:.0f} s; review `git diff tests/nbval` and commit")
    return 0


if __name__ == "__main__":
    sys.exit(main())
