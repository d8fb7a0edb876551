"""The kit as a course: every stage notebook teaches, its exercises have solutions that hold on a run, a run renders
to a static site that works offline, and a JupyterLab session never writes into the executed run."""
from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from cogito_lib import layout
from cogito_lib import notebook as nbmod
from cogito_lib.config import load_profile
from cogito_lib.metrics import load_run_metrics

ROOT = Path(__file__).resolve().parents[1]
STAGES = sorted((ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))
SOLUTIONS = ROOT / "notebooks" / "solutions"


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def _source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def exercises(path: Path) -> list[str]:
    """The numbered exercises of a notebook's `## Exercises` section, in order."""
    section = [_source(c) for c in _cells(path) if c["cell_type"] == "markdown" and _source(c).startswith("## Exercises")]
    assert len(section) == 1, f"{path.name}: one '## Exercises' section expected"
    return re.findall(r"^\d\. (★+) \*\*([^*]+)\*\*", section[0], flags=re.MULTILINE)


@pytest.mark.parametrize("path", STAGES, ids=lambda p: p.name)
def test_every_notebook_states_what_it_teaches_and_ends_with_graded_exercises(path):
    markdown = [_source(c) for c in _cells(path) if c["cell_type"] == "markdown"]
    assert any("**In this notebook you will**" in m and "**Before this:**" in m for m in markdown[:2]), path.name
    assert sum(m.startswith("**What to notice.**") for m in markdown) >= 2, f"{path.name}: 'What to notice' notes"
    found = exercises(path)
    assert 2 <= len(found) <= 4, f"{path.name}: {len(found)} exercises"
    stars = [len(s) for s, _ in found]
    assert stars == sorted(stars) and stars[0] == 1, f"{path.name}: exercises graded from easy up ({stars})"
    if path.name[:2] != "00":
        assert stars[-1] == 3, f"{path.name}: the last exercise is open-ended research"


@pytest.mark.parametrize("path", STAGES, ids=lambda p: p.name)
def test_every_exercise_has_its_solution_apart_from_the_student_copy(path):
    solution = SOLUTIONS / f"{path.stem}-solutions.ipynb"
    assert solution.exists(), f"{solution.relative_to(ROOT)} missing"
    cells = _cells(solution)
    headings = [_source(c).splitlines()[0] for c in cells if c["cell_type"] == "markdown"
                and _source(c).startswith("## Exercise ")]
    expected = [f"## Exercise {i} {stars} {title.rstrip('.')}" for i, (stars, title) in enumerate(exercises(path), 1)]
    assert len(headings) == len(expected) and all(h.startswith(e) for h, e in zip(headings, expected)), headings
    student = "".join(_source(c) for c in _cells(path))
    assert "**Prediction.**" not in student  # the student copy states questions, never the answers
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1 and _source(tagged[0]).splitlines()[0].startswith("PROFILE: str")
    assert "record_metrics(" in _source([c for c in cells if c["cell_type"] == "code"][-1])


def test_the_pipeline_figure_is_embedded_in_notebook_00():
    cell = next(c for c in _cells(ROOT / "notebooks" / "00-setup-and-tour.ipynb")
                if "attachment:pipeline.svg" in _source(c))
    embedded = base64.b64decode(cell["attachments"]["pipeline.svg"]["image/svg+xml"])
    assert embedded == (ROOT / "docs" / "pipeline.svg").read_bytes(), \
        "docs/pipeline.svg changed: embed it again in notebook 00's attachment"
    for path in [*STAGES, *sorted(SOLUTIONS.glob("*.ipynb"))]:
        markdown = "".join(_source(c) for c in _cells(path) if c["cell_type"] == "markdown")
        assert not re.search(r"\]\((?!https?:|attachment:|#)[^)]*\.(svg|png|jpe?g|gif)\)", markdown), path.name


# --- a JupyterLab session and the executed run --------------------------------------------------------------------

def _executed_run(root: Path) -> Path:
    """A stand-in for `runs/tiny`: stage folders 02-04 with a file each."""
    for stage in (layout.COLLECT, layout.QA, layout.COT):
        (root / stage).mkdir(parents=True)
        (root / stage / "stats.json").write_text(json.dumps({"stage": stage}))
    return root


def test_a_lab_session_writes_its_own_run_dir_and_reads_the_executed_run(tmp_path, monkeypatch):
    monkeypatch.delenv(nbmod.RUN_DIR_ENV, raising=False)
    monkeypatch.delenv(nbmod.START_FROM_ENV, raising=False)
    monkeypatch.setattr(nbmod, "REPO_ROOT", tmp_path)
    executed = _executed_run(tmp_path / "runs" / "tiny")
    before = sorted(p.relative_to(executed).as_posix() for p in executed.rglob("*"))
    profile, run_dir, stage_dir = nbmod.setup_stage("tiny", "", layout.COT)
    assert run_dir == tmp_path / "runs" / "tiny-lab" and stage_dir.is_dir() and not stage_dir.is_symlink()
    assert (run_dir / layout.QA).is_symlink() and (run_dir / layout.QA / "stats.json").exists()  # read from the run
    assert json.loads((stage_dir / "stats.json").read_text()) == {"stage": layout.COT}  # its own copy, reused
    (stage_dir / "stats.json").write_text("{}")  # the session rewrites its stage...
    (run_dir / "metrics.json").write_text("{}")
    assert json.loads((executed / layout.COT / "stats.json").read_text()) == {"stage": layout.COT}  # ...not the run's
    nbmod.setup_stage("tiny", "", layout.QA)  # a stage it only read until now becomes its own copy
    assert not (run_dir / layout.QA).is_symlink() and (run_dir / layout.COLLECT).is_symlink()
    assert sorted(p.relative_to(executed).as_posix() for p in executed.rglob("*")) == before


