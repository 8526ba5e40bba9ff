#!/usr/bin/env bash
# How the committed study results under results/ were last brought up to date (run alone on
# the machine, one job at a time; see each report for device and profile):
#   1. the short full-recipe runs, 3 seeds each (each seed < 10 min on 2 CPU cores);
#   2. every other committed run's study.json refreshed from its study file where its recipe
#      is unchanged (nothing is trained: finished runs are skipped), and each report re-rendered.
# The long full-recipe runs (mnist-five's alexnet and resnet18) were trained before, with:
#   cnnbench study run mnist-five --profile full --only resnet18 --out results/mnist-five
#   cnnbench study run mnist-five --profile full --only alexnet --out results/mnist-five
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure-venv.sh
cb() { "$VENV/bin/cnnbench" "$@"; }
step="${1:-all}"

if [ "$step" = all ] || [ "$step" = seeds ]; then
  # single-seed directories of these runs are replaced by their three seeds
  rm -rf results/mnist-five/lenet results/optimizers/lenet5-{sgd,adagrad,adam} \
         results/cifar10-tricks/simple-cnn{,-aug,-aug-l2} results/mnist-classics/lenet
  cb study run mnist-five --profile full --seeds 3 --only lenet lenet-54px --out results/mnist-five --no-report --quiet
  cb study run optimizers --profile full --seeds 3 --only 'lenet5-*' --out results/optimizers --no-report --quiet
  cb study run cifar10-tricks --profile full --dataset cifar10_jpeg --seeds 3 --only 'simple-cnn*' \
     --out results/cifar10-tricks --no-report --quiet
  cb study run mnist-classics --profile full --seeds 3 --only lenet --out results/mnist-classics --no-report --quiet
  # 001's ResNet-18 on the 28 px images (no upsampling): one seed, about 10 minutes here
  cb study run mnist-five --profile full --only resnet18-28px --out results/mnist-five --no-report --quiet
fi

if [ "$step" = all ] || [ "$step" = refresh ]; then
  cb study run mnist-five --profile full --only resnet18 alexnet mobilenet_v1 googlenet --out results/mnist-five --quiet
  cb study run mnist-classics --profile quick --only alexnet mobilenet_v2 resnet34 vgg16 --out results/mnist-classics --quiet
  cb study run optimizers --profile quick --only 'alexnet-*' 'mobilenet_v1-*' 'resnet18-*' 'vgg16-*' \
     --out results/optimizers --quiet
  cb study run cifar10-tricks --profile quick --dataset cifar10_jpeg \
     --only resnet18 resnet18-tuned vgg16_bn vgg16_bn-tuned --out results/cifar10-tricks --quiet
  cb study run alexnet-ablation --profile quick --dataset cifar10_jpeg \
     --only plain bn bn-dropout bn-dropout-flip staged-batches tuned-lr --out results/alexnet-ablation --quiet
  cb study run transfer --profile cpu --seeds 3 --out results/transfer --quiet
fi
