#!/usr/bin/env bash
# One command: install (first time only) and run the test suite (CPU only, no network).
set -euo pipefail
source "$(dirname "$0")/scripts/ensure-venv.sh"
cd "$REPO"
exec "$VENV/bin/python" -m pytest "$@"
