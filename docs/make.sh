#!/usr/bin/env bash
# Regenerate the example reports in docs/ from real runs, all at the commit checked out (which
# must be clean: `git status` empty). Needs the datasets: CNNEXP_DATA=../shared/data.
#   bash docs/make.sh           # the runs (about 80 minutes on two CPU cores), then the reports
#   bash docs/make.sh runs      # the runs only
#   bash docs/make.sh reports   # the reports only, from the run folders already there
# Run folders go to multirun/docs/ and outputs/docs/ (git-ignored); each run's time is in its
# metrics.json.
set -euo pipefail
cd "$(dirname "$0")/.."
export CNNEXP_DATA="${CNNEXP_DATA:-../shared/data}"
py="${PYTHON:-python}"
what="${1:-all}"

runs() {
  if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
    echo "docs/make.sh: the tree has uncommitted changes; commit first so the runs record one clean commit" >&2
    exit 2
  fi
  rm -rf multirun/docs outputs/docs
  # The studies at their CPU budgets (each at most 30 minutes on two cores), then the single
  # runs of the lab report. `time` prints each one's wall time.
  time $py -m cnnexp -m +experiment=pooling hydra.sweep.dir=multirun/docs/pooling-cifar10
  time $py -m cnnexp -m +experiment=architecture hydra.sweep.dir=multirun/docs/architecture-cifar10
  time $py -m cnnexp -m +experiment=ablation hydra.sweep.dir=multirun/docs/ablation-cifar10
  time $py -m cnnexp -m +experiment=pooling_mnist hydra.sweep.dir=multirun/docs/pooling-mnist
  time $py -m cnnexp hydra.run.dir=outputs/docs/lenet_mnist_default
  time $py -m cnnexp +experiment=cifar10_cpu hydra.run.dir=outputs/docs/cifar10_cpu
}

reports() {
  $py -m cnnexp.report multirun/docs/pooling-cifar10 --out docs/pooling-cifar10 \
      --title "Max vs average pooling: a small convnet on CIFAR-10"
  $py -m cnnexp.report multirun/docs/architecture-cifar10 --out docs/architecture-cifar10 \
      --title "Architecture, one factor at a time: a small convnet on CIFAR-10"
  $py -m cnnexp.report multirun/docs/ablation-cifar10 --out docs/ablation-cifar10 \
      --title "What made our CIFAR-10 network good: one ingredient at a time"
  $py -m cnnexp.report multirun/docs/pooling-mnist --out docs/pooling-mnist \
      --title "Max vs average pooling: LeNet-5 on MNIST"
  $py -m cnnexp.report outputs/docs/lenet_mnist_default outputs/docs/cifar10_cpu \
      multirun/docs/pooling-mnist multirun/docs/pooling-cifar10 multirun/docs/architecture-cifar10 \
      multirun/docs/ablation-cifar10 --out docs/lab-report --title "cnnexp lab report"
}

case "$what" in
  runs) runs ;;
  reports) reports ;;
  all) runs; reports ;;
  *) echo "docs/make.sh: unknown step '$what': use runs, reports or all" >&2; exit 2 ;;
esac
