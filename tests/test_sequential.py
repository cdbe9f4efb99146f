"""Deciding in rounds (cnnexp.sequential) proved by simulation: null studies hold the
family-wise level under optional stopping, with equal and unequal variances and every planned
look; planted differences are decided with the stated power in fewer runs on average than the
fixed design of the same power; equivalence is claimed wrongly at most alpha of the time."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from cnnexp import stats
from cnnexp.sequential import BETTER, DID_NOT_TRAIN, EQUIVALENT, WORSE, Deciding, Rounds

ROUNDS = Rounds(first=3, step=2, max_seeds=9)  # looks at 3, 5, 7 and 9 seeds: four looks


def simulate(effects, sds, rng, rounds=ROUNDS, margin=None):
    """One study: a control (mean 0, sds[0]) and an arm per effect, each seed a normal draw;
    returns each arm's final standing and the runs it took (the control's included)."""
    names = ["control", *(f"arm{i}" for i in range(len(effects)))]
    means = [0.0, *effects]
    draws = {
        n: rng.normal(mu, sd, rounds.max_seeds) for n, mu, sd in zip(names, means, sds, strict=True)
    }
    study = Deciding(names, "control", rounds, margin=margin)
    have = dict.fromkeys(names, 0)
    while wanted := study.wanted():
        have.update(wanted)
        study.look({n: draws[n][: have[n]] for n in names})
    return study.standing, sum(have.values())


def monte_carlo_bound(rate: float, studies: int) -> float:
    return rate + 3 * math.sqrt(rate * (1 - rate) / studies)


def family_error(sds, studies, seed, rounds=ROUNDS) -> float:
    rng = np.random.default_rng(seed)
    wrong = 0
    for _ in range(studies):
        standing, _ = simulate([0.0] * (len(sds) - 1), sds, rng, rounds)
        wrong += any(look.verdict in (BETTER, WORSE) for look in standing.values())
    return wrong / studies


def test_the_looks_spend_the_whole_level_and_less_of_it_early():
    assert ROUNDS.looks() == [3, 5, 7, 9]
    spent = ROUNDS.spent()
    assert spent.sum() == pytest.approx(1.0)
    assert spent == pytest.approx(np.diff([0, 1 / 9, 25 / 81, 49 / 81, 1]))  # t^2 at 3, 5, 7, 9
    strict, even = (replace(ROUNDS, spending=s).spent() for s in (3, 1))
    assert strict[0] < spent[0] < even[0] and strict[-1] > spent[-1] > even[-1]
    assert even == pytest.approx([1 / 3, 2 / 9, 2 / 9, 2 / 9])
    assert Rounds(first=3, step=4, max_seeds=9).looks() == [3, 7, 9]
    with pytest.raises(ValueError, match="first=1"):
        Rounds(first=1)


@pytest.mark.parametrize("spending", [1, 2, 3])
@pytest.mark.parametrize(
    ("sds", "studies"),
    [((1.0, 1.0, 1.0), 300), ((1.0, 4.0, 0.5), 300)],
    ids=["equal variances", "unequal variances"],
)
def test_null_studies_hold_the_family_wise_level_under_optional_stopping(sds, studies, spending):
    """Whatever the spending function: the looks' levels sum to alpha (the union bound)."""
    rate = family_error(sds, studies, 1, replace(ROUNDS, spending=spending))
    assert rate <= monte_carlo_bound(stats.ALPHA, studies), rate


@pytest.mark.slow
@pytest.mark.parametrize("sds", [(1.0, 1.0, 1.0, 1.0), (3.0, 1.0, 0.3, 1.0)])
def test_null_studies_hold_the_level_in_many_more_studies(sds):
    rate = family_error(sds, 1500, seed=2)
    assert rate <= monte_carlo_bound(stats.ALPHA, 1500), rate


def test_stopping_at_every_look_without_spending_would_not_hold_the_level():
    """The reason for the method: the same looks each at the full level err far too often."""
    rng = np.random.default_rng(3)
    wrong = 0
    for _ in range(300):
        draws = rng.normal(0, 1, (2, ROUNDS.max_seeds))
        wrong += any(
            stats.welch(draws[0][:n], draws[1][:n], stats.ALPHA).differs for n in ROUNDS.looks()
        )
    assert wrong / 300 > 0.08


def planted(effect: float, rounds: Rounds, studies: int = 300) -> tuple[float, float]:
    """How often a planted difference is decided, and the mean runs it takes."""
    rng = np.random.default_rng(7)
    found = [simulate([effect], (1.0, 1.0), rng, rounds) for _ in range(studies)]
    decided = np.mean([s["arm0"].verdict in (BETTER, WORSE) for s, _ in found])
    return float(decided), float(np.mean([runs for _, runs in found]))


def test_a_planted_difference_is_decided_in_fewer_runs_than_a_fixed_design_of_its_power():
    effect = 2.0  # two standard deviations of the seed noise
    power, average = planted(effect, ROUNDS)
    assert power >= 0.85, power
    fixed = stats.seeds_needed(1.0, effect, stats.ALPHA, power=power)  # per arm, two arms
    assert average < 2 * fixed, (average, 2 * fixed)
    print(f"power {power:.2f}: {average:.1f} runs on average, a fixed design {2 * fixed}")


