#!/usr/bin/env bash
# System packages the tests need: Mosquitto and RabbitMQ (tests start their own brokers and nodes; the
# package's own system node is never used), Chromium (board tests) and libfaketime (a hub whose wall clock
# is stepped: tests/test_store_clock_steps.py).
# Idempotent; installs only what is missing, and only where apt-get is available and we are root.
set -euo pipefail
missing=()
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || command -v rabbitmq-server >/dev/null || missing+=(rabbitmq-server)
compgen -G '/usr/lib/*/faketime/libfaketime.so.1' >/dev/null || missing+=(faketime)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing ${missing[*]}"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "missing system packages: ${missing[*]} (install them with your package manager)" >&2
  [ "${CI:-}" = "true" ] && exit 1
fi
