#!/usr/bin/env bash
# Regenerate the example reports in docs/ from real runs, all at the commit checked out (which
# should be clean: `git status` empty). About 45 minutes on two CPU cores; the backends sweep needs `pip install -e ".[lightning]"`. Needs the datasets:
# CNNEXP_DATA=../shared/data. Run folders go to multirun/docs/ and outputs/docs/ (git-ignored);
# each run's time is in its metrics.json.
set -euo pipefail
cd "$(dirname "$0")/.."
export CNNEXP_DATA="${CNNEXP_DATA:-../shared/data}"
py="${PYTHON:-python}"
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
  echo "docs/make.sh: the tree has uncommitted changes; commit first so the runs record one clean commit" >&2
  exit 2
fi
rm -rf multirun/docs outputs/docs

# The studies (sweeps), then the single runs of the lab report.
$py -m cnnexp -m +experiment=pooling setup=lenet_mnist hydra.sweep.dir=multirun/docs/pooling-mnist
$py -m cnnexp -m +experiment=architecture hydra.sweep.dir=multirun/docs/architecture-mnist
$py -m cnnexp hydra.run.dir=outputs/docs/lenet_mnist_default
$py -m cnnexp -m +experiment=mnist_best seed=0,1,2 hydra.sweep.dir=multirun/docs/mnist_best
$py -m cnnexp +experiment=cifar10_cpu seed=1 hydra.run.dir=outputs/docs/cifar10_cpu
$py -m cnnexp -m trainer=native,lightning seed=0,1 +study.name=backends \
    +study.baseline.trainer=native hydra.sweep.dir=multirun/docs/backends-mnist

# The reports.
$py -m cnnexp.report multirun/docs/pooling-mnist --out docs/pooling-mnist --title "Max vs average pooling: LeNet-5 on MNIST"
$py -m cnnexp.report multirun/docs/architecture-mnist --out docs/architecture-mnist --title "Architecture, one factor at a time: a LeNet-shaped convnet on MNIST"
$py -m cnnexp.report multirun/docs/backends-mnist --out docs/backends-mnist --title "Our loop against Lightning's Trainer: LeNet-5 on MNIST"
$py -m cnnexp.report outputs/docs/lenet_mnist_default outputs/docs/cifar10_cpu multirun/docs/mnist_best \
    multirun/docs/pooling-mnist multirun/docs/architecture-mnist --out docs/lab-report --title "cnnexp lab report"