def test_a_large_planted_difference_takes_fewer_runs_than_a_fixed_five_seed_sweep():
    """Four standard deviations (a change that clearly hurts, such as a rate ten times too
    small): decided as surely as by a fixed sweep of 5 seeds an arm, in fewer runs on average
    than its 10, and fewer than with the stricter t^3 spending."""
    decided, runs = planted(-4.0, ROUNDS)
    strict = planted(-4.0, replace(ROUNDS, spending=3))
    assert decided >= 0.99 and runs < 10, (decided, runs)
    assert runs < strict[1], (runs, strict)


def test_equivalence_is_claimed_wrongly_at_most_alpha_of_the_time():
    """A true difference exactly at the margin is not equivalent: claimed so at most alpha."""
    rng = np.random.default_rng(5)
    studies, margin = 300, 1.0
    claimed = sum(
        simulate([margin], (1.0, 1.0), rng, margin=margin)[0]["arm0"].verdict == EQUIVALENT
        for _ in range(studies)
    )
    assert claimed / studies <= monte_carlo_bound(stats.ALPHA, studies)


def test_arms_that_do_not_differ_end_equivalent_before_the_cap():
    rng = np.random.default_rng(6)
    standing, runs = simulate([0.0], (0.1, 0.1), rng, margin=1.0)
    assert standing["arm0"].verdict == EQUIVALENT
    assert runs < 2 * ROUNDS.max_seeds  # decided before the cap: no more seeds after that


def test_an_equivalent_arm_shows_the_interval_its_two_one_sided_tests_stand_for():
    """Equivalent at a look's level: the interval shown with it lies inside the margin (at
    1 - 2 level, the two one-sided tests' own), never one that crosses it."""
    rng = np.random.default_rng(8)
    levels = Deciding(["c", "a"], "c", ROUNDS)
    equivalent = [
        look
        for look in (simulate([0.0], (0.3, 0.3), rng, margin=0.5)[0]["arm0"] for _ in range(50))
        if look.verdict == EQUIVALENT
    ]
    assert len(equivalent) > 25  # most of them: the test below is about something
    for look in equivalent:
        c = look.comparison
        assert -0.5 < c.ci_low <= c.ci_high < 0.5
        assert c.level == pytest.approx(2 * levels.level(look.look))


def test_an_arm_closed_without_a_test_gets_no_more_seeds():
    study = Deciding(["c", "failed", "open"], "c", ROUNDS)
    study.look({"c": [0.90, 0.91, 0.92], "failed": [], "open": [0.90, 0.92, 0.91]})
    study.close("failed", DID_NOT_TRAIN)
    assert study.standing["failed"].verdict == DID_NOT_TRAIN
    assert study.wanted() == {"c": 5, "open": 5}


def test_a_decided_arm_keeps_its_verdict_while_the_others_run_on():
    rng = np.random.default_rng(7)
    study = Deciding(["c", "far", "near"], "c", ROUNDS)
    draws = {"c": rng.normal(0, 1, 9), "far": rng.normal(30, 1, 9), "near": rng.normal(0.5, 1, 9)}
    study.look({n: d[:3] for n, d in draws.items()})
    assert study.standing["far"].verdict == BETTER
    assert study.wanted() == {"c": 5, "near": 5}  # the decided arm gets no more seeds


def test_a_fixed_study_says_equivalent_where_its_interval_lies_inside_the_margin():
    from cnnexp.report.verdicts import BETTER, UNCLEAR, Arm, Verdicts, with_equivalence
    from cnnexp.stats import Comparison

    def arm(verdict, low, high):
        compared = Comparison(0.0, 0.001, 4, 0.0, 1.0, 1.0, low, high, 0.05, 0.01, "welch")
        return Arm({}, "", 3, 3, {}, (0.9,) * 3, 0.9, "4", verdict=verdict,
                   comparison=compared if verdict else None)  # fmt: skip

    arms = [arm(None, 0, 0), arm(UNCLEAR, -0.0015, 0.0012), arm(UNCLEAR, -0.0025, 0.0010),
            arm(BETTER, 0.001, 0.0015)]  # fmt: skip
    said = [a.words for a in with_equivalence(Verdicts(arms), margin=0.2).arms][1:]
    assert said == ["equivalent within ±0.2 points", UNCLEAR, "better"]
    assert with_equivalence(Verdicts(arms), 0.2).table["verdict"].tolist()[1] == said[0]


def test_an_option_that_changes_nothing_ends_as_the_same_networks_at_the_first_look():
    from cnnexp.sequential import SAME

    values = np.random.default_rng(8).normal(0.98, 0.003, 9)
    study = Deciding(["c", "noop"], "c", ROUNDS, margin=0.002)
    study.look({"c": values[:3], "noop": values[:3].copy()})
    assert study.standing["noop"].verdict == SAME and study.done()
