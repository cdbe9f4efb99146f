#!/usr/bin/env bash
# Regenerate the example reports in docs/ from real runs, all at the commit checked out (which
# must be clean: `git status` empty). Needs the datasets: CNNEXP_DATA=../shared/data.
#   bash docs/make.sh           # every run below, then every report (about four hours on two
#                               # AVX2-only cores; a stopped one started again goes on)
#   bash docs/make.sh runs      # the one-factor studies only
#   bash docs/make.sh reports   # the reports only, from the run folders already there
#   bash docs/make.sh report factorial-cifar10   # one of them
#   bash docs/make.sh lab       # the whole lab: python -m cnnexp.lab --budget standard (its
#                               # plan and estimate first; BUDGET=quick for a short one), and
#                               # its lab report copied to docs/lab-report/
#   bash docs/make.sh factorial-cifar10   # the lab's factors on CIFAR-10: the factorial study
#                               # with its budget check, its confirmation, then its report
#   bash docs/make.sh factorial-mnist   # the same on MNIST (study.budget=mnist_cpu)
#   bash docs/make.sh ablation-factorial   # the factorial ablation of cifar10_cpu's recipe
#   bash docs/make.sh pooling-mnist   # pooling on LeNet-5 as a deciding study, then its report
#   bash docs/make.sh pooling-cifar10 factorial-mnist   # several studies: their runs, then
#                               # their reports (architecture-cifar10 and pooling-cifar10 too)
#   bash docs/make.sh tables    # the reports again from the runs.csv each report here keeps
#                               # (not the lab report, which `lab` makes from its run folders;
#                               # no run folders needed; final numbers only for tables written
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

