"""The family-wise level proven by simulation: null studies (every arm's mean equal) over the
variance patterns a study meets, 2-5 seeds and 1-10 arms, under every method, call at least one
arm no more often than the level promises; planted differences are found as often as the
detectable difference claims; null factorial designs call no effect beyond the level.

The default suite runs a few hundred seeded studies per case; the slow suite runs every cell of
the grid with more."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest

from cnnexp import design, stats

ALPHA = 0.05
PATTERNS = ("equal", "one wild arm", "wild baseline", "all unequal")
WILD = 5.0  # a wild arm's seed standard deviation, in multiples of the others'
SIGMA = 0.01  # one point of accuracy


def null_study(rng: np.random.Generator, pattern: str, seeds: int, arms: int) -> dict:
    """`arms` arms and a control, every mean 70%, seed noise by `pattern`."""
    sd = np.full(arms + 1, SIGMA)
    if pattern == "one wild arm":
        sd[1] = WILD * SIGMA
    elif pattern == "wild baseline":
        sd[0] = WILD * SIGMA
    elif pattern == "all unequal":  # each arm's sd drawn between sigma/sqrt(5) and sigma*sqrt(5)
        sd = SIGMA * np.exp(rng.uniform(-math.log(WILD) / 2, math.log(WILD) / 2, arms + 1))
    names = ["control", *(f"a{i}" for i in range(1, arms + 1))]
    return {
        name: (0.7 + s * rng.standard_normal(seeds)).tolist()
        for name, s in zip(names, sd, strict=True)
    }


def error_rate(method: str, pattern: str, studies: int, seeds=(2, 6), arms=(1, 11), seed=0):
    """The share of null studies in which the method calls at least one arm (for `none`, the
    share of comparisons called: it promises nothing for the family)."""
    rng = np.random.default_rng(seed)
    called = tested = 0
    for _ in range(studies):
        groups = null_study(rng, pattern, int(rng.integers(*seeds)), int(rng.integers(*arms)))
        found = stats.against_control(groups, "control", ALPHA, method)
        hits = [c.differs for c in found.values()]
        called += any(hits) if method != "none" else sum(hits)
        tested += 1 if method != "none" else len(hits)
    return called / tested, tested


def allowed(n: int, level: float = ALPHA) -> float:
    """The level plus three Monte Carlo standard errors of a share over n draws."""
    return level + 3 * math.sqrt(level * (1 - level) / n)


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # Bartlett's log of a zero variance
        yield


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("method", stats.METHODS)
def test_null_studies_call_an_arm_no_more_often_than_the_level(method, pattern):
    rate, n = error_rate(method, pattern, studies=200)
    assert rate <= allowed(n), (method, pattern, rate)


@pytest.mark.slow
@pytest.mark.parametrize("arms", [1, 4, 10])
@pytest.mark.parametrize("seeds", [2, 3, 4, 5])
@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("method", stats.METHODS)
def test_every_cell_of_the_grid_holds_its_level(method, pattern, seeds, arms):
    rate, n = error_rate(method, pattern, 200, (seeds, seeds + 1), (arms, arms + 1), seed=arms)
    assert rate <= allowed(n), (method, pattern, seeds, arms, rate)


def test_the_uncorrected_method_does_not_hold_the_family_and_the_others_do():
    """The case the family-wise correction exists for: seven arms of three seeds. Each test
    alone calls some arm in about a quarter of null studies; corrected, at most the level."""
    rng = np.random.default_rng(3)
    studies = [null_study(rng, "all unequal", 3, 7) for _ in range(200)]
    rates = {}
    for method in stats.METHODS:
        found = [stats.against_control(g, "control", ALPHA, method) for g in studies]
        rates[method] = np.mean([any(c.differs for c in f.values()) for f in found])
    assert rates["none"] > 0.12
    assert rates["bonferroni"] <= allowed(200) and rates["holm"] <= allowed(200)


@pytest.mark.parametrize("method", ["bonferroni", "holm"])
def test_a_planted_difference_is_found_as_often_as_the_detectable_difference_claims(method):
    """Four arms of five seeds; the first arm's true gap is the difference the report says its
    runs would find 80% of the time (Welch's test at the family's level, at this noise)."""
    seeds, arms, rng = 5, 4, np.random.default_rng(11)
    gap = stats.detectable(SIGMA * math.sqrt(2 / seeds), 2 * (seeds - 1), ALPHA / arms)
    hits = []
    for _ in range(300):
        groups = null_study(rng, "equal", seeds, arms)
        groups["a1"] = [v + gap for v in groups["a1"]]
        found = stats.against_control(groups, "control", ALPHA, method)
        hits.append(found["a1"].differs)
    # Welch's degrees of freedom are estimated, so it falls a little short of the claim; Holm
    # reaches a little past it (its later steps are less strict).
    assert np.mean(hits) == pytest.approx(0.8, abs=0.08), method


def test_a_paired_arm_shares_the_familys_level():
    """An arm measured in pairs is one comparison of the family: with it and four null arms,
    the study still calls an arm in at most the level's share of null studies."""
    from test_verdicts import study

    from cnnexp.report.verdicts import summarise

    rng = np.random.default_rng(5)
    called = 0
    for _ in range(150):
        groups = null_study(rng, "equal", 3, 4)
        shift = 0.002 * rng.standard_normal(3)  # evaluation noise of the same networks
        groups["paired"] = [v + s for v, s in zip(groups["control"], shift, strict=True)]
        losses = {(arm, s): 1.0 + s / 10 for arm in ("baseline", "paired") for s in range(3)}
        made = study({("baseline" if k == "control" else k): v for k, v in groups.items()},
                     losses=losses)  # fmt: skip
        summary = summarise(made).table
        assert summary.loc[summary["arch"] == "paired", "test"].item() == "paired t"
        called += summary["verdict"].isin(["better", "worse"]).any()
    assert called / 150 <= allowed(150)


