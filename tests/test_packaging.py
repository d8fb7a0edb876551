"""The conda file, pyproject and Makefile describe the same environment and entry points."""
import re
import tomllib
from pathlib import Path

import yaml

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


def test_gpu_extras_exist():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert {"vllm", "deepspeed"} <= set(extras)


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
