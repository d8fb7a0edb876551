"""Progress bars that read well in three places: live and saved in a notebook, and in the runner's log."""
from __future__ import annotations

import pytest

from cogito_lib import progress


@pytest.fixture
def log(tmp_path, monkeypatch):
    path = tmp_path / "progress.log"
    monkeypatch.setenv(progress.LOG_ENV, str(path))
    monkeypatch.setenv(progress.EVERY_ENV, "0")  # a line at every refresh
    return path


def test_the_log_gets_a_line_per_step_with_the_time_left_and_a_last_line(log, monkeypatch):
    monkeypatch.setattr(progress, "in_kernel", lambda: False)
    bar = progress.progress_bar(total=4, desc="train self_distill", unit="step", mininterval=0)
    for _ in range(3):
        bar.update(1)
    bar.close()
    lines = log.read_text().splitlines()
    assert lines[0] == "train self_distill: 0/4 step (0%) started"
    assert [line.split(":")[1].split()[0] for line in lines[1:-1]] == ["1/4", "2/4", "3/4"]
    assert all(" left" in line and "step/s" in line for line in lines[1:-1])
    assert lines[-1].startswith("train self_distill: 3/4 step (75%) done in ")  # a loop cut short says so


def test_in_a_notebook_the_bar_is_one_line_updated_in_place_to_its_final_state(monkeypatch, tmp_path):
    import IPython.display

    shown = []

    class Handle:
        def update(self, bundle, raw):
            shown.append(("update", bundle["text/plain"]))

    def display(bundle, raw, display_id):
        shown.append(("display", bundle["text/plain"]))
        return Handle()

    monkeypatch.delenv(progress.LOG_ENV, raising=False)
    monkeypatch.setattr(progress, "in_kernel", lambda: True)
    monkeypatch.setattr(IPython.display, "display", display)
    for _ in progress.progress_bar(range(5), desc="think", unit="chunk", mininterval=0):
        pass
    assert [kind for kind, _ in shown].count("display") == 1  # one output, no widget
    assert shown[0][1].startswith("think:   0%") and shown[-1][1].startswith("think: 100%|")
    assert "5/5" in shown[-1][1]


def test_without_a_log_or_a_kernel_it_is_tqdm_on_the_terminal(capsys, monkeypatch):
    monkeypatch.delenv(progress.LOG_ENV, raising=False)
    monkeypatch.setattr(progress, "in_kernel", lambda: False)
    for _ in progress.progress_bar(range(3), desc="collect", unit="clip"):
        pass
    assert "collect: 100%" in capsys.readouterr().err


def test_durations_read_like_a_person_wrote_them():
    assert [progress.format_seconds(s) for s in (None, 42.4, 185, 3720)] == ["?", "42 s", "3 min 05 s", "1 h 02 min"]


def test_the_kits_loops_use_progress_bar_not_tqdm_directly():
    """A bare tqdm in a kernel is a widget bar that a saved notebook keeps at 0%; every loop of the kit goes through
    progress.progress_bar. The benchmark package stands alone (it imports nothing of the kit), so its one bar is
    plain tqdm and shown only on request."""
    import re
    from pathlib import Path

    package = Path(progress.__file__).parent
    direct = [str(p.relative_to(package)) for p in sorted(package.rglob("*.py"))
              if p.name != "progress.py" and p.parts[-2] != "mmar"
              and re.search(r"^\s*(from tqdm|import tqdm)", p.read_text(), flags=re.MULTILINE)]
    assert direct == []
