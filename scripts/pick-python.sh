#!/usr/bin/env bash
# Prints the Python that .venv should be made with, then why, on one line each:
#   /usr/bin/python3
#   ran a short Python probe 1.3x as fast as python3 (/root/.pyenv/versions/3.11.7/bin/python3)
# $PYTHON if set. Otherwise python3 on PATH, unless another Python >= 3.11 on this machine (on
# PATH as python3.11-3.14, or the system's /usr/bin/python3, /usr/local/bin/python3) runs Python
# code at least 10% faster. Builds of one version differ by 20% and more: pyenv's default build
# (a shared libpython, no profile-guided optimization) against a distribution's, and every
# cnnbench process, and the test suite's ~1,200 tests and ~40 subprocesses, pay it.
# Exits 2 with a one-line error when no Python >= 3.11 with venv is found, or $PYTHON is older.
set -euo pipefail
if [ -n "${PYTHON:-}" ]; then
  if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' >/dev/null 2>&1; then
    echo "cnnbench needs Python >= 3.11 (PYTHON=$PYTHON is not); set PYTHON=/path/to/python3.11 and retry." >&2
    exit 2
  fi
  echo "$PYTHON"
  echo "PYTHON is set"
  exit 0
fi

# Runs in each candidate: its own path, then the best of 7 times of a small dict/str workload.
PROBE='
import sys, time
if sys.version_info < (3, 11):
    sys.exit(1)
import ensurepip, venv  # python -m venv needs both (Debian ships them apart, as python3-venv)
class Point:
    def __init__(self, x):
        self.x = x
    def plus(self, y):
        return self.x + y
def work():  # calls, attributes, dicts, strings: what a Python program does (~15 ms)
    d = {}
    for i in range(30000):
        d[str(i)] = [Point(i).plus(i), i * 2]
    return sum(len(k) + v[1] for k, v in d.items())
times = []
for _ in range(7):
    t = time.perf_counter()
    work()
    times.append(time.perf_counter() - t)
print(sys.executable)
print(min(times))
'

first="" first_t="" best="" best_t="" seen=" "
for candidate in python3 python3.11 python3.12 python3.13 python3.14 \
                 ${CNNBENCH_SYSTEM_PYTHONS-/usr/bin/python3 /usr/local/bin/python3}; do
  command -v "$candidate" >/dev/null 2>&1 || continue
  out=$("$candidate" -I -c "$PROBE" 2>/dev/null) || continue
  exe=$(sed -n 1p <<<"$out")
  t=$(sed -n 2p <<<"$out")
  real=$(readlink -f "$exe" 2>/dev/null || echo "$exe")
  case "$seen" in *" $real "*) continue ;; esac
  seen="$seen$real "
  if [ -z "$first" ]; then
    first=$exe first_t=$t best=$exe best_t=$t
  elif awk -v a="$t" -v b="$best_t" 'BEGIN { exit !(a < b) }'; then
    best=$exe best_t=$t
  fi
done

if [ -z "$first" ]; then
  echo "cnnbench needs Python >= 3.11 with its venv module; set PYTHON=/path/to/python3.11 and retry." >&2
  exit 2
fi
# another interpreter only when it is at least 10% faster than the first found (python3 on PATH)
if [ "$best" != "$first" ] && awk -v a="$best_t" -v b="$first_t" 'BEGIN { exit !(a * 1.1 <= b) }'; then
  echo "$best"
  awk -v a="$best_t" -v b="$first_t" -v f="$first" \
    'BEGIN { printf "ran a short Python probe %.1fx as fast as python3 (%s)\n", b / a, f }'
else
  echo "$first"
  echo "python3 on PATH"
fi
