#!/usr/bin/env bash
# The checks a release needs beyond the test suite; run by scripts/test.sh (so by CI) after bootstrap.sh
# has installed the "release" extra. Each fails the run on a finding:
#   bandit     over hub/ and both plugins' packages; a finding is waived only where it occurs, with
#              `# nosec BXXX` and the reason on the same or the line above ([tool.bandit] in pyproject.toml
#              skips B101, with its reason there)
#   pip-audit  over the installed environment, against PyPI's vulnerability data (scripts/pip_audit_here.py);
#              a finding is waived only by an --ignore-vuln line below, with its reason beside it
#   hadolint   over the Dockerfile (no Docker engine runs in CI, so the image itself is not built)
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python

echo "== bandit"
# bandit warns "nosec encountered ... but no failed test" for a waived line that holds an f-string (it visits
# the string's parts too); that warning says nothing about the code, so it is filtered out
.venv/bin/bandit -c pyproject.toml -q -r hub plugins/shure/wmhub_shure plugins/sennheiser/wmhub_sennheiser \
  2> >(grep -v 'nosec encountered' >&2)

echo "== pip-audit"
accepted=(
  # --ignore-vuln <ID>  # <why this finding does not apply to wmhub>
)
# the audit first proves it can see: a release with known, unfixed vulnerabilities must be reported
canary=$(mktemp)
trap 'rm -f "$canary"' EXIT
echo "pycrypto==2.6.1" >"$canary"
seen=$($py scripts/pip_audit_here.py --progress-spinner off --no-deps --disable-pip -r "$canary" 2>&1 || true)
if ! grep -q PYSEC-2018-97 <<<"$seen"; then
  echo "pip-audit did not report pycrypto 2.6.1's known vulnerability: it cannot reach PyPI's data" >&2
  exit 1
fi
# the three wmhub distributions are this source tree (editable), not releases PyPI knows; a dependency held
# below its latest release by another's pin is listed as "could not be audited" where the index serves only
# project documents (see scripts/pip_audit_here.py)
$py scripts/pip_audit_here.py --progress-spinner off --skip-editable "${accepted[@]}"

echo "== hadolint"
.venv/bin/hadolint Dockerfile
echo "release checks passed"
