#!/usr/bin/env bash
# Render and check the Helm chart with the real Helm engine (see tests/chart/test_chart.py).
#
#   bash tests/chart/run.sh            # all chart tests
#   bash tests/chart/run.sh -k webhook # extra arguments go to pytest
#
# Creates (or reuses) a virtualenv at <repo>/.venv and installs the pinned requirements from PyPI
# into it; nothing else is downloaded. Needs python3 >= 3.10 with the venv module (Debian:
# apt-get install python3-venv). Set PYTHON to pick another interpreter.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${VENV:-$repo/.venv}"
python="${PYTHON:-python3}"
req="$here/requirements.txt"

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "tests/chart/run.sh: $python is missing or older than 3.10" >&2
  exit 2
fi

# (Re)create the venv when it is missing or broken (e.g. its interpreter was removed).
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sys' 2>/dev/null; then
  rm -rf "$venv"
  if ! "$python" -m venv "$venv"; then
    echo "tests/chart/run.sh: '$python -m venv' failed; on Debian/Ubuntu: apt-get install -y python3-venv" >&2
    exit 2
  fi
fi

# Install only when the pinned requirements changed since the last successful install.
stamp="$venv/.chart-requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$req"
  echo "$want" > "$stamp"
fi

cd "$repo"
export PYTHONDONTWRITEBYTECODE=1
exec "$venv/bin/python" -m pytest -p no:cacheprovider -q "$here" "$@"
