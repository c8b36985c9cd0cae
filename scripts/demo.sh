#!/usr/bin/env bash
# Install everything and start the hub in demo mode: simulated receivers on loopback, embedded MQTT broker
# (on 127.0.0.1:1883, or a free port the log names when 1883 is taken), the board on http://127.0.0.1:8058/.
# Extra arguments go to `wmhub run` (`--mqtt mqtt://127.0.0.1:1883` uses a broker already running there).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/wmhub run --demo --data-dir "${WMHUB_DATA_DIR:-.wmhub-demo}" "$@"
