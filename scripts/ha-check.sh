#!/usr/bin/env bash
# The demo against a real Home Assistant (docs/mqtt.md, "Checked against Home Assistant").
# Usage: scripts/ha-check.sh [--keep]
# Installs Home Assistant into its own venv on Python 3.13 (once), then runs scripts/ha_check.py, which
# starts Mosquitto and Home Assistant on loopback, sets MQTT up through the config flow, runs the demo three
# times and checks what Home Assistant shows. The output goes to the terminal and docs/ha-check-output.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
ha_python=${HA_PYTHON:-/root/.pyenv/versions/3.13.0/bin/python}
ha_venv=${HA_VENV:-.ha-check/venv}
ha_version=${HA_VERSION:-2025.4.4}
[ -x .venv/bin/python ] || scripts/bootstrap.sh
if [ ! -x "$ha_venv/bin/hass" ]; then
  echo "installing homeassistant==$ha_version into $ha_venv (a few minutes, once)"
  "$ha_python" -m venv "$ha_venv"
  # paho-mqtt is what the MQTT integration asks for; installed now so its config flow needs no download
  "$ha_venv/bin/pip" install --quiet --disable-pip-version-check "homeassistant==$ha_version" "paho-mqtt==2.1.0"
fi
.venv/bin/python scripts/ha_check.py --hass "$ha_venv/bin/hass" "$@" 2>&1 | tee docs/ha-check-output.txt
exit "${PIPESTATUS[0]}"
