"""Two-level fractional factorial designs (`study: factorial`, cnnexp.studies.Factorial), with
no prose: the design points from pyDOE3's `fracfact`, the defining relation and the alias
structure it implies, and the effects fitted by statsmodels' OLS on the coded factors (-1 the
low level, +1 the high).

An effect is the high level's mean minus the low level's, averaged over the other factors: twice
the OLS coefficient of its coded column. In a fractional design each estimate carries the
effects it is aliased with (in a resolution IV design a main effect carries three-factor
interactions, a two-factor interaction carries other two-factor interactions), so the alias
chains are part of every answer. The effects form one family: Šidák's single-step intervals at
the family-wise level, so an interval excludes zero exactly when the adjusted p is below it.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from scipy import stats as scipy_stats

from cnnexp.stats import ALPHA

LETTERS = "abcdefghijklmnopqrstuvwxyz"
# 7 factors in 16 points at resolution IV (the minimum-aberration 2^(7-3) design): E = ABC,
# F = BCD, G = ACD.
SEVEN_IN_SIXTEEN = "a b c d abc bcd acd"


def points(generators: str) -> np.ndarray:
    """The design's points, one row each, a column per factor, coded -1 and +1."""
    from pyDOE3 import fracfact

    return fracfact(generators).astype(int)


def defining_words(generators: str) -> set[frozenset[str]]:
    """The defining relation: I = each generated column times its generator (E = ABC gives
    ABCE), and every product of those words."""
    columns = generators.split()
    basic = [frozenset(word) | {LETTERS[i]} for i, word in enumerate(columns) if len(word) > 1]
    words = set()
    for r in range(1, len(basic) + 1):
        for combo in itertools.combinations(basic, r):
            product = frozenset()
            for word in combo:
                product = product ^ word
            words.add(product)
    return words


def resolution(generators: str) -> int | None:
    """The length of the shortest defining word (None for a full factorial)."""
    words = defining_words(generators)
    return min(map(len, words)) if words else None


def aliases(generators: str, names: Sequence[str], order: int = 3) -> dict[str, list[str]]:
    """For every main effect and two-factor interaction, the other effects of at most `order`
    factors that its estimate carries: {"kernel": ["stride:convs:fc"], "a:b": ["c:e"], ...}."""
    letters = LETTERS[: len(names)]
    name = {letter: n for letter, n in zip(letters, names, strict=True)}
    words = defining_words(generators)
    chains = {}
    for size in (1, 2):
        for effect in itertools.combinations(letters, size):
            mine = frozenset(effect)
            others = sorted(
                (mine ^ word for word in words if len(mine ^ word) <= order),
                key=lambda e: (len(e), sorted(e)),
            )
            chains[_name(mine, name)] = [_name(e, name) for e in others]
    return chains


def _name(effect: frozenset[str], name: dict[str, str]) -> str:
    return ":".join(name[letter] for letter in sorted(effect))


@dataclass(frozen=True)
class Effect:
    """One estimate: high minus low (points of the response's scale), with its interval."""

    name: str  # "kernel", or "kernel:activation" for an interaction
    estimate: float
    se: float
    p: float  # alone
    p_adjusted: float  # Šidák, over the family
    ci_low: float
    ci_high: float
    aliases: tuple[str, ...]  # what the estimate also carries (up to three-factor effects)

    @property
    def differs(self) -> bool:
        return self.ci_low > 0 or self.ci_high < 0


@dataclass(frozen=True)
class FactorialFit:
    """The effects of one design, the residual variance and the checks of the model."""

    effects: list[Effect]  # main effects in the factors' order, then the interactions fitted
    sigma: float  # residual standard deviation
    df: float  # its degrees of freedom
    level: float  # the per-effect level of the intervals (Šidák)
    normality_p: float | None  # Shapiro-Wilk on the residuals
    outliers: list[int]  # rows whose studentized residual is an outlier (Bonferroni)
    results: object  # the statsmodels fit


