"""A deciding sweep's rounds (hydra/sweeper=decide): its plan (the arms, the control, the rounds
and caps), each round's jobs through the launcher, each finished run's test accuracy read from
its record, the look after each round (cnnexp.sequential) and the standing so far in the sweep's
decide.json, which the report reads for its verdicts."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnexp import stats
from cnnexp.errors import DamagedFileError
from cnnexp.schema import ACC, COMPLETED, DECIDE_FILE, chance_reason, read_record
from cnnexp.sequential import DID_NOT_TRAIN, Deciding
from cnnexp.studies import Check, Study, key_value


@dataclass
class Plan:
    """A deciding sweep: its arms by name (their overrides), what decides them, its time cap,
    and its budget check: the arms it trains again whatever the rounds decide (the control, a
    two-arm study's both, those named), and its seeds and epochs."""

    arms: dict[str, list[str]]
    deciding: Deciding
    minutes: float | None
    check: Check = field(default_factory=Check)
    always_checked: list[str] = field(default_factory=list)


def in_rounds(sweeper: Any, arms: list[list[str]]) -> bool:
    """Whether a sweep (its hydra.sweeper node, its arms: studies.arms_of) decides in rounds:
    hydra/sweeper=decide over arms that give no seeds (a seed list keeps a plain grid)."""
    if not str(sweeper.get("_target_", "")).endswith(".DecideSweeper"):
        return False
    return not any(key_value(o)[0] == "seed" for arm in arms for o in arm)


def plan(study: Study, arms: list[list[str]]) -> Plan:
    """The arms of the sweep, named by their overrides; the control is the study's baseline
    where it names one, else the first arm."""
    shared = set.intersection(*(set(arm) for arm in arms))  # named by what differs
    named = {" ".join(o for o in arm if o not in shared) or "as configured": arm for arm in arms}
    baseline = [f"{k}={v}" for k, v in study.reference().items()]
    control = next((n for n, arm in named.items() if set(baseline) <= set(arm)), next(iter(named)))
    d = study.decide
    rounds = d.rounds()
    deciding = Deciding(list(named), control, rounds, stats.ALPHA, d.margin / 100)
    fixed = study.check_arms(list(named.values()))
    always = [n for n, arm in named.items() if n == control or arm in fixed]
    return Plan(named, deciding, d.minutes, study.check, always)


def say_plan(plan: Plan, seconds: dict[str, float], at_a_time: int) -> None:
    """The rounds, the caps and the time on this machine: from the first round alone (every
    arm decided there) to every arm at the cap, at each arm's timed seconds a run."""
    d = plan.deciding
    cap = f", or {plan.minutes:g} minutes" if plan.minutes else ""
    least = sum(seconds.values()) * d.rounds.first / at_a_time / 60
    most = sum(seconds.values()) * d.rounds.max_seeds / at_a_time / 60
    if plan.minutes:
        most = min(most, plan.minutes + least)  # the round under way at the cap finishes
    runs = _span(len(d.arms) * d.rounds.first, len(d.arms) * d.rounds.max_seeds)
    print(
        f"decide: {len(d.arms)} arms against {d.control}, {d.rounds.first} seeds each, then "
        f"{d.rounds.step} more for each arm still open, up to {d.rounds.max_seeds}{cap}; an arm "
        f"within +-{100 * d.margin:g} points is equivalent (looks at "
        f"{', '.join(map(str, d.rounds.looks()))} seeds; {runs} runs, about "
        f"{_span(round(least), round(most))} min here)"
    )
    say_check_plan(plan, seconds, at_a_time)


def say_check_plan(plan: Plan, seconds: dict[str, float], at_a_time: int) -> None:
    """The budget check after the rounds: from the arms it always trains again to every arm
    decided, at `check.times` each arm's timed seconds a run."""
    c = plan.check
    if not c.seeds:
        return
    scale = len(c.seeds) * c.times / at_a_time / 60  # an arm's seconds a run -> its minutes
    least = sum(seconds[n] for n in plan.always_checked) * scale
    most = sum(seconds.values()) * scale
    runs = _span(len(plan.always_checked) * len(c.seeds), len(plan.arms) * len(c.seeds))
    decided = "" if len(plan.always_checked) == len(plan.arms) else " and the arms decided"
    print(
        f"decide: then its budget check: {', '.join(plan.always_checked)}{decided}, "
        f"{len(c.seeds)} seeds each at {c.times} times the epochs ({runs} runs, about "
        f"{_span(round(least), round(most))} min here)"
    )


def _span(low: int, high: int) -> str:
    return str(low) if low == high else f"{low} to {high}"


def run_seconds(plan: Plan, at_a_time: int, compose: Callable[[list[str]], Any]) -> dict:
    """Each arm's seconds a run on this machine, as the lab's planner times them (a few steps
    of its network on random images, its images and epochs); `compose` makes a job's config
    as the sweep will (the sweeper's config loader)."""
    from cnnexp import lab

    timings: dict[str, tuple[float, float]] = {}
    return {
        name: lab.job_seconds(compose([*arm, "seed=0"]), timings, at_a_time)
        for name, arm in plan.arms.items()
    }


def run(plan: Plan, launcher, validate: Callable[[list], None], folder: Path) -> list:
    """The rounds until every arm is decided or a cap is reached; the launcher's returns."""
    d = plan.deciding
    values: dict[str, list[float | None]] = {name: [] for name in d.arms}
    start, index, returns = time.monotonic(), 0, []
    while wanted := d.wanted():
        if plan.minutes and time.monotonic() - start > 60 * plan.minutes:
            print(f"decide: the {plan.minutes:g}-minute cap is reached; the open arms end open")
            break
        batch, owners = [], []
        for name, seeds in wanted.items():
            for seed in range(len(values[name]), seeds):
                batch.append([*plan.arms[name], f"seed={seed}"])
                owners.append(name)
        validate(batch)
        results = launcher.launch(batch, initial_job_idx=index)
        index += len(batch)
        returns.append(results)
        for name, result in zip(owners, results, strict=True):
            values[name].append(accuracy(result))
        d.look({name: [v for v in vs if v is not None] for name, vs in values.items()})
        for name in d.open_arms():  # an arm none of whose runs trained gets no more seeds
            if values[name] and all(v is None for v in values[name]):
                d.close(name, DID_NOT_TRAIN)
        save(folder, plan, values)
        say_round(plan, values, time.monotonic() - start)
    return returns


def checked(plan: Plan) -> list[str]:
    """The arms the check trains again, in the arms' order: those it always does (the control,
    a two-arm study's both, those named) and those the rounds decided (better, worse or
    equivalent), to say whether each answer holds with more training."""
    wanted = {*plan.always_checked, *plan.deciding.decided()}
    return [name for name in plan.arms if name in wanted]


def checked_arms(plan: Plan) -> list[list[str]]:
    """The overrides of the arms the check trains again (checked)."""
    return [plan.arms[name] for name in checked(plan)]


def say_check(plan: Plan, checks: list[list[str]]) -> None:
    """What the check trains again (checked), its runs and their epochs."""
    epochs = [value for key, value in map(key_value, checks[0]) if key == "epochs"][-1]
    names = ", ".join(checked(plan))
    print(f"decide: the budget check, {len(checks)} runs at {epochs} epochs: {names}")


def accuracy(result: Any) -> float | None:
    """A finished job's final test accuracy from its record; None for a run that did not end
    completed or ended at chance (it is left out of its arm's values, as the report leaves it
    out: schema.chance_reason)."""
    where = _job_folder(result.hydra_cfg)
    try:
        record = read_record(Path(where))
    except DamagedFileError:
        return None
    if record is None or record.status != COMPLETED or chance_reason(record):
        return None
    value = record.final(ACC)
    return None if value is None else float(value)


def _job_folder(config) -> str:
    """Where a job of the sweep wrote: its sweep folder and its subfolder (the job's number),
    from the config the launcher composed for it (set before the job ran, so any launcher's)."""
    return str(Path(config.hydra.sweep.dir) / str(config.hydra.sweep.subdir))


def say_round(plan: Plan, values: dict[str, list], seconds: float) -> None:
    """One line a round: the round, the arms still open, the runs done and the time left at
    this pace (the open arms' seeds up to the cap)."""
    d = plan.deciding
    done = sum(len(v) for v in values.values())
    still = d.open_arms()
    left = sum(d.rounds.max_seeds - len(values[a]) for a in [*still, d.control]) if still else 0
    pace = seconds / done if done else 0.0
    head = f"decide: round {d.looked} of {len(d.rounds.looks())}: {done} runs done"
    if d.done():  # the last look: what is still open ends so, with no clear difference
        ended = f"; {len(still)} arms end undecided at the cap" if still else "; no arm left open"
        print(head + ended)
        return
    print(
        f"{head}, {len(still)} of {len(d.compared)} arms open, at most {left} more "
        f"(about {left * pace / 60:.0f} min at this pace)"
    )


def save(folder: Path, plan: Plan, values: dict[str, list]) -> None:
    """Each arm's standing after the last look, for the report."""
    d = plan.deciding
    arms = {}
    for name, look in d.standing.items():
        c = look.comparison
        arms[name] = {
            "overrides": plan.arms[name],
            "verdict": look.verdict,
            "seeds": look.seeds,
            "look": look.look + 1,
            "diff": c.diff,
            "ci_low": c.ci_low,
            "ci_high": c.ci_high,
            "df": c.df,
            "level": c.level,
            "equivalence_p": look.equivalence_p,
        }
    record = {
        "control": d.control,
        "control_overrides": plan.arms[d.control],
        "alpha": d.alpha,
        "margin_points": 100 * d.margin if d.margin else None,
        "looks": d.rounds.looks(),
        "spending": d.rounds.spending,
        "looked": d.looked,
        "runs": {name: len(v) for name, v in values.items()},
        "arms": arms,
        "method": f"alpha spent over the planned looks (t^{d.rounds.spending:g}), Bonferroni over "
        "the arms; "
        "Welch's intervals and two one-sided tests of equivalence at each look's level",
    }
    (folder / DECIDE_FILE).write_text(json.dumps(record, indent=2, default=float))
