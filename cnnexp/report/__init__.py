"""`python -m cnnexp.report [RUN_OR_SWEEP_OR_RUNS_CSV ...]`: tables, figures and answers.

With no argument it reports on the newest sweep under multirun/. Several folders (single runs
and sweeps) make one report; with --lab it is ordered by the lab's questions, each opening with
its answer. Writes runs.csv, summary.csv, report.md, a self-contained
report.html and figures/*.png.

The package by topic: runs (run folders or a runs.csv into a Study), verdicts (the study's
numbers: one model, many-to-one comparisons, pairs, budget check, planner; no prose), and one
module per part of a report, each owning its analysis and its words: recipe, budget, answers,
curves, pooling, network (layer tables), section (one study's part), lab (the report ordered by
the lab's questions, `--lab`); shots takes TensorBoard screenshots (`--tensorboard-shots`),
document renders, figures draws, build puts a report together.
"""

from cnnexp.report.build import build_report, main

__all__ = ["build_report", "main"]