# A folder of runs made at another commit is started over; one made at this commit is resumed
# (its completed runs are kept, a stopped one goes on from its checkpoint), so a stopped
# `make.sh` goes on where it was. FRESH=1 starts every folder over.
at_this_commit() {  # $1: a run or sweep folder
  local head
  head=$(git rev-parse HEAD)
  if [ -d "$1" ] && { [ "${FRESH:-0}" = 1 ] ||
      [ -n "$(grep -rL --include=metrics.json "\"git_commit\": \"$head\"" "$1" || true)" ]; }; then
    echo "docs/make.sh: $1 holds runs of another commit (or FRESH=1): starting it over" >&2
    rm -rf "$1"
  fi
}

# The studies run two jobs at a time, one core each (faster than one job on two cores:
# benchmarks/RESULTS.md, 2026-12-01).
workers="hydra/launcher=workers"

sweep() {  # $1: the experiment, $2: its folder; then overrides
  local experiment="$1" root="$2"
  shift 2
  at_this_commit "$root"
  time $py -m cnnexp -m "$workers" +experiment="$experiment" "$@" hydra.sweep.dir="$root"
}

runs() {
  clean_tree
  # The one-factor studies at their CPU budgets, each with its budget check in its own sweep
  # (the arms it decides again at twice the epochs, in check/). `time` prints each one's wall
  # time. (The lab report's own runs are the lab's: `lab`.)
  sweep architecture multirun/docs/architecture-cifar10
  sweep pooling multirun/docs/pooling-cifar10
  sweep pooling multirun/docs/pooling-mnist study.budget=mnist_cpu
}

TITLES=(
  "factorial-cifar10:The lab's factors as one factorial design: a small convnet on CIFAR-10"
  "architecture-cifar10:Activation, kernel size and batch norm, one at a time: a small convnet on CIFAR-10"
  "pooling-cifar10:Max vs average pooling: a small convnet on CIFAR-10"
  "pooling-mnist:Max vs average pooling: LeNet-5 on MNIST"
  "factorial-mnist:The lab's factors as one factorial design: a LeNet-shaped convnet on MNIST"
  "ablation-factorial:Which strategies improved our network: the cifar10_cpu recipe's ingredients as one factorial design"
)

title_of() {  # $1: a report's folder name
  local entry
  for entry in "${TITLES[@]}"; do
    [ "${entry%%:*}" = "$1" ] && echo "${entry#*:}" && return
  done
}

report() {  # $1: the folder under multirun/docs/ and docs/: the study (its budget check inside)
  # and its confirmation, where there is one
  local root="multirun/docs/$1" inputs=()
  for folder in "$root" "$root-confirm"; do
    [ -d "$folder" ] && inputs+=("$folder")
  done
  if [ ${#inputs[@]} = 0 ]; then  # else the report would read the newest sweep, not this one
    echo "docs/make.sh: $root holds no runs: make them first (bash docs/make.sh $1)" >&2
    exit 2
  fi
  rm -rf "docs/$1/figures"
  $py -m cnnexp.report "${inputs[@]}" --out "docs/$1" --title "$(title_of "$1")"
}

reports() {  # from the run folders: every study here (the lab report is the lab's: `lab`)
  for entry in "${TITLES[@]}"; do
    [ -d "multirun/docs/${entry%%:*}" ] && report "${entry%%:*}"
  done
}

# The lab report: the whole lab at the standard budget by its one command (python -m
# cnnexp.lab; a stopped one started again goes on, at this commit only), its report copied here.
lab() {
  clean_tree
  $py -m cnnexp.lab --budget "${BUDGET:-standard}" --out multirun/docs/lab
  rm -rf docs/lab-report
  cp -r multirun/docs/lab/report docs/lab-report
}

tables() {  # from the runs tables the reports here keep (each is read before it is rewritten)
  for entry in "${TITLES[@]}"; do
    name="${entry%%:*}"
    [ -f "docs/$name/runs.csv" ] || continue
    rm -rf "docs/$name/figures"
    $py -m cnnexp.report "docs/$name/runs.csv" --out "docs/$name" --title "${entry#*:}"
  done
  # Not docs/lab-report: a runs table keeps no TensorBoard events or load, so made from one it
  # would lose its screenshots and feature maps; `lab` makes it again from the lab's folders.
}

# A factorial study (two jobs at a time, one core each: faster than one job on two cores) with
# its budget check in its sweep, and the confirmation its report asks for: the configuration
# the main effects predict best against the reference, with fresh seeds. The report that names
# the confirmation is written outside the tree: one in docs/ would leave the tree changed, and
# the runs after it would record uncommitted changes.
factorial() {  # $1: the experiment, $2: the folder under multirun/docs/ and docs/, $3: budget
  clean_tree
  local root="multirun/docs/$2" plan confirm
  sweep "$1" "$root" study.budget="$3"
  plan=$(mktemp -d)
  $py -m cnnexp.report "$root" --out "$plan"
  # A report that supports no change names no confirmation: grep then finds nothing, which
  # must not end the script (set -e with pipefail).
  confirm=$({ grep -o 'study.budget=[^`]*study=confirm[^`]*' "$plan/report.md" || true; } |
      head -n1 | sed 's/ hydra.sweep.dir=[^ ]*//')
  rm -rf "$plan"
  if [ -n "$confirm" ]; then
    # shellcheck disable=SC2086  # the confirmation's overrides, one word each
    sweep "$1" "$root-confirm" $confirm
  else
    echo "docs/make.sh: $2's report supports no change from its reference: no confirmation" >&2
  fi
}

factorial_cifar10() { factorial factorial factorial-cifar10 cifar10_cpu; }
factorial_mnist() { factorial factorial factorial-mnist mnist_cpu; }
ablation_factorial() { factorial ablation_factorial ablation-factorial cifar10_cpu; }

# A study's runs: its sweep with its budget check inside, and its confirmation where the
# report asks for one.
study_runs() {  # $1: the study's folder name under multirun/docs/ and docs/
  case "$1" in
    factorial-cifar10) factorial_cifar10 ;;
    factorial-mnist) factorial_mnist ;;
    ablation-factorial) ablation_factorial ;;
    architecture-cifar10) clean_tree; sweep architecture multirun/docs/architecture-cifar10 ;;
    pooling-cifar10) clean_tree; sweep pooling multirun/docs/pooling-cifar10 ;;
    pooling-mnist) clean_tree; sweep pooling multirun/docs/pooling-mnist study.budget=mnist_cpu ;;
    *) return 1 ;;
  esac
}

case "$what" in
  runs) runs ;;
  reports) reports ;;
  report) report "${2:?which report: one of the folders under multirun/docs/}" ;;
  tables) tables ;;
  lab) lab ;;
  all) factorial_cifar10; runs; factorial_mnist; ablation_factorial; reports; lab ;;
  *)
    # One or more studies by name: every one's runs first, then their reports (a report
    # written into docs/ changes the tree, and the runs after it must record a clean commit).
    for name in "$@"; do
      [ -n "$(title_of "$name")" ] || {
        echo "docs/make.sh: unknown step '$name': use runs, reports, report NAME, tables, lab, all, or study names (factorial-cifar10, factorial-mnist, ablation-factorial, architecture-cifar10, pooling-cifar10, pooling-mnist)" >&2
        exit 2
      }
    done
    for name in "$@"; do study_runs "$name"; done
    for name in "$@"; do report "$name"; done
    ;;
esac
