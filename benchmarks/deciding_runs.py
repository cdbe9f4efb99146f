"""Runs a deciding sweep spends (hydra/sweeper=decide, cnnexp/sequential.py) against a fixed
design, by simulation: a control and one arm whose seeds are normal draws, for several true
differences (in the noisier arm's standard deviations) and spreads; prints, per design of the
looks and spending function, how often the arm is decided and the mean runs of both arms, and
the same for a fixed 5-seed sweep (10 runs, Welch's test at the study's level).

    python benchmarks/deciding_runs.py [--studies 300]
"""

from __future__ import annotations

import argparse

import numpy as np

from cnnexp import stats
from cnnexp.sequential import BETTER, WORSE, Deciding, Rounds

# (difference, control sd, arm sd): in the arm's standard deviations; 0 is the null
CASES = [(1.5, 1, 1), (2, 1, 1), (4, 1, 1), (8, 1, 1), (8, 0.2, 1), (0, 1, 1)]
# the looks, and the spending function's power: 3 strict early (close to O'Brien-Fleming), 1
# spends evenly (close to Pocock)
DESIGNS = [
    Rounds(3, 2, 9, spending=3),
    Rounds(3, 2, 9, spending=2),
    Rounds(3, 2, 9, spending=1),
    Rounds(4, 2, 10, spending=3),
    Rounds(4, 2, 8, spending=3),
]


def one_study(rounds: Rounds, case: tuple, rng: np.random.Generator) -> tuple[bool, int]:
    """Whether the arm was decided, and the runs both arms took."""
    difference, control_sd, arm_sd = case
    draws = {
        "control": rng.normal(0.0, control_sd, rounds.max_seeds),
        "arm": rng.normal(-difference, arm_sd, rounds.max_seeds),
    }
    study, have = Deciding(["control", "arm"], "control", rounds), {"control": 0, "arm": 0}
    while wanted := study.wanted():
        have.update(wanted)
        study.look({name: draws[name][: have[name]] for name in draws})
    return study.standing["arm"].verdict in (BETTER, WORSE), sum(have.values())


def fixed_study(seeds: int, case: tuple, rng: np.random.Generator) -> tuple[bool, int]:
    """A fixed sweep of `seeds` seeds an arm, decided by Welch's test at the study's level."""
    difference, control_sd, arm_sd = case
    control, arm = rng.normal(0.0, control_sd, seeds), rng.normal(-difference, arm_sd, seeds)
    return stats.welch(arm, control, stats.ALPHA).differs, 2 * seeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=300)
    args = parser.parse_args()
    print("| looks (seeds an arm) | spending | difference | sds (control, arm) | decided | runs |")
    print("|---|---|---|---|---|---|")
    for rounds in DESIGNS:
        for case in CASES:
            rng = np.random.default_rng(1)
            found = [one_study(rounds, case, rng) for _ in range(args.studies)]
            decided = np.mean([d for d, _ in found])
            runs = np.mean([r for _, r in found])
            looks = ", ".join(map(str, rounds.looks()))
            sds = f"{case[1]:g}, {case[2]:g}"
            spending = f"t^{rounds.spending:g}"
            print(f"| {looks} | {spending} | {case[0]} | {sds} | {decided:.2f} | {runs:.1f} |")
    for case in CASES:
        rng = np.random.default_rng(1)
        decided = np.mean([fixed_study(5, case, rng)[0] for _ in range(args.studies)])
        sds = f"{case[1]:g}, {case[2]:g}"
        print(f"| fixed 5 | none | {case[0]} | {sds} | {decided:.2f} | 10.0 |")


if __name__ == "__main__":
    main()