def test_run_dir_and_start_from_come_from_the_environment(tmp_path, monkeypatch):
    executed = _executed_run(tmp_path / "shared" / "mini")
    monkeypatch.setenv(nbmod.RUN_DIR_ENV, str(tmp_path / "home" / "run"))
    monkeypatch.setenv(nbmod.START_FROM_ENV, str(executed))
    _, run_dir, _ = nbmod.setup_stage("tiny", "", layout.AUDIT)
    assert run_dir == (tmp_path / "home" / "run").resolve()
    assert all((run_dir / s).is_symlink() for s in (layout.COLLECT, layout.QA, layout.COT))
    _, given, _ = nbmod.setup_stage("tiny", str(tmp_path / "given"), layout.AUDIT)  # the runner's RUN_DIR wins
    assert given == (tmp_path / "given").resolve() and not (given / layout.QA).exists()


def test_an_exercise_run_links_what_it_reads(tmp_path):
    executed = _executed_run(tmp_path / "run")
    scratch = nbmod.exercise_run(executed, "05-e1", (layout.COLLECT, layout.QA, layout.COT))
    assert scratch == executed / layout.EXERCISES / "05-e1"
    assert all((scratch / s).is_symlink() and (scratch / s / "stats.json").exists()
               for s in (layout.COLLECT, layout.QA, layout.COT))
    assert not (scratch / layout.AUDIT).exists()


# --- on a tiny run --------------------------------------------------------------------------------------------------

@pytest.mark.notebooks
def test_the_exercise_solutions_hold_on_a_tiny_run(tiny_run):
    from cogito_lib.solutions import discover_solutions, run_solutions

    run_dir, _ = tiny_run
    results = run_solutions("tiny", run_dir)
    assert [r.stage for r in results] == [p.stem for p in discover_solutions()]
    recorded = load_run_metrics(run_dir / layout.EXERCISES)
    for path in STAGES:
        checks = recorded["stages"][f"{path.stem}-solutions"]["checks"]
        assert checks and all(checks.values()), f"{path.stem}: {checks}"
        covered = {int(name.split(":")[0].lstrip("e")) for name in checks}
        assert covered == set(range(1, len(exercises(path)) + 1)), f"{path.stem}: every exercise checks something"
    assert not (run_dir / "metrics.json").read_text().count("-solutions")  # the run's own metrics are untouched


@pytest.mark.notebooks
def test_a_run_renders_to_a_static_site_that_works_offline(tiny_run, tmp_path):
    from cogito_lib.site import build_site

    run_dir, results = tiny_run
    index = build_site(run_dir, tmp_path / "site")
    front = index.read_text()
    for result in results:
        page = tmp_path / "site" / f"{result.stage}.html"
        assert f"href='{page.name}'" in front
        text = page.read_text()
        assert "<script src=" not in text and not re.search(r"""(src|href)=["']https?://""", text), result.stage
        assert "application/vnd.jupyter.widget" not in text
    tour = (tmp_path / "site" / "00-setup-and-tour.html").read_text()
    assert tour.count('src="data:audio/wav;base64,') == 7 and 'src="data:image/svg+xml;base64,' in tour
    assert (tmp_path / "site" / "02-data-collection.html").read_text().count('src="data:image/png;base64,') >= 5


def test_start_here_points_at_every_notebook_its_solutions_and_the_executed_run():
    text = _source(_cells(ROOT / "START-HERE.ipynb")[0])
    for path in STAGES:
        assert f"](notebooks/{path.name})" in text and f"](runs/mini/{path.name})" in text
        assert f"](notebooks/solutions/{path.stem}-solutions.ipynb)" in text
    linked = re.findall(r"\]\((notebooks/[^)]+)\)", text)
    assert linked and all((ROOT / link).exists() for link in linked)


def _cells_as_run(path: Path) -> list[tuple[str, str, bool]]:
    """(type, source, checked by nbval) of every cell but papermill's injected parameters."""
    import nbformat

    return [(c.cell_type, c.source, "nbval-check-output" in c.metadata.get("tags", []))
            for c in nbformat.read(path, as_version=4).cells
            if "injected-parameters" not in c.metadata.get("tags", [])]


def test_the_nbval_references_are_the_teaching_notebooks_as_they_are():
    """The nbval tier executes its references (`tests/nbval/`), so they must hold the teaching notebooks' current
    cells: a notebook edited (or merged) without regenerating them would be checked as it was."""
    references = ROOT / "tests" / "nbval"
    assert sorted(p.name for p in references.glob("*.ipynb")) == [p.name for p in STAGES]
    stale = [p.name for p in STAGES if _cells_as_run(p) != _cells_as_run(references / p.name)]
    assert stale == [], (f"tests/nbval/ is out of date for {', '.join(stale)}: run `make nbval-refs` "
                         "(scripts/nbval_refs.py), review `git diff tests/nbval` and commit")
