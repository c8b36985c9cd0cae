#!/usr/bin/env bash
# Instructions per sample on the SAMPLE path (bench/sample_path.py), counted by callgrind: the total for
# N ticks minus the total for none (start-up, imports, building the fleet). Unlike CPU time it does not
# move with the machine's load or speed, so a change can be compared before and after on a busy machine.
# Usage: bench/instructions.sh [receivers] [ticks]    (about a minute at the defaults)
set -euo pipefail
cd "$(dirname "$0")/.."
receivers=${1:-100}
ticks=${2:-120}
python=${PYTHON:-.venv/bin/python}
run() {
    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        "$python" -m bench.sample_path --receivers "$receivers" --ticks "$1" 2>&1
}
idle=$(run 0 | awk '/Collected/ {print $4}')
busy_output=$(run "$ticks")
busy=$(awk '/Collected/ {print $4}' <<<"$busy_output")
samples=$(awk '/^samples/ {print $2}' <<<"$busy_output")
echo "$receivers receivers, $samples samples: $(( (busy - idle) / samples )) instructions per sample"
