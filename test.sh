#!/usr/bin/env bash
# One command: install (first time only) and run the test suite (CPU only, no network).
set -euo pipefail
source "$(dirname "$0")/scripts/ensure-venv.sh"
cd "$REPO"
# Byte-compile the package once: many tests start `python -m cnnbench` in a new process, and
# with PYTHONDONTWRITEBYTECODE set (as on CI machines) each would compile it all again.
"$VENV/bin/python" -m compileall -q -j 0 src >/dev/null
# Two worker processes (pytest-xdist; the tests train with one thread each): about half the
# time on 2 cores. CNNBENCH_TEST_WORKERS=0 runs them in this process. pytest keeps the test
# modules it rewrote for its assertion messages (tests/**/__pycache__) even where
# PYTHONDONTWRITEBYTECODE is set: each worker rewrote all of them on every run (about 5 s).
# The tests' temporary folders (about 2.3 GB written: checkpoints of the report networks, run
# folders) go to memory (/dev/shm) where it has room: on this project's disk that took about
# 15 s off the suite. Removed when the tests end.
args=()
if [ -d /dev/shm ] && [ "$(df --output=avail -B1G /dev/shm 2>/dev/null | tail -1 | tr -d ' ')" -ge 6 ] 2>/dev/null; then
  basetemp=$(mktemp -d /dev/shm/cnnbench-tests.XXXXXX)
  trap 'rm -rf "$basetemp"' EXIT
  args=(--basetemp "$basetemp")
fi
status=0
PYTHONDONTWRITEBYTECODE= "$VENV/bin/python" -m pytest -n "${CNNBENCH_TEST_WORKERS:-2}" --dist worksteal \
  "${args[@]}" "$@" || status=$?
exit $status
