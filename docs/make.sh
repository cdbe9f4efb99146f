#!/usr/bin/env bash
# Regenerate the example reports in docs/ from real runs, all at the commit checked out (which
# must be clean: `git status` empty). Needs the datasets: CNNEXP_DATA=../shared/data.
#   bash docs/make.sh           # the runs (about 80 minutes on two CPU cores), then the reports
#   bash docs/make.sh runs      # the runs only
#   bash docs/make.sh reports   # the reports only, from the run folders already there
#   bash docs/make.sh lab       # the lab report only, from the run folders here or else the
#                               # runs.csv of each study's report in docs/
#   bash docs/make.sh factorial-cifar10   # the lab's factors on CIFAR-10: the factorial study,
#                               # its budget check and confirmation, then its report (one to
#                               # two hours on two AVX2 cores)
#   bash docs/make.sh factorial-mnist   # the factorial study on MNIST, its budget check and
#                               # the confirmation of the network it predicts best, then its
#                               # report (about 20 minutes on two CPU cores)
#   bash docs/make.sh ablation-factorial   # the factorial ablation of cifar10_cpu's recipe,
#                               # its budget check and confirmation, then its report (about an
#                               # hour on two AVX2 cores)
#   bash docs/make.sh tables    # the reports again from the runs.csv each report here keeps
#                               # (no run folders needed; final numbers only for tables written
#                               # before the tables kept configs and curves)
# Run folders go to multirun/docs/ and outputs/docs/ (git-ignored); each run's time is in its
# metrics.json.
set -euo pipefail
cd "$(dirname "$0")/.."
export CNNEXP_DATA="${CNNEXP_DATA:-../shared/data}"
py="${PYTHON:-python}"
what="${1:-all}"

clean_tree() {
  if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
    echo "docs/make.sh: the tree has uncommitted changes; commit first so the runs record one clean commit" >&2
    exit 2
  fi
}

runs() {
  clean_tree
  rm -rf multirun/docs outputs/docs
  # The studies at their CPU budgets (each at most 30 minutes on two cores), then the single
  # runs of the lab report. `time` prints each one's wall time.
  # Each study, then its budget check (the baseline again at twice the epochs) beside it.
  for study in pooling:pooling-cifar10 architecture:architecture-cifar10 \
      ablation:ablation-cifar10 pooling_mnist:pooling-mnist; do
    time $py -m cnnexp -m +experiment="${study%%:*}" hydra.sweep.dir="multirun/docs/${study#*:}"
    time $py -m cnnexp -m +experiment="${study%%:*}_check" \
        hydra.sweep.dir="multirun/docs/${study#*:}-check"
  done
  time $py -m cnnexp hydra.run.dir=outputs/docs/lenet_mnist_default
  time $py -m cnnexp +experiment=cifar10_cpu hydra.run.dir=outputs/docs/cifar10_cpu
}

TITLES=(
  "pooling-cifar10:Max vs average pooling: a small convnet on CIFAR-10"
  "architecture-cifar10:Architecture, one factor at a time: a small convnet on CIFAR-10"
  "ablation-cifar10:What made our CIFAR-10 network good: one ingredient at a time"
  "pooling-mnist:Max vs average pooling: LeNet-5 on MNIST"
)

reports() {  # from the run folders, each study with its budget check
  for entry in "${TITLES[@]}"; do
    name="${entry%%:*}"
    $py -m cnnexp.report "multirun/docs/$name" "multirun/docs/$name-check" --out "docs/$name" \
        --title "${entry#*:}"
  done
  lab
}

# The lab report, ordered by the lab's questions, with TensorBoard's pages of the single runs
# (needs Chromium). Each study from its run folders where they are here, else from the runs
# table its report in docs/ keeps.
lab() {
  local inputs=(outputs/docs/lenet_mnist_default outputs/docs/cifar10_cpu)
  for name in pooling-mnist pooling-cifar10 architecture-cifar10 ablation-cifar10 \
      factorial-cifar10 factorial-mnist ablation-factorial; do
    if [ -d "multirun/docs/$name" ]; then
      inputs+=("multirun/docs/$name")
      for part in check confirm; do
        [ -d "multirun/docs/$name-$part" ] && inputs+=("multirun/docs/$name-$part")
      done
    elif [ -f "docs/$name/runs.csv" ]; then
      inputs+=("docs/$name/runs.csv")
    fi
  done
  rm -rf docs/lab-report/figures
  $py -m cnnexp.report "${inputs[@]}" --lab --tensorboard-shots --out docs/lab-report \
      --title "cnnexp lab report"
}

tables() {  # from the runs tables the reports here keep (each is read before it is rewritten)
  for entry in "${TITLES[@]}"; do
    name="${entry%%:*}"
    rm -rf "docs/$name/figures"
    $py -m cnnexp.report "docs/$name/runs.csv" --out "docs/$name" --title "${entry#*:}"
  done
  rm -rf docs/lab-report/figures
  $py -m cnnexp.report docs/lab-report/runs.csv --lab --out docs/lab-report \
      --title "cnnexp lab report"
}

# A factorial study (two jobs at a time, one core each: faster than one job on two cores), its
# budget check, and the confirmation its report asks for: the configuration the main effects
# predict best against the reference, with fresh seeds. Then one report of all three.
factorial() {  # $1: the experiment, $2: the folder under multirun/docs/ and docs/, $3: the title
  clean_tree
  local root="multirun/docs/$2" workers="hydra/launcher=workers"
  rm -rf "$root" "$root-check" "$root-confirm"
  time $py -m cnnexp -m "$workers" +experiment="$1" hydra.sweep.dir="$root"
  time $py -m cnnexp -m "$workers" +experiment="$1_check" hydra.sweep.dir="$root-check"
  $py -m cnnexp.report "$root" "$root-check" --out "docs/$2" --title "$3"
  local confirm
  confirm=$(grep -o 'study.design=confirm[^`]*' "docs/$2/report.md" | head -n1 |
      sed 's/ hydra.sweep.dir=[^ ]*//')
  if [ -n "$confirm" ]; then
    # shellcheck disable=SC2086  # the confirmation's overrides, one word each
    time $py -m cnnexp -m "$workers" +experiment="$1" $confirm hydra.sweep.dir="$root-confirm"
    rm -rf "docs/$2/figures"
    $py -m cnnexp.report "$root" "$root-check" "$root-confirm" --out "docs/$2" --title "$3"
  fi
}

case "$what" in
  factorial-cifar10) factorial factorial factorial-cifar10 \
      "The lab's factors as one factorial design: a small convnet on CIFAR-10" ;;
  factorial-mnist) factorial factorial_mnist factorial-mnist \
      "The lab's factors as one factorial design: a LeNet-shaped convnet on MNIST" ;;
  ablation-factorial) factorial ablation_factorial ablation-factorial \
      "Which strategies improved our network: the cifar10_cpu recipe's ingredients as one factorial design" ;;
  runs) runs ;;
  reports) reports ;;
  tables) tables ;;
  lab) lab ;;
  all) runs; reports ;;
  *) echo "docs/make.sh: unknown step '$what': use runs, reports, tables, lab, factorial-cifar10, factorial-mnist, ablation-factorial or all" >&2; exit 2 ;;
esac