def fit(
    table: pd.DataFrame,
    factors: Sequence[str],
    response: str,
    generators: str,
    alpha: float = ALPHA,
    interactions: bool = True,
) -> FactorialFit:
    """OLS of `response` on the coded `factors` (columns of -1/+1), with one interaction per
    alias chain of two-factor interactions that carries no main effect where `interactions`."""
    chains = aliases(generators, factors)
    terms = list(factors)
    if interactions:
        seen: set[str] = set()
        for effect, carried in chains.items():
            if ":" in effect and effect not in seen:
                pairs = [e for e in carried if e.count(":") == 1]
                seen.update([effect, *pairs])
                if not any(":" not in e for e in carried):  # not tied to a main effect
                    terms.append(effect)
    if len(table) <= len(terms) + 1:  # too few runs for the interactions too: main effects only
        terms = list(factors)
    data = table[[*factors, response]].astype(float)
    formula = f"Q('{response}') ~ " + " + ".join(_term(t) for t in terms)
    results = smf.ols(formula, data=data).fit()
    m = len(terms)
    level = 1 - (1 - alpha) ** (1 / m)  # Šidák: the family's level over m independent tests
    effects = []
    names = results.params.index[1:]
    intervals = results.conf_int(level)
    for term, column in zip(terms, names, strict=True):
        p = float(results.pvalues[column])
        effects.append(
            Effect(
                name=term,
                estimate=2 * float(results.params[column]),
                se=2 * float(results.bse[column]),
                p=p,
                p_adjusted=float(1 - (1 - p) ** m),
                ci_low=2 * float(intervals.loc[column, 0]),
                ci_high=2 * float(intervals.loc[column, 1]),
                aliases=tuple(e for e in chains[term] if e != term),
            )
        )
    residuals = np.asarray(results.resid)
    normality = float(scipy_stats.shapiro(residuals).pvalue) if len(residuals) >= 3 else None
    outliers = []
    if results.df_resid > 1:
        test = results.outlier_test()  # Bonferroni over the rows
        outliers = [int(i) for i in test.index[test.iloc[:, 2] < alpha]]
    return FactorialFit(
        effects=effects,
        sigma=float(np.sqrt(results.scale)),
        df=float(results.df_resid),
        level=level,
        normality_p=normality,
        outliers=outliers,
        results=results,
    )


def _term(term: str) -> str:
    return ":".join(f"Q('{f}')" for f in term.split(":"))


def logit_agrees(
    fitted: FactorialFit,
    table: pd.DataFrame,
    factors: Sequence[str],
    response: str,
    generators: str,
    alpha: float = ALPHA,
) -> bool:
    """Whether the same effects are called on the logit scale as on the accuracy scale (where
    effects are large, a ceiling can make an interaction of the accuracy scale)."""
    odds = scipy_stats.logistic.ppf(table[response].clip(1e-6, 1 - 1e-6))
    logit = table.assign(**{response: odds})
    again = fit(logit, factors, response, generators, alpha, interactions=True)
    called = {e.name for e in fitted.effects if e.differs}
    return called == {e.name for e in again.effects if e.differs}


@dataclass(frozen=True)
class Prediction:
    """A configuration's gain over the reference (every factor low), as the design reads it:
    the main effects of the factors it changes, plus each fitted interaction chain counted as
    whichever of its aliased interactions is the real one, so a range (points of the
    response's scale)."""

    changed: tuple[str, ...]  # the factors at their high level
    mains: float  # the main effects' sum alone
    low: float
    high: float


def predict(fitted: FactorialFit, changed: Sequence[str]) -> Prediction:
    """The gain of the configuration with `changed` at their high level. An interaction a:b
    with estimate c moves the response by -c when exactly one of a and b changes (its coded
    product goes from +1 to -1), else by 0; a chain of aliases holds one estimate for several
    interactions, so each chain adds the least and the most of its members' moves."""
    changed = tuple(changed)
    mains = sum(e.estimate for e in fitted.effects if e.name in changed)
    low = high = mains
    for chain in (e for e in fitted.effects if ":" in e.name):
        members = [chain.name, *(a for a in chain.aliases if a.count(":") == 1)]
        moves = [-chain.estimate if _one_of(m, changed) else 0.0 for m in members]
        low, high = low + min(moves), high + max(moves)
    return Prediction(changed, mains, low, high)


def _one_of(interaction: str, changed: Sequence[str]) -> bool:
    return sum(f in changed for f in interaction.split(":")) == 1


def recommend(fitted: FactorialFit) -> Prediction:
    """Among the configurations the design supports (any set of the factors whose main effect
    is clearly positive, the rest at the reference's level), the one whose predicted range has
    the highest low end; ties go to the higher top, then to fewer changes."""
    helps = [e.name for e in fitted.effects if ":" not in e.name and e.differs and e.estimate > 0]
    subsets = (c for r in range(len(helps) + 1) for c in itertools.combinations(helps, r))
    candidates = [predict(fitted, c) for c in subsets]
    return max(candidates, key=lambda p: (p.low, p.high, -len(p.changed)))
