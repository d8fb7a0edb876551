"""The conda file, pyproject and Makefile describe the same environment and entry points."""
import json
import re
import tomllib
from pathlib import Path

import yaml

from script_module import load

ROOT = Path(__file__).resolve().parents[1]


def _pins(lines):
    pins = {}
    for line in lines:
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line.strip())
        if match:
            pins[match.group(1).lower().replace("_", "-")] = match.group(2)
    return pins


def test_environment_yml_pins_the_same_packages_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    from_pyproject = _pins(project["dependencies"])
    assert len(from_pyproject) == len(project["dependencies"]), "every dependency must be pinned with =="
    assert _pins(pip_section) == from_pyproject
    assert "-e ." in pip_section


def test_gpu_extras_exist_and_vllm_is_not_one():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert "deepspeed" in extras
    # every extra is pinned, so that what was checked to resolve beside the kit's pins is what installs
    assert all("==" in dep for deps in extras.values() for dep in deps), extras
    # vLLM cannot install beside the kit's torch/transformers pins: it lives in envs/vllm and is reached over HTTP
    assert "vllm" not in extras and not any("vllm" in dep for deps in extras.values() for dep in deps)


def test_makefile_passes_config_and_set_and_runs_the_paper_smoke():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^paper-smoke:", makefile, re.M) and "scripts/paper_smoke.py" in makefile
    assert "--config $(CONFIG)" in makefile and "--set $(s)" in makefile


def test_makefile_has_the_documented_targets_and_ci_calls_make_test():
    makefile = (ROOT / "Makefile").read_text()
    for target in ("reproduce", "test", "lab", "clean"):
        assert re.search(rf"^{target}:", makefile, re.M), target
    assert "ipykernel install --sys-prefix --name cogito" in makefile
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_readme_starts_with_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    head = readme[: readme.index("## ")]
    assert "make reproduce" in head and "make test" in head


def test_installer_puts_each_heavy_wheel_in_its_own_call_at_the_resolved_version(monkeypatch, tmp_path):
    install_env = load("scripts/install_env.py")
    resolved = [("numpy", "2.4.6"), ("nvidia-cudnn-cu12", "9.10.2.21"), ("torch", "2.9.1"),
                ("transformers", "5.24.0"), ("triton", "3.5.1"), ("torchaudio", "2.9.1")]
    calls = []

    def fake_pip(*args):
        calls.append(args)
        if "--report" in args:  # the dry run: write what pip would install
            report = Path(args[args.index("--report") + 1])
            report.write_text(json.dumps({"install": [{"metadata": {"name": n, "version": v}} for n, v in resolved]}))

    monkeypatch.setattr(install_env, "pip", fake_pip)
    install_env.main([str(tmp_path)])
    assert "--dry-run" in calls[0]
    heavy = [c[-1] for c in calls[1:-1]]
    assert heavy == ["nvidia-cudnn-cu12==9.10.2.21", "torch==2.9.1", "triton==3.5.1", "torchaudio==2.9.1"]
    assert all("--no-deps" in c for c in calls[1:-1])
    assert calls[-1][-2:] == ("-e", str(tmp_path)) and "--no-deps" not in calls[-1]
    assert "scripts/install_env.py" in (ROOT / "Makefile").read_text()
