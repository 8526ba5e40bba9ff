#!/usr/bin/env bash
# Mutation testing of cnnbench's core modules with mutmut (not part of CI: tens of hours on
# 2 cores, so a run goes on across sessions). Each mutant is a small change to the code (a
# flipped comparison, a changed constant, a removed call); a good test suite fails on it
# ("killed"). The modules are listed under [tool.mutmut] only_mutate in pyproject.toml.
#
#   ./scripts/mutation.sh                      # go on: the verdicts saved in docs/mutation-verdicts.json
#                                              # are kept (except for functions changed since), the
#                                              # rest are tried; then the score
#   ./scripts/mutation.sh --fresh              # every mutant again, saved verdicts ignored
#   ./scripts/mutation.sh "cnnbench.data.*"    # these mutants again (mutmut's names, globs)
#   ./scripts/mutation.sh --retry              # the mutants no test detected (and none explained
#                                              # as equivalent) again (after tests
#                                              # were added: mutants/ gets today's tests first)
#   ./scripts/mutation.sh --report             # only re-write the score from the saved verdicts
#
# Stop it at any time (kill the mutmut processes); `python scripts/mutation_verdicts.py save`
# then keeps what it found (mutation.sh saves when mutmut ends by itself). Writes
# docs/mutation-verdicts.json, docs/mutation-score.json and the table in docs/testing.md; the
# run's log is logs/mutmut.log, the mutants (inspect one with `.venv/bin/mutmut show NAME`) are
# in mutants/.
set -euo pipefail
source "$(dirname "$0")/ensure-venv.sh"
cd "$REPO"
if ! "$VENV/bin/python" -c "import mutmut" 2>/dev/null; then
  echo "[setup] installing mutmut (the 'mutation' extra of pyproject.toml) into .venv" >&2
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q -c "$REPO/constraints.txt" -e "$REPO[test,mutation]" >&2
fi
if [ "${1:-}" != "--report" ]; then
  mkdir -p logs
  if [ "${1:-}" = "--retry" ]; then
    shift
    # the names are those of the mutants mutmut made here: a fresh checkout has none yet
    [ -d mutants/src ] || { echo "no mutants here yet: run ./scripts/mutation.sh first (it restores the saved verdicts and makes the mutants), then --retry" >&2; exit 2; }
    "$VENV/bin/python" scripts/mutation_sync.py  # today's tests into mutants/
    mapfile -t retry < <("$VENV/bin/python" scripts/mutation_verdicts.py undetected)
    [ ${#retry[@]} -gt 0 ] || { echo "no undetected mutants to try again" >&2; exit 0; }
    echo "mutmut: trying the ${#retry[@]} undetected mutants again" >&2
    set -- "${retry[@]}"
  elif [ "${1:-}" = "--fresh" ]; then
    shift
    rm -rf mutants
  elif [ -d mutants ]; then
    # mutmut copies src/ and tests/ only once and re-makes only the mutated files whose
    # source changed (resetting the changed functions' results): bring the rest up to date
    "$VENV/bin/python" scripts/mutation_sync.py
  else
    "$VENV/bin/python" scripts/mutation_verdicts.py restore
  fi
  echo "mutmut: running; progress in logs/mutmut.log" >&2
  commit=$(git rev-parse --short HEAD)  # the tree the mutants are made from
  mkdir -p mutants
  echo "$commit" > mutants/.commit  # kept when the run is stopped before it ends
  date +%s > mutants/.started  # mutation_verdicts.py save adds the time since to .wall_seconds
  # mutmut exits non-zero when mutants survive; the score says how many. Do not edit src/
  # while it runs: tests that start cnnbench in a new process import the working tree. (With
  # PYTHONPATH pointing at mutants/src instead, mutmut saw few covered lines and made far
  # fewer mutants of the files it made again: 71 instead of 469 for inference.images.)
  # (through scripts/mutmut_run.py: mutmut with its max_stack_depth bug worked around)
  nice -n 10 "$VENV/bin/python" scripts/mutmut_run.py run --max-children 2 "$@" > logs/mutmut.log 2>&1 || true
  failure=$(tr '\r' '\n' < logs/mutmut.log | grep -E -o "failed to collect stats|Failed to run clean test|Failed to collect list of tests" | head -1 || true)
  if [ -n "$failure" ]; then
    # mutmut hides the failing test's output (its stats run is in a fork server): show it
    echo "mutmut could not run the suite in mutants/ ($failure); the failure, run again here:" >&2
    "$VENV/bin/python" - <<'PY' >&2 || true
import subprocess, sys, tomllib
config = tomllib.load(open("pyproject.toml", "rb"))["tool"]["mutmut"]
command = [sys.executable, "-m", "pytest", *config.get("pytest_add_cli_args", []), "--tb=short",
           *config.get("pytest_add_cli_args_test_selection", ["tests/"])]
done = subprocess.run(command, cwd="mutants", capture_output=True, text=True)
print("\n".join((done.stdout + done.stderr).splitlines()[-40:]))
PY
    echo "fix that test (or leave it out under [tool.mutmut] in pyproject.toml), then run this again; no verdicts were saved" >&2
    exit 1
  fi
  "$VENV/bin/python" scripts/mutation_verdicts.py save
fi
exec "$VENV/bin/python" scripts/mutation_report.py
