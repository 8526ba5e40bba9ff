#!/usr/bin/env bash
# One command: install (first time only) and run cnnbench. With no arguments it trains the
# default experiment (LeNet-5 on MNIST on the CPU). Any arguments go to `cnnbench`, e.g.
#   ./run.sh train --model resnet18 --dataset cifar10 --epochs 30
set -euo pipefail
source "$(dirname "$0")/scripts/ensure-venv.sh"
if [ $# -eq 0 ]; then set -- train; fi
exec "$VENV/bin/cnnbench" "$@"
