#!/usr/bin/env bash
# Create .venv (if needed) and install the hub and both vendor plugins into it, editable.
# Usage: scripts/bootstrap.sh [extras]   (extras "test" also installs the test tools; "test,release" the
# release checks too). PYTHON picks the interpreter, WMHUB_VENV another venv directory (scripts/matrix.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "wmhub needs Python 3.11 or newer" >&2; exit 1; }
venv=${WMHUB_VENV:-.venv}
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
extra=${1:-}
core="."
[ -n "$extra" ] && core=".[$extra]"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip "setuptools>=77" 2>&1 | grep -v '^WARNING: Location' || true
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$core" -e plugins/shure -e plugins/sennheiser 2>&1 \
  | grep -v '^WARNING: Location' || true
"$venv/bin/python" -c 'import hub, wmhub_shure, wmhub_sennheiser' || { echo "installation failed" >&2; exit 1; }