# --- the factorial engine -------------------------------------------------------------------

FACTORS = ["kernel", "stride", "convs", "fc", "activation", "width", "pool"]


def null_design(rng: np.random.Generator, seeds: int, unequal: bool) -> pd.DataFrame:
    """16 points of the 2^(7-3) design x seeds, no effect at all; noise equal at every point or
    drawn per point between sigma/sqrt(5) and sigma*sqrt(5)."""
    x = np.repeat(design.points(design.SEVEN_IN_SIXTEEN), seeds, axis=0)
    sd = SIGMA * np.exp(rng.uniform(-0.8, 0.8, 16)) if unequal else np.full(16, SIGMA)
    table = pd.DataFrame(x, columns=FACTORS)
    table["final_test_acc"] = 0.7 + np.repeat(sd, seeds) * rng.standard_normal(len(x))
    return table


def design_error_rate(studies: int, seeds: int, unequal: bool, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    called = 0
    for _ in range(studies):
        table = null_design(rng, seeds, unequal)
        fitted = design.fit(table, FACTORS, "final_test_acc", design.SEVEN_IN_SIXTEEN)
        called += any(e.differs for e in fitted.effects)
    return called / studies


@pytest.mark.parametrize("unequal", [False, True], ids=["equal noise", "unequal noise"])
def test_null_designs_call_no_effect_or_chain_beyond_the_level(unequal):
    """Every main effect and interaction chain the design fits, as one family (Šidák)."""
    assert design_error_rate(200, 2, unequal) <= allowed(200)


@pytest.mark.slow
@pytest.mark.parametrize("seeds", [2, 3])
@pytest.mark.parametrize("unequal", [False, True], ids=["equal noise", "unequal noise"])
def test_null_designs_hold_their_level_over_many_studies(seeds, unequal):
    assert design_error_rate(1000, seeds, unequal, seed=seeds) <= allowed(1000)
