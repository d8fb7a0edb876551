#!/usr/bin/env bash
# A trainer's pinned environment for CPU checks, built in minutes: envs/NAME/requirements.txt (the engine lock,
# every package at an exact version) installed into DIR, except the torch stack (torch, torchvision, torchaudio,
# torchcodec, triton, nvidia-*), which is linked from the kit's own venv instead of downloaded again. The kit pins
# the very same versions as the ms-swift and LLaMA-Factory locks (torch 2.9.1, torchvision 0.24.1, torchaudio
# 2.9.1, torchcodec 0.9.1); the script checks that they agree and refuses otherwise. A GPU node installs the
# whole lock instead (envs/README.md); this is what the recipe tests use on a CPU (tests/test_recipes.py reads
# COGITO_MS_SWIFT_ENV / COGITO_LLAMAFACTORY_ENV, or envs/.ms-swift, envs/.llamafactory).
#
#   scripts/trainer_env_cpu.sh ms-swift     /tmp/cogito-envs/ms-swift
#   scripts/trainer_env_cpu.sh llamafactory /tmp/cogito-envs/llamafactory
#   COGITO_MS_SWIFT_ENV=/tmp/cogito-envs/ms-swift .venv/bin/python -m pytest tests/test_recipes.py
#
# Needs network (PyPI) and python3.11 (the locks' interpreter); never part of `make test`. Nothing is installed
# into the kit's venv: the new venv only reads the linked torch packages.
set -euo pipefail

name=${1:?usage: scripts/trainer_env_cpu.sh NAME DIR   (NAME: a folder under envs/ with a requirements.txt)}
dest=${2:?usage: scripts/trainer_env_cpu.sh NAME DIR}
root=$(cd "$(dirname "$0")/.." && pwd)
lock="$root/envs/$name/requirements.txt"
kit=${KIT_VENV:-$root/.venv}
PYTHON=${PYTHON:-python3.11}
[ -f "$lock" ] || { echo "no lock $lock (envs/$name)" >&2; exit 2; }
[ -x "$kit/bin/python" ] || { echo "no kit venv at $kit (run 'make venv' or set KIT_VENV)" >&2; exit 2; }

kit_site=$("$kit/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
stack='^(torch|torchvision|torchaudio|torchcodec|triton|nvidia-[a-z0-9-]+)=='
# the linked packages must be exactly the lock's
while IFS= read -r pin; do
  pkg=${pin%%==*}; want=${pin#*==}
  have=$("$kit/bin/python" -c "import importlib.metadata as m; print(m.version('$pkg'))" 2>/dev/null || echo none)
  [ "${have%%+*}" = "$want" ] || { echo "the kit has $pkg $have, the lock wants $want: install the full lock instead" >&2; exit 1; }
done < <(grep -E "$stack" "$lock")

"$PYTHON" -m venv "$dest"
site=$("$dest/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
links="$dest/kit-torch"
mkdir -p "$links"
for entry in "$kit_site"/{torch,torchgen,functorch,torchvision,torchvision.libs,torchaudio,torchcodec,triton,nvidia} \
             "$kit_site"/{torch,torchvision,torchaudio,torchcodec,triton,nvidia_*}-*.dist-info; do
  [ -e "$entry" ] && ln -sfn "$entry" "$links/$(basename "$entry")"
done
echo "$links" > "$site/kit_torch.pth"  # after the venv's own site-packages on sys.path

grep -vE "$stack" "$lock" | grep -vE '^\s*(#|$)' > "$dest/requirements-no-torch.txt"
"$dest/bin/python" -m pip install -q --upgrade pip
# --no-deps: the lock is complete; --no-build-isolation: sdists (deepspeed) build against the linked torch
DS_BUILD_OPS=0 "$dest/bin/python" -m pip install -q --no-deps --no-build-isolation -r "$dest/requirements-no-torch.txt"
"$dest/bin/python" -m pip check
echo "$name: $(wc -l < "$dest/requirements-no-torch.txt") packages installed in $dest, torch stack linked from $kit"
