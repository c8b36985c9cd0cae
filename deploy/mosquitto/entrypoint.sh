#!/bin/sh
# Writes Mosquitto's password file from the environment at every start (so a changed password in .env
# takes effect on restart, and no password is kept in the repository), then runs the venue config.
set -eu
sh /mosquitto/venue/passwords.sh /mosquitto/data/passwords
exec mosquitto -c /mosquitto/venue/mosquitto.conf
