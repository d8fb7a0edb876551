#!/usr/bin/env bash
# A trainer's pinned environment for CPU checks, built in minutes: envs/NAME/requirements.txt (the engine lock,
# every package at an exact version) installed into DIR, except the heavy torch/CUDA wheels (torch, torchvision,
# torchaudio, torchcodec, triton, nvidia-*) that the kit's own venv already holds at the very version the lock
# pins: those are linked from it instead of downloaded again. Whatever the kit has at another version (LLaMA-Factory's
# torch 2.8) is installed from the lock like everything else. A GPU node installs the whole lock instead
# (envs/README.md); this is what the recipe tests use on a CPU (tests/test_recipes.py reads COGITO_MS_SWIFT_ENV /
# COGITO_LLAMAFACTORY_ENV, or envs/.ms-swift, envs/.llamafactory).
#
#   scripts/trainer_env_cpu.sh ms-swift     /tmp/cogito-envs/ms-swift
#   scripts/trainer_env_cpu.sh llamafactory /tmp/cogito-envs/llamafactory
#   COGITO_MS_SWIFT_ENV=/tmp/cogito-envs/ms-swift .venv/bin/python -m pytest tests/test_recipes.py
#
# Needs network (PyPI) and python3.11 (the locks' interpreter); never part of `make test`. Nothing is installed
# into the kit's venv: the new venv only reads the linked packages.
set -euo pipefail

name=${1:?usage: scripts/trainer_env_cpu.sh NAME DIR   (NAME: a folder under envs/ with a requirements.txt)}
dest=${2:?usage: scripts/trainer_env_cpu.sh NAME DIR}
root=$(cd "$(dirname "$0")/.." && pwd)
lock="$root/envs/$name/requirements.txt"
kit=${KIT_VENV:-$root/.venv}
PYTHON=${PYTHON:-python3.11}
[ -f "$lock" ] || { echo "no lock $lock (envs/$name)" >&2; exit 2; }
[ -x "$kit/bin/python" ] || { echo "no kit venv at $kit (run 'make venv' or set KIT_VENV)" >&2; exit 2; }

"$PYTHON" -m venv "$dest"
site=$("$dest/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
links="$dest/kit-linked"
mkdir -p "$links"
# link the heavy packages the kit has at the lock's version; write the rest of the lock to install
"$kit/bin/python" - "$lock" "$links" "$dest/requirements-to-install.txt" <<'EOF'
import importlib.metadata as md, re, sys
from pathlib import Path

lock, links, rest = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
heavy = re.compile(r"^(torch|torchvision|torchaudio|torchcodec|triton|nvidia-[a-z0-9-]+)$")
site = Path(md.distribution("torch").locate_file(""))
install, linked = [], []
for line in open(lock):
    pin = line.strip()
    if not pin or pin.startswith("#"):
        continue
    name, _, version = pin.partition("==")
    try:
        have = md.distribution(name)
    except md.PackageNotFoundError:
        have = None
    if not heavy.match(name.lower()) or have is None or have.version.split("+")[0] != version:
        install.append(pin)
        continue
    tops = set()
    for f in have.files or []:
        parts = Path(f).parts
        if parts and parts[0] != "..":
            tops.add(parts[:2] if parts[0] == "nvidia" and len(parts) > 2 else parts[:1])
    for top in tops:
        target, link = site.joinpath(*top), links.joinpath(*top)
        link.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() and not link.exists():
            link.symlink_to(target)
    linked.append(pin)
Path(rest).write_text("".join(p + "\n" for p in install))
print(f"linked from the kit: {len(linked)} ({', '.join(p for p in linked if not p.startswith('nvidia'))}"
      f" + {sum(p.startswith('nvidia') for p in linked)} nvidia-*); to install: {len(install)}")
EOF
echo "$links" > "$site/kit_linked.pth"  # after the venv's own site-packages on sys.path

"$dest/bin/python" -m pip install -q --upgrade pip
# --no-deps: the lock is complete. DeepSpeed is an sdist whose setup imports torch: it is built last, without
# build isolation, against the env's own torch (its ops compile at first use, DS_BUILD_OPS=0)
grep -v '^deepspeed==' "$dest/requirements-to-install.txt" > "$dest/wheels.txt" || true
"$dest/bin/python" -m pip install -q --no-deps -r "$dest/wheels.txt"
if grep -q '^deepspeed==' "$dest/requirements-to-install.txt"; then
  DS_BUILD_OPS=0 "$dest/bin/python" -m pip install -q --no-deps --no-build-isolation \
    "$(grep '^deepspeed==' "$dest/requirements-to-install.txt")"
fi
"$dest/bin/python" -m pip check
echo "$name: $(wc -l < "$dest/requirements-to-install.txt") packages installed in $dest, the rest linked from $kit"
