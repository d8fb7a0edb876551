"""Every notebook follows the kit's conventions (docs/contributing.md): checked on the committed sources."""
import ast
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb")) + sorted((ROOT / "notebooks" / "solutions").glob("*.ipynb"))
STAGES = [p for p in NOTEBOOKS if p.name != "template.ipynb" and p.parent.name == "notebooks"]


def _cells(path):
    nb = json.loads(path.read_text())
    return nb, nb["cells"]


def _source(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def test_there_is_a_template_and_stage_notebooks():
    assert (ROOT / "notebooks" / "template.ipynb").exists()
    assert {p.name[:2] for p in STAGES} >= {"00", "02"}


@pytest.mark.parametrize("path", STAGES, ids=lambda p: p.name)
def test_stage_notebooks_are_named_nn_slug(path):
    assert re.fullmatch(r"\d\d-[a-z0-9]+(-[a-z0-9]+)*\.ipynb", path.name)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs(path):
    nb, cells = _cells(path)
    for cell in cells:
        if cell["cell_type"] == "code":
            assert not cell.get("outputs"), f"{path.name}: outputs committed"
            assert cell.get("execution_count") is None, f"{path.name}: execution counts committed"
    assert nb["metadata"]["kernelspec"]["name"] == "cogito"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_exactly_one_parameters_cell_of_flat_typed_literals_with_comments(path):
    _, cells = _cells(path)
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: {len(tagged)} parameters cells"
    source = _source(tagged[0])
    names = []
    for node in ast.parse(source).body:
        assert isinstance(node, ast.AnnAssign), f"{path.name}: parameters must be `NAME: type = literal`"
        ast.literal_eval(node.value)  # a literal, no computation
        names.append(node.target.id)
    for line in source.splitlines():
        if line.strip():
            assert re.search(r"\S\s+#\s*\S", line), f"{path.name}: parameter without a comment: {line}"
            assert line.count("=") == 1, f"{path.name}: papermill cannot parse a second '=' in: {line}"
            assert "|" not in line.split("#")[0], f"{path.name}: papermill cannot parse union types: {line}"
    assert names[:2] == ["PROFILE", "RUN_DIR"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_first_code_cell_prints_environment_and_last_records_metrics(path):
    _, cells = _cells(path)
    code = [c for c in cells if c["cell_type"] == "code"]
    assert "show_environment()" in _source(code[0])
    assert "record_metrics(" in _source(code[-1])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_installs_or_absolute_paths_in_cells(path):
    _, cells = _cells(path)
    for cell in cells:
        source = _source(cell)
        if cell["cell_type"] == "code":
            assert "pip install" not in source and not re.search(r"['\"]/(home|work|root|Users)/", source)
