"""The papermill runner: order, injection, metrics merge, failure reporting and --plan."""
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from cogito_lib import run as runner
from cogito_lib.config import ConfigError
from cogito_lib.metrics import load_run_metrics

ROOT = Path(__file__).resolve().parents[1]


def _notebook(path, *cells):
    params = new_code_cell('PROFILE: str = "mini"  # profile\nRUN_DIR: str = ""  # run dir\nX: int = 1  # x')
    params.metadata["tags"] = ["parameters"]
    nb = new_notebook(cells=[new_code_cell("print('env')"), params] + [new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "cogito", "display_name": "cogito", "language": "python"}
    nbformat.write(nb, path)


@pytest.fixture
def notebook_dir(tmp_path):
    folder = tmp_path / "nbs"
    folder.mkdir()
    record = ("from cogito_lib.metrics import record_metrics\n"
              "record_metrics(RUN_DIR, '{stage}', {{'profile': PROFILE, 'x': X}})")
    _notebook(folder / "00-first.ipynb", record.format(stage="00-first"))
    _notebook(folder / "01-second.ipynb", record.format(stage="01-second"))
    _notebook(folder / "02-broken.ipynb", "a = 1", "raise ValueError('bad input in cell')")
    (folder / "template.ipynb").write_text((folder / "00-first.ipynb").read_text())
    return folder


def test_discovery_orders_stage_notebooks_and_skips_the_template(notebook_dir):
    names = [p.name for p in runner.discover_notebooks(notebook_dir)]
    assert names == ["00-first.ipynb", "01-second.ipynb", "02-broken.ipynb"]
    assert [p.name for p in runner.select_notebooks(runner.discover_notebooks(notebook_dir), ["1"])] == \
        ["01-second.ipynb"]
    with pytest.raises(runner.RunError, match="no such notebook"):
        runner.select_notebooks(runner.discover_notebooks(notebook_dir), ["07"])


def test_parse_param():
    assert runner.parse_param("SEED=3") == ("SEED", 3)
    assert runner.parse_param("NAME=abc") == ("NAME", "abc")
    with pytest.raises(runner.RunError, match="KEY=VALUE"):
        runner.parse_param("SEED")


def test_run_injects_parameters_and_merges_metrics(notebook_dir, tmp_path):
    run_dir = tmp_path / "run"
    results = runner.run("tiny", run_dir, only=["00", "01"], params={"X": 7}, notebook_dir=notebook_dir,
                         progress=False)
    assert [r.stage for r in results] == ["00-first", "01-second"]
    metrics = load_run_metrics(run_dir)
    assert metrics["stages"]["00-first"] == {"profile": "tiny", "x": 7}
    assert metrics["notebooks"]["01-second"]["status"] == "ok"
    assert metrics["notebooks"]["01-second"]["wall_s"] > 0
    assert (run_dir / "00-first.ipynb").exists() and (run_dir / "profile.json").exists()


def test_unknown_param_is_rejected_before_running(notebook_dir, tmp_path):
    with pytest.raises(runner.RunError, match="no selected notebook has a parameter named NOPE"):
        runner.run("tiny", tmp_path / "run", params={"NOPE": 1}, notebook_dir=notebook_dir)
    assert not (tmp_path / "run").exists()


def test_failure_names_the_notebook_and_cell_and_keeps_earlier_results(notebook_dir, tmp_path):
    run_dir = tmp_path / "run"
    with pytest.raises(runner.RunError) as err:
        runner.run("tiny", run_dir, notebook_dir=notebook_dir, progress=False)
    message = str(err.value)
    assert "02-broken.ipynb failed in cell" in message and "ValueError: bad input in cell" in message
    metrics = load_run_metrics(run_dir)
    assert metrics["notebooks"]["02-broken"]["status"] == "failed"
    assert metrics["stages"]["01-second"]["x"] == 1  # earlier notebooks' results are kept


def test_config_and_set_reach_every_notebook_through_config(notebook_dir, tmp_path):
    from cogito_lib.config import read_config_file

    params = new_code_cell('PROFILE: str = "mini"  # profile\nRUN_DIR: str = ""  # run dir\n'
                           'CONFIG: str = ""  # run configuration')
    params.metadata["tags"] = ["parameters"]
    body = new_code_cell("from cogito_lib.notebook import setup_stage\n"
                         "from cogito_lib.metrics import record_metrics\n"
                         "profile, run_dir, _ = setup_stage(PROFILE, RUN_DIR, '03-configured', config=CONFIG)\n"
                         "record_metrics(run_dir, '03-configured', {'samples': profile.think.num_samples, "
                         "'device': profile.models.device, 'config': CONFIG})")
    nb = new_notebook(cells=[params, body])
    nb.metadata["kernelspec"] = {"name": "cogito", "display_name": "cogito", "language": "python"}
    nbformat.write(nb, notebook_dir / "03-configured.ipynb")
    config = tmp_path / "run.toml"
    config.write_text(f'profile = "tiny"\nrun_dir = "{tmp_path / "from-file"}"\n[think]\nnum_samples = 5\n')
    runner.run(None, only=["03"], config=config, sets=["models.device=cuda"], notebook_dir=notebook_dir,
               progress=False)
    run_dir = tmp_path / "from-file"  # the file's run_dir
    stage = load_run_metrics(run_dir)["stages"]["03-configured"]
    assert stage == {"samples": 5, "device": "cuda", "config": str(run_dir / "config.toml")}
    resolved = read_config_file(run_dir / "config.toml")
    assert resolved.profile == "tiny" and resolved.overrides == {"models.device": "cuda", "think.num_samples": 5}


def test_a_bad_config_or_a_profile_key_as_param_fails_before_running(notebook_dir, tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("[think]\nnum_samples = \"many\"\n")
    with pytest.raises(ConfigError, match=r"bad.toml: think.num_samples must be int"):
        runner.run(None, tmp_path / "run", config=config, notebook_dir=notebook_dir)
    with pytest.raises(runner.RunError, match=r"models.base is a profile key: pass it with --set models.base="):
        runner.run("tiny", tmp_path / "run", params={"models.base": "/x"}, notebook_dir=notebook_dir)
    assert not (tmp_path / "run").exists()


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "cogito_lib.run", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def test_plan_for_paper_reports_what_is_missing_without_running(tmp_path):
    proc = _cli("--profile", "paper", "--plan", "--run-dir", str(tmp_path / "p"))
    assert proc.returncode == 1
    out = proc.stdout
    assert "would run:" in out and "02-data-collection.ipynb" in out
    assert "[MISSING] GPU" in out
    assert "Qwen/Qwen3-Omni-30B-A3B-Thinking not found locally" in out
    assert "hf download Qwen/Qwen3-Omni-30B-A3B-Thinking --local-dir" in out and "huggingface-cli" not in out
    assert "[MISSING] base server: no server for Qwen/Qwen3-Omni-30B-A3B-Thinking" in out
    assert "seed pool" in out and "[missing, optional] rubric server" in out
    assert "export COGITO_AUDIOSET_ROOT=" in out
    assert not (tmp_path / "p").exists()


def test_plan_for_tiny_passes_on_this_machine():
    proc = _cli("--profile", "tiny", "--plan")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "all prerequisites present" in proc.stdout


def test_bad_profile_fails_with_one_message():
    proc = _cli("--profile", "huge", "--plan")
    assert proc.returncode == 1
    assert proc.stderr.strip() == "error: unknown profile 'huge': allowed profiles are tiny, mini, paper"
