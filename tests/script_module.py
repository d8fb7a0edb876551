"""Import a script or benchmark of the repository (not a package) as a module, for the tests that call its
functions."""
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load(relative_path: str):
    """The module at `ROOT/relative_path`, registered under its file name (dataclasses look it up there)."""
    path = ROOT / relative_path
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module
