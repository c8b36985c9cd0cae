#!/usr/bin/env bash
# Install everything (venv, hub, plugins, test tools, Mosquitto and Chromium where missing) and run every check:
# ruff, mypy --strict, then the whole test suite with coverage. Used as-is by CI (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh test
scripts/install-system-deps.sh
echo "== ruff"
.venv/bin/ruff check hub plugins tests bench conftest.py
.venv/bin/ruff format --check hub plugins tests bench conftest.py
echo "== mypy --strict"
.venv/bin/mypy hub plugins/shure/wmhub_shure plugins/sennheiser/wmhub_sennheiser
echo "== pytest"
# coverage settings (sources, branches, subprocesses) live in pyproject.toml; the floor is 90% of lines
.venv/bin/pytest -p no:cacheprovider --cov --cov-report=term --cov-fail-under=90 "$@"
