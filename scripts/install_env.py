"""Install the kit's pinned stack into the running interpreter's environment with a small disk peak.

`pip install -e .` in one call holds every downloaded wheel while it installs them: for this stack that is ~4 GB
of torch/CUDA wheels on top of the ~7.6 GB they become, a disk peak of 11.6 GB (measured on x86_64 Linux). Here pip first resolves the whole set
without installing (`--dry-run --report`), then installs the heavy packages (torch, its CUDA libraries, triton)
one call each at exactly the resolved versions, so only one heavy wheel is on disk beside the installed ones, and
finally installs the project with its remaining dependencies (the heavy ones are then already satisfied).
Measured the same way: a 7.7 GB peak, 131 s instead of 107 s (the dry run fetches the wheels once more).

Usage (the Makefile does this): .venv/bin/python scripts/install_env.py [PROJECT_DIR]
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HEAVY = re.compile(r"^(torch|torchaudio|torchvision|triton|nvidia-.+)$")
# the measured peak (7.7 GB) rounded up; the dry run's temporary wheels (~4 GB) come and go before it.
# Below this the install may still fit, so this only warns.
EXPECTED_GB = 8.0


def pip(*args: str) -> None:
    command = [sys.executable, "-m", "pip", *args]
    result = subprocess.run(command)
    if result.returncode:
        raise SystemExit(f"error: `{' '.join(command[2:])}` failed (exit {result.returncode}); see pip's message "
                         f"above. If it says 'No space left on device', free at least {EXPECTED_GB:.0f} GB on "
                         f"{sys.prefix} (an old clone's .venv: `make distclean` there) and rerun make.")


def resolve(project: Path) -> list[tuple[str, str]]:
    """(name, version) of everything `pip install -e project` would install, in pip's order."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        pip("install", "-q", "--dry-run", "--ignore-installed", "--report", str(report), "-e", str(project))
        items = json.loads(report.read_text())["install"]
    return [(item["metadata"]["name"], item["metadata"]["version"]) for item in items]


def main(argv: list[str]) -> None:
    project = Path(argv[0] if argv else Path(__file__).resolve().parent.parent)
    free_gb = shutil.disk_usage(sys.prefix).free / 1e9
    if free_gb < EXPECTED_GB:
        print(f"warning: {free_gb:.1f} GB free on the disk of {sys.prefix}; the install needs about "
              f"{EXPECTED_GB:.0f} GB at its peak", file=sys.stderr)
    heavy = [(name, version) for name, version in resolve(project) if HEAVY.match(name.lower())]
    for i, (name, version) in enumerate(heavy, 1):
        print(f"[{i}/{len(heavy)}] {name}=={version}", flush=True)
        pip("install", "-q", "--no-cache-dir", "--no-deps", f"{name}=={version}")
    pip("install", "-q", "--no-cache-dir", "-e", str(project))


if __name__ == "__main__":
    main(sys.argv[1:])
