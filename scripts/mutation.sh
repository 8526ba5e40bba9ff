#!/usr/bin/env bash
# Mutation testing of cnnbench's core modules with mutmut (not part of CI: hours on
# 2 cores; mutation_sync.py first checks that the suite passes in mutants/ when mutmut
# will make a mutated file again). Each mutant is a small change to the code (a flipped comparison, a changed
# constant, a removed call); a good test suite fails on it ("killed"). The modules are listed
# under [tool.mutmut] only_mutate in pyproject.toml.
#
#   ./scripts/mutation.sh                      # all mutants of the core modules, then the score
#   ./scripts/mutation.sh --continue           # only the mutants not tried yet, and those of
#                                              # functions changed since (results kept in mutants/)
#   ./scripts/mutation.sh "cnnbench.data.*"    # these mutants again (mutmut's names, globs),
#                                              # added to the results of earlier runs
#   ./scripts/mutation.sh --report             # only re-write the score from the last run
#
# Writes docs/mutation-score.json and the table in docs/testing.md; the run's log is
# logs/mutmut.log, the mutants (inspect one with `.venv/bin/mutmut show NAME`) are in mutants/.
set -euo pipefail
source "$(dirname "$0")/ensure-venv.sh"
cd "$REPO"
if ! "$VENV/bin/python" -c "import mutmut" 2>/dev/null; then
  echo "[setup] installing mutmut (the 'mutation' extra of pyproject.toml) into .venv" >&2
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q -c "$REPO/constraints.txt" -e "$REPO[test,mutation]" >&2
fi
if [ "${1:-}" != "--report" ]; then
  mkdir -p logs
  if [ "${1:-}" = "--continue" ]; then
    shift
  elif [ $# -eq 0 ]; then
    rm -rf mutants  # a fresh copy of src/ and tests/: results of an older tree are not reused
  fi
  if [ -d mutants ]; then
    # mutmut copies src/ and tests/ only once and re-makes only the mutated files whose
    # source changed (resetting the changed functions' results): bring the rest up to date
    "$VENV/bin/python" scripts/mutation_sync.py
  fi
  echo "mutmut: running; progress in logs/mutmut.log" >&2
  commit=$(git rev-parse --short HEAD)  # the tree the mutants are made from
  start=$(date +%s)
  # mutmut exits non-zero when mutants survive; the score says how many. Do not edit src/
  # while it runs: tests that start cnnbench in a new process import the working tree. (With
  # PYTHONPATH pointing at mutants/src instead, mutmut saw few covered lines and made far
  # fewer mutants of the files it made again: 71 instead of 469 for inference.images.)
  # (through scripts/mutmut_run.py: mutmut with its max_stack_depth bug worked around)
  nice -n 10 "$VENV/bin/python" scripts/mutmut_run.py run --max-children 2 "$@" > logs/mutmut.log 2>&1 || true
  mkdir -p mutants
  echo $(( $(date +%s) - start + $(cat mutants/.wall_seconds 2>/dev/null || echo 0) )) > mutants/.wall_seconds.new
  mv mutants/.wall_seconds.new mutants/.wall_seconds
  echo "$commit" > mutants/.commit
fi
exec "$VENV/bin/python" scripts/mutation_report.py
