"""One study's section of a report: what was run, the recipe and budget, the baseline check,
its declared extra sections, the answers, the accuracy table and figures, the curves and the
machine's load. The per-run table goes to the report's appendix (cnnexp.report.build)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
from hydra.utils import get_method

from cnnexp import stats
from cnnexp.errors import ConfigError
from cnnexp.report import figures
from cnnexp.report.answers import add_answers
from cnnexp.report.budget import add_baseline_check, reference_study
from cnnexp.report.curves import add_curves, add_system
from cnnexp.report.document import Document, display_summary
from cnnexp.report.network import add_network
from cnnexp.report.recipe import add_recipe, describe, heading
from cnnexp.report.runs import Study, as_tuple, problems
from cnnexp.report.verdicts import Verdicts


def add_study(
    doc: Document,
    study: Study,
    verdicts: Verdicts,
    tag: str,
    network: bool = False,
    shots: list[tuple[Path, str]] = (),
) -> None:
    """The section of one sweep or run, with its verdicts (cnnexp.report.verdicts.summarise);
    `network` adds the layer table of its first usable run's network, `shots` pictures of
    TensorBoard's pages beside the curves."""
    alpha, summary = verdicts.alpha, verdicts.table
    doc.heading(2, heading(study))
    doc.para(describe(study))
    usable = study.usable()
    if network and usable and usable[0].config:
        add_network(doc, usable[0].config)
    add_recipe(doc, study)
    add_baseline_check(doc, reference_study(study), verdicts)
    for section in study.kind.report_sections():
        _section(section)(doc, study, tag, alpha)
    add_answers(doc, study, verdicts)
    if not summary.empty and summary["n"].sum():
        doc.heading(3, "Test accuracy")
        doc.table(display_summary(summary))
        for path, caption in accuracy_figures(study, summary, doc.out / "figures", tag):
            doc.image(path, caption)
    add_curves(doc, study, tag)
    for path, caption in shots:
        doc.image(path, caption)
    add_system(doc, study, tag)
    bad = problems(study)
    if bad.empty:
        doc.para("Every run completed and trained: all are in the means.")
    else:
        doc.heading(3, "Runs not in the means")
        doc.table(bad)


def accuracy_figures(
    study: Study, summary: pd.DataFrame, fig_dir: Path, tag: str
) -> list[tuple[Path, str]]:
    """Verdict panels per context where there is one baseline factor, else dots per group
    (none for single runs: their accuracy is one number, in the table)."""
    if not (summary["n"] > 1).any():
        return []
    if len(study.baseline) != 1:
        shown = summary[summary["n"] > 0].reset_index(drop=True)
        noise = stats.check_variances(dict(enumerate(shown["values"])), control=0)
        pooled = (noise.sigma, noise.df, noise.left_out) if noise.pooled else None
        path = figures.group_dots(shown, study.factors, fig_dir / f"{tag}-accuracy.png", pooled)
        basis = (
            f"from the pooled standard deviation ({100 * noise.sigma:.2f} points, "
            f"{noise.df:.0f} df)"
            if noise.pooled
            else "from its own seeds"
        )
        return [
            (
                path,
                "final test accuracy: each seed a dot, the mean a diamond with its 95% CI " + basis,
            )
        ]
    ((factor, level),) = study.baseline.items()
    context = [f for f in study.factors if f != factor]
    out = []
    parts = summary.groupby(context, sort=False) if context else [((), summary)]
    for i, (name, part) in enumerate(parts):
        where = ", ".join(f"{f}={v}" for f, v in zip(context, as_tuple(name), strict=True))
        if (part[factor].astype(str) == level).sum() != 1 or not part["n"].any():
            continue
        path = figures.verdict_panels(part, factor, level, fig_dir / f"{tag}-verdicts{i}.png")
        out.append((path, f"each level against {factor}={level}{' on ' + where if where else ''}"))
    return out


def _section(name: str) -> Callable[..., None]:
    """A study's report section by its function's dotted name (its kind's, or study.sections')."""
    try:
        return get_method(name)
    except Exception as err:  # Hydra wraps the import's own error in its message
        raise ConfigError(
            f"study.sections names {name!r}, which cannot be loaded ({err}); name a function "
            "as module.name, e.g. cnnexp.report.pooling.add_pooling"
        ) from None
