#!/bin/sh
# Writes Mosquitto's password file, the path given as $1, from WMHUB_MQTT_PASSWORD and
# HOMEASSISTANT_MQTT_PASSWORD (entrypoint.sh, at every start; a test runs it as it is).
set -eu
passwords=${1:?usage: passwords.sh PASSWORD_FILE}
umask 077
rm -f "$passwords"
mosquitto_passwd -c -b "$passwords" wmhub "${WMHUB_MQTT_PASSWORD:?set WMHUB_MQTT_PASSWORD in .env}"
mosquitto_passwd -b "$passwords" homeassistant "${HOMEASSISTANT_MQTT_PASSWORD:?set HOMEASSISTANT_MQTT_PASSWORD in .env}"
chown mosquitto:mosquitto "$passwords" 2>/dev/null || true
