#!/usr/bin/env bash
# The whole test suite on every supported Python (3.11, 3.12, 3.13), one after the other, each in its own
# venv (.venv-3.XX). Run as `scripts/test.sh --matrix [pytest args]`. Writes what each interpreter did to
# docs/python-matrix.md and fails when any interpreter is missing or any run fails.
# An interpreter is `python3.XX` on PATH, else the newest pyenv build of it ($PYENV_ROOT/versions/3.XX.*).
set -euo pipefail
cd "$(dirname "$0")/.."
versions=(3.11 3.12 3.13)
results=docs/python-matrix.md

find_python() {
  local version=$1 candidate
  if command -v "python$version" >/dev/null && "python$version" -c '' 2>/dev/null; then
    command -v "python$version"
    return
  fi
  for candidate in $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}/versions/$version".* 2>/dev/null | sort -V -r); do
    if [ -x "$candidate/bin/python" ]; then
      echo "$candidate/bin/python"
      return
    fi
  done
  return 1
}

# read before the results file is rewritten: its own truncation would count as a local change
commit="$(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo ' with local changes')"
scripts/install-system-deps.sh
rows=()
failed=0
started=$SECONDS
for version in "${versions[@]}"; do
  if ! python=$(find_python "$version"); then
    echo "== Python $version: not found (install it, e.g. pyenv install $version)" >&2
    rows+=("| $version | not found | | |")
    failed=1
    continue
  fi
  echo "== Python $version ($python)"
  begun=$SECONDS
  PYTHON=$python WMHUB_VENV=".venv-$version" scripts/bootstrap.sh test
  log=$(mktemp)
  status=0
  # as scripts/test.sh runs it: the workers, then the tests marked alone one at a time (exit 5: none selected)
  ".venv-$version/bin/pytest" -p no:cacheprovider -q -n "${TEST_WORKERS:-3}" --dist loadgroup -m "not alone" "$@" \
    2>&1 | tee "$log" || status=$?
  alone_status=0
  ".venv-$version/bin/pytest" -p no:cacheprovider -q -m alone "$@" 2>&1 | tee -a "$log" || alone_status=$?
  [ "$alone_status" = 5 ] || [ "$status" != 0 ] || status=$alone_status
  # pytest's closing count lines only: a traceback line that mentions "error" must not pass for one
  summary=$(grep -E '^(=+ )?[0-9]+ (passed|failed|errors?)\b.* in [0-9.]+s' "$log" | tr -d '=' | sed 's/^ *//;s/ *$//' \
    | paste -sd ';' | sed 's/;/; alone: /')
  rm -f "$log"
  [ "$status" = 0 ] || failed=1
  rows+=("| $version | $("$python" -c 'import platform; print(platform.python_version())') | ${summary:-no summary (exit $status)} | $((SECONDS - begun)) s |")
done

{
  echo "# Python matrix: the last run"
  echo
  echo "Written by \`scripts/test.sh --matrix\` (scripts/matrix.sh); do not edit by hand. When to run it:"
  echo "[CONTRIBUTING.md](../CONTRIBUTING.md#python-versions)."
  echo
  echo "Run on $(date -u '+%Y-%m-%d %H:%M UTC'), commit $commit, $(nproc) cores;"
  echo "$((SECONDS - started)) s in all, installs included."
  echo
  echo "| Python | Build | pytest | Time (install + suite) |"
  echo "| --- | --- | --- | --- |"
  printf '%s\n' "${rows[@]}"
} >"$results"
cat "$results"
exit "$failed"
