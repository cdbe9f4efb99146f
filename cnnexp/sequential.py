"""Deciding comparisons in rounds of seeds: each arm against the control is looked at after
every round and stops once decided (better, worse or equivalent), with the family-wise error
held under that optional stopping. No prose here; the sweeper (hydra/sweeper=decide) runs the
rounds and the report says the verdicts.

Looking after every round and stopping when a fixed-sample test says "decided" inflates its
error: five looks at level 0.05 err about 14% of the time under the null. The method here is
alpha spending over the planned looks (Lan and DeMets 1983) with the power-family spending
function f(t) = t^rho (Kim and DeMets 1987), where t = n / max_seeds is the share of the seeds a
comparison has had. rho = 3 is close to O'Brien and Fleming's boundaries (strict early, half the
level at the last look), rho = 1 to Pocock's (even); the default, 2, lies between: it stops a
clear difference at the first look more often than t^3 (where seed noise is measured with
Welch's few degrees of freedom) and keeps most of t^3's power at the cap
(benchmarks/deciding_runs.py, RESULTS.md 2026-12-07). With it:

- the study's level alpha is split over its m comparisons (alpha / m each, Bonferroni, as in the
  fixed studies), and each comparison's share over its looks: look k tests at
  (alpha / m) x (f(t_k) - f(t_k-1));
- each test is Welch's (its own variance and the control's), its interval at that level, and
  the two one-sided tests of equivalence within +-margin (statsmodels' ttost_ind, unequal
  variances) at the same level;
- by the union bound the chance that any look of any comparison errs is at most the sum of
  their levels, alpha, whatever the correlation between the looks. That makes it conservative:
  exact group-sequential boundaries use that correlation, and neither SciPy nor statsmodels
  computes them. tests/test_sequential.py simulates null studies to show the level holds, and
  planted differences to show the power and the runs it saves against a fixed design.

A decision is final: a decided arm gets no more seeds; the control keeps running while any arm
is open. An arm still open at the cap (max_seeds, or the study's minutes) ends undecided.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from statsmodels.stats.weightstats import ttost_ind

from cnnexp import stats

RHO = 2.0  # the spending function's power (3: close to O'Brien-Fleming, 1: close to Pocock)
BETTER, WORSE, EQUIVALENT, OPEN = "better", "worse", "equivalent", "open"
SAME = "same networks"  # every seed of the arm gave exactly the control's accuracy: no test needed
DID_NOT_TRAIN = "did not train"  # every run of the arm so far ended at chance: no test possible


@dataclass(frozen=True)
class Rounds:
    """The planned looks: `first` seeds for every arm, then `step` more per open arm each round,
    up to `max_seeds`; the level is spent over them as t^spending."""

    first: int = 3
    step: int = 2
    max_seeds: int = 9
    spending: float = RHO  # the spending function t^spending: lower spends more of it early

    def __post_init__(self):
        if not (2 <= self.first <= self.max_seeds and self.step >= 1 and self.spending > 0):
            raise ValueError(
                f"rounds of seeds: first={self.first}, step={self.step}, "
                f"max_seeds={self.max_seeds}, spending={self.spending}; need 2 <= first <= "
                "max_seeds, step >= 1 and spending > 0"
            )

    def looks(self) -> list[int]:
        """Seeds per arm at each look: first, first + step, ..., max_seeds."""
        seeds = list(range(self.first, self.max_seeds + 1, self.step))
        return seeds if seeds[-1] == self.max_seeds else [*seeds, self.max_seeds]

    def spent(self) -> np.ndarray:
        """The share of a comparison's level each look tests at (they sum to 1)."""
        fraction = np.asarray(self.looks(), float) / self.max_seeds
        return np.diff(np.concatenate([[0.0], fraction**self.spending]))


@dataclass(frozen=True)
class Look:
    """One arm's standing after a look: its verdict, its test at that look's level, the seeds it
    had and the look it was decided at."""

    verdict: str
    comparison: stats.Comparison
    seeds: int
    look: int
    equivalence_p: float = math.nan  # the larger of the two one-sided tests' p-values


