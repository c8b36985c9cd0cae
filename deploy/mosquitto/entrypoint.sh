#!/bin/sh
# Writes Mosquitto's password file from the environment at every start (so a changed password in .env
# takes effect on restart, and no password is kept in the repository), then runs the venue config.
set -eu
passwords=/mosquitto/data/passwords
umask 077
rm -f "$passwords"
mosquitto_passwd -c -b "$passwords" wmhub "${WMHUB_MQTT_PASSWORD:?set WMHUB_MQTT_PASSWORD in .env}"
mosquitto_passwd -b "$passwords" homeassistant "${HOMEASSISTANT_MQTT_PASSWORD:?set HOMEASSISTANT_MQTT_PASSWORD in .env}"
chown mosquitto:mosquitto "$passwords" 2>/dev/null || true
exec mosquitto -c /mosquitto/venue/mosquitto.conf
