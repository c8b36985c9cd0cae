#!/usr/bin/env bash
# Debian's Chromium for the Playwright board tests (tests/browser). Idempotent: does nothing when
# /usr/bin/chromium is there. Never runs `playwright install` (no browser downloads from elsewhere).
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "chromium is missing: install Debian's 'chromium' package (apt-get install chromium)" >&2
  exit 1
fi
apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
/usr/bin/chromium --version
