#!/usr/bin/env bash
# Does every engine lock still resolve? For each envs/*/requirements.txt: a throwaway venv under $TMPDIR and
# `pip install --dry-run --ignore-installed -r requirements.txt` (nothing is installed, but pip downloads each wheel
# once to read its metadata: several GB, a few minutes per environment). Prints one line per environment,
# "NAME: resolves (N packages)" or "NAME: fails: <pip's reason>", and exits 1 if any fails.
#
#   make check-envs                      # or: scripts/check_envs.sh [ENV ...]
#   PYTHON=python3.11 scripts/check_envs.sh vllm
#
# Needs network (PyPI), so it is not part of `make test`. It runs with your own pip configuration; the locks'
# headers say whether one needs PIP_CONFIG_FILE=/dev/null (none did when they were made).
set -u

PYTHON=${PYTHON:-python3.11}
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/check-envs.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

if [ $# -gt 0 ]; then
  reqs=(); for name in "$@"; do reqs+=("$root/envs/$name/requirements.txt"); done
else
  reqs=("$root"/envs/*/requirements.txt)
fi

status=0
for req in "${reqs[@]}"; do
  name=$(basename "$(dirname "$req")")
  if [ ! -f "$req" ]; then
    echo "$name: fails: no $req"; status=1; continue
  fi
  venv="$tmp/$name"
  if ! "$PYTHON" -m venv "$venv" >"$tmp/$name.venv.log" 2>&1; then
    echo "$name: fails: cannot create a venv with $PYTHON ($(tail -1 "$tmp/$name.venv.log"))"; status=1; continue
  fi
  # A current pip (the locks were made with pip 26); failing that, the venv's own pip still resolves.
  "$venv/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  log="$tmp/$name.log"
  if "$venv/bin/python" -m pip install --dry-run --ignore-installed -r "$req" >"$log" 2>&1; then
    count=$(sed -n 's/^Would install //p' "$log" | wc -w)
    echo "$name: resolves ($count packages)"
  else
    # pip's own words: its ERROR lines (minus the yanked-versions notice and the long list of versions) and, for
    # a conflict, the lines that name the conflicting requirements.
    reason=$( { grep -E '^ERROR' "$log" | grep -v 'Ignored the following yanked'
                sed -n '/The conflict is caused by:/,/^$/p' "$log"; } \
              | sed -E 's/ \(from versions: [^)]*\)//' | tr -s ' \n' ' ' | cut -c1-600)
    echo "$name: fails: ${reason:-$(tail -3 "$log" | tr -s ' \n' ' ')}"
    status=1
  fi
  rm -rf "$venv"
done
exit $status
