# Sourced by run.sh and test.sh: make sure the repo-local virtualenv exists and is current.
# Creates .venv on first use with the exact tested versions of constraints.txt; re-installs when
# pyproject.toml or constraints.txt changes.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"
STAMP="$VENV/.cnnbench-installed"
if [ ! -x "$VENV/bin/python" ]; then
  # $PYTHON, else python3, else a faster build of Python >= 3.11 on this machine (pick-python.sh)
  picked=$("$REPO/scripts/pick-python.sh")
  PY=$(sed -n 1p <<<"$picked")
  if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
    echo "cnnbench needs Python >= 3.11 ($PY is not); set PYTHON=/path/to/python3.11 and retry." >&2
    exit 2
  fi
  echo "[setup] creating virtualenv in $VENV with $PY: $(sed -n 2p <<<"$picked") (PYTHON=... to choose)" >&2
  "$PY" -m venv "$VENV"
fi
if [ ! -f "$STAMP" ] || [ "$REPO/pyproject.toml" -nt "$STAMP" ] || [ "$REPO/constraints.txt" -nt "$STAMP" ]; then
  echo "[setup] installing cnnbench with the tested versions of constraints.txt (torch==2.14.1, torchvision==0.29.1) and the test extra (with serve, export, search, mlflow, cluster and mutation) into .venv" >&2
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q -c "$REPO/constraints.txt" -e "$REPO[test]" >&2
  touch "$STAMP"
fi
# Data is found by cnnbench itself, by one rule for every entry point (cnnbench.data.cache.data_roots).
