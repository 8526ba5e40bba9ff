# Sourced by run.sh and test.sh: make sure the repo-local virtualenv exists and is current.
# Creates .venv on first use with the exact tested versions of constraints.txt; re-installs when
# pyproject.toml or constraints.txt changes.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"
STAMP="$VENV/.cnnbench-installed"
if [ ! -x "$VENV/bin/python" ]; then
  # $PYTHON, else python3, else a faster build of Python >= 3.11 on this machine (pick-python.sh)
  picked=$("$REPO/scripts/pick-python.sh")  # or a one-line error, and exit 2
  PY=$(sed -n 1p <<<"$picked")
  echo "[setup] creating virtualenv in $VENV with $PY: $(sed -n 2p <<<"$picked") (PYTHON=... to choose)" >&2
  "$PY" -m venv "$VENV"
fi
if [ ! -f "$STAMP" ] || [ "$REPO/pyproject.toml" -nt "$STAMP" ] || [ "$REPO/constraints.txt" -nt "$STAMP" ]; then
  echo "[setup] installing cnnbench with the tested versions of constraints.txt (torch==2.14.1, torchvision==0.29.1) and the test extra (with serve, export, search, mlflow, cluster and mutation) into .venv" >&2
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q -c "$REPO/constraints.txt" -e "$REPO[test]" >&2
  touch "$STAMP"
fi
# Data is found by cnnbench itself, by one rule for every entry point (cnnbench.data.cache.data_roots).