@dataclass
class Deciding:
    """The state of a deciding study: its arms, its control and what each look decided."""

    arms: list[str]
    control: str
    rounds: Rounds = field(default_factory=Rounds)
    alpha: float = stats.ALPHA
    margin: float | None = None  # equivalence margin, in the values' units; None: none
    looked: int = 0
    standing: dict[str, Look] = field(default_factory=dict)

    def __post_init__(self):
        if self.control not in self.arms or len(self.arms) < 2:
            raise ValueError(f"a deciding study needs its control {self.control!r} and an arm")

    @property
    def compared(self) -> list[str]:
        return [a for a in self.arms if a != self.control]

    def level(self, look: int) -> float:
        """The level each comparison is tested at in look `look` (0-based)."""
        return self.alpha / len(self.compared) * float(self.rounds.spent()[look])

    def verdict(self, arm: str) -> str:
        return getattr(self.standing.get(arm), "verdict", OPEN)

    def open_arms(self) -> list[str]:
        return [a for a in self.compared if self.verdict(a) == OPEN]

    def decided(self) -> list[str]:
        """The arms decided better, worse or equivalent so far, in the arms' order."""
        return [a for a in self.compared if self.verdict(a) in (BETTER, WORSE, EQUIVALENT)]

    def done(self) -> bool:
        return not self.open_arms() or self.looked >= len(self.rounds.looks())

    def wanted(self) -> dict[str, int]:
        """Seeds each arm should have after the next round: the open arms and the control at
        the next look's count; {} when the study is done."""
        if self.done():
            return {}
        seeds = self.rounds.looks()[self.looked]
        return {arm: seeds for arm in [self.control, *self.open_arms()]}

    def close(self, arm: str, verdict: str) -> None:
        """End an open arm without a test (its runs did not train): it gets no more seeds."""
        untested = stats.Comparison(*[math.nan] * 10, test="none")
        self.standing[arm] = Look(verdict, untested, 0, max(self.looked - 1, 0))

    def look(self, values: Mapping[str, Sequence[float]]) -> dict[str, Look]:
        """Test every open arm against the control with the values so far (each arm's first
        seeds, in order); decided arms keep their verdict."""
        k = self.looked
        level = self.level(k)
        control = np.asarray(values[self.control], float)
        for arm in self.open_arms():
            mine = np.asarray(values[arm], float)
            if len(mine) < 2 or len(control) < 2:  # its runs failed: no noise to test against
                continue
            self.standing[arm] = _tested(mine, control, level, self.margin, k)
        self.looked += 1
        return dict(self.standing)


def _tested(arm: np.ndarray, control: np.ndarray, level: float, margin, look: int) -> Look:
    comparison = stats.welch(arm, control, level)
    if np.array_equal(arm, control[: len(arm)]):  # seed by seed: the option changed nothing
        return Look(SAME, comparison, len(arm), look)
    if comparison.differs:
        verdict = BETTER if comparison.diff > 0 else WORSE
        return Look(verdict, comparison, len(arm), look)
    p = _equivalence_p(arm, control, margin)
    if p < level:  # each one-sided test at `level`: the interval at 1 - 2 level is the one
        # inside the margin, so that one is shown with the verdict (it matches the claim)
        return Look(EQUIVALENT, stats.welch(arm, control, 2 * level), len(arm), look, p)
    return Look(OPEN, comparison, len(arm), look, p)


def _equivalence_p(arm: np.ndarray, control: np.ndarray, margin: float | None) -> float:
    """The two one-sided tests' p-value that |arm - control| < margin (unequal variances)."""
    if margin is None or margin <= 0 or len(arm) < 2 or len(control) < 2:
        return math.nan
    if arm.std() == 0 and control.std() == 0:  # no noise: the difference is what it is
        return 0.0 if abs(arm.mean() - control.mean()) < margin else 1.0
    p, _, _ = ttost_ind(arm, control, -margin, margin, usevar="unequal")
    return float(p)
