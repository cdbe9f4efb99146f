"""A kind of study defined outside cnnexp, as a user would add one: one class (and its YAML, which
the test writes). Its jobs are the sweep's, each arm once more with the next seed; its report
section counts its runs."""

from __future__ import annotations

from cnnexp.studies import Study


class Doubled(Study):
    """Every job of the sweep, and again with the seed one higher."""

    def jobs(self, swept: list[list[str]]) -> list[list[str]]:
        return [
            [*job[:-1], f"seed={int(job[-1].partition('=')[2]) + extra}"]
            for job in swept
            for extra in (0, 1)
        ]

    def report_sections(self) -> list[str]:
        return ["toy_study.add_toy", *self.sections]


def add_toy(doc, study, tag: str, alpha: float) -> None:
    """The toy kind's own section."""
    doc.heading(3, "The toy kind's section")
    doc.para(f"{len(study.runs)} runs of the doubled study {study.name}.")
