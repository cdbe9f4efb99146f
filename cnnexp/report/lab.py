"""The lab report (`python -m cnnexp.report --lab`), as a grader reads it: a summary of the
four answers, then the lab's questions in order (1 LeNet-5 on MNIST, 2 our CIFAR-10 network,
3.1 pooling, 3.2 changes to the network), each opening with its answer in plain words, then one
small table and the figures that back it (cnnexp.report.evidence); then the bonuses. Every
study's whole section (its network's layers, recipe, budget check, curves, the machine's load)
is folded into the appendix, under the question it answers ("bonus" or "other" for the rest)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cnnexp.report import ladder
from cnnexp.report.agreement import agreements, sentence
from cnnexp.report.answers import (
    POWER,
    could_find,
    counted,
    interval,
    pct,
    unstable_sentences,
    verdict_sentences,
)
from cnnexp.report.budget import check_phrase
from cnnexp.report.document import INTERVAL_KINDS, Document
from cnnexp.report.evidence import HOW_SURE, add_bonuses, add_network_answer
from cnnexp.report.factorial import best_point_sentence, design_of, effects_answer, pooling_effect
from cnnexp.report.pooling import MECHANICS, add_feature_maps
from cnnexp.report.recipe import budget_phrase, heading
from cnnexp.report.runs import Study, StudyRun, mean_of
from cnnexp.report.section import add_study
from cnnexp.report.verdicts import DECIDED, EQUIVALENT, UNCLEAR, Arm, Verdicts
from cnnexp.schema import TEST_ACC, without_key
from cnnexp.studies import flatten

# The lab's questions (../shared/LAB.md): number -> (title, what the lab asks).
QUESTIONS = {
    "1": (
        "LeNet-5 on MNIST",
        "Build LeNet-5 in PyTorch, train it on MNIST and test it on the test set.",
    ),
    "2": (
        "Our own network on CIFAR-10",
        "Design a stronger convolutional network of our own for CIFAR-10, train it and test it "
        "on the test set.",
    ),
    "3.1": (
        "Max or average pooling",
        "What differs between max pooling and average pooling, and which is better?",
    ),
    "3.2": (
        "Changes to the network, and what improved ours",
        "Which changes to the network (kernel size and stride, conv layers, fully connected "
        "layers, activation, channels) improve it, and by how much? Which strategies improved "
        "our own network, and why?",
    ),
}
OTHER = "other"  # runs that answer none of the lab's questions
Summarised = tuple[Study, Verdicts]  # a study and its verdicts (verdicts.summarise)


# The lab asks for its networks trained on a GPU, with nvidia-smi's view of it.
NO_GPU = (
    "The GPU requirement: the lab asks for both networks trained on a GPU, with nvidia-smi "
    "screenshots. No run in this report used a GPU: the machine that made them has none, so "
    "every run trained on its CPU, and each study's load plot shows the CPU instead. On a "
    "machine with an NVIDIA GPU, `python -m cnnexp.lab --budget full` trains the same studies "
    "there; each run then keeps nvidia-smi's own table (`nvidia-smi.txt`) and its GPU "
    "utilisation and memory every second (`system.csv`), which this report shows in place of "
    "the CPU's."
)


def gpu_paragraph(studies: list[Study]) -> str:
    """Whether the lab's GPU requirement is met here, and how to meet it where it is not."""
    devices = (str(r.record.device) for s in studies for r in s.runs)
    if not any(d.startswith("cuda") for d in devices):
        return NO_GPU
    return (
        "The GPU requirement: these runs trained on a GPU; each question's evidence shows "
        "nvidia-smi's own table (`nvidia-smi.txt`) and the GPU's utilisation and memory over "
        "a run's training."
    )


def question_of(study: Study) -> str:
    """Which lab question a study answers: its own (pooling studies 3.1, other comparisons 3.2),
    else single runs 1 on gray digits or clothes (MNIST, Fashion-MNIST) and 2 on colour images
    (CIFAR-10, CIFAR-100)."""
    if number := study.kind.answers_lab():
        return number
    channels = {flatten(c).get("data.channels") for c in study.configs()}
    return {1: "1", 3: "2"}.get(channels.pop(), OTHER) if len(channels) == 1 else OTHER


def add_questions(
    doc: Document,
    studies: list[Study],
    verdicts: list[Verdicts],
    shots: dict[str, list[tuple[Path, str]]] | None,
    caveat: str | None = None,
) -> list[Evidence]:
    """A summary of the answers, the GPU paragraph, then one section per lab question in the
    lab's order: its answer in plain words (`caveat` opening it), one small table and its
    figures; then the bonuses. `shots`: TensorBoard's pages taken, None where they were not
    asked for. Returns each study's evidence, for the appendix."""
    asked, shots = shots is not None, shots or {}
    by_question: dict[str, list[tuple[int, Study, Verdicts]]] = {}
    for i, (study, decided) in enumerate(zip(studies, verdicts, strict=True)):
        by_question.setdefault(question_of(study), []).append((i, study, decided))
    for members in by_question.values():  # a ladder opens its question
        members.sort(key=lambda member: not member[1].kind.climbs())
    answers = _answers(by_question, studies, verdicts)
    ours = [study for _, study, _ in by_question.get("2", [])]  # the ladder's last step at Q2
    add_summary(doc, answers, caveat)
    doc.para(gpu_paragraph(studies))
    for number, (title, ask) in QUESTIONS.items():
        doc.heading(2, f"{number} {title}")
        doc.para(f"The lab asks: {ask}")
        said = answers[number]
        if not said:
            doc.answer("Not answered here: no runs for this question were given to the report.")
            continue
        shown = said if number in ("1", "2") else [plain(part) for part in said]
        doc.answer([caveat, *shown] if caveat else shown)
        if shown != said:
            with doc.folded("The same answer with its numbers: seeds, intervals, tests, budgets"):
                doc.bullets(said)
        _main_evidence(doc, number, by_question.get(number, []), shots, ours)
    add_bonuses(doc, studies, shots, asked)
    return [
        Evidence(number, study, decided, _tag(i, study), shots.get(study.name, []))
        for number, members in by_question.items()
        for i, study, decided in members
    ]


@dataclass(frozen=True)
class Evidence:
    """Everything one study measured, for the appendix: the question it answers, its verdicts,
    its figures' prefix and its TensorBoard pages."""

    question: str
    study: Study
    verdicts: Verdicts
    tag: str
    shots: list[tuple[Path, str]]


def _answers(by_question, studies, verdicts) -> dict[str, list[str]]:
    """Each question's answer in sentences; a factorial design with a pooling factor and two
    studies that estimate the same comparison answer 3.1 or 3.2 too."""
    designs = [s for s in studies if s.kind.answers_factors()]
    tested = agreements(studies, verdicts)
    pairs = list(zip(studies, verdicts, strict=True))
    answers = {}
    for number in QUESTIONS:
        said = answer(number, by_question.get(number, []), pairs)
        said += pooling_effects(designs, pairs) if number == "3.1" else []
        answers[number] = said + [sentence(a) for a in tested if _question_of(a) == number]
    return answers


def add_summary(doc: Document, answers: dict[str, list[str]], caveat: str | None) -> None:
    """The four answers, each its first sentence, before any evidence."""
    doc.heading(2, "Summary")
    if caveat:
        doc.para(caveat)
    doc.bullets(
        [
            f"{number} {QUESTIONS[number][0]}: "
            + " ".join(_first_sentence(plain(part)) for part in said[:2])
            for number, said in answers.items()
            if said
        ]
    )


def _first_sentence(text: str) -> str:
    """The first sentence that says something (not the study's own question), up to its full
    stop (not one inside a number or a name)."""
    sentences = re.split(r"(?<=[.!?])\s+(?=[A-Z])", text)
    return next((s for s in sentences if not s.endswith("?")), sentences[0])


def plain(text: str) -> str:
    """A sentence without its parentheses (seeds, intervals, tests, budgets), which the table
    under the answer and the folded full answer give."""
    while True:
        shorter = re.sub(r"\s*\([^()]*\)", "", text)
        if shorter == text:
            return text
        text = shorter


def _main_evidence(doc, number, members, shots, ours: list[Study]) -> None:
    """One small table and the figures a grader looks at, beside a question's answer."""
    if number in ("1", "2"):
        for i, study, _ in members:
            add_network_answer(doc, study, _tag(i, study), shots.get(study.name, []))
        return
    if number == "3.1" and members:
        doc.bullets(MECHANICS)
        doc.table(side_by_side([(s, decided) for _, s, decided in members]), as_text=True)
        doc.para(HOW_SURE)
        for i, study, _ in members:
            add_feature_maps(doc, study, _tag(i, study))
    for i, study, decided in members:  # a ladder's figure and table open 3.2's evidence
        if study.kind.climbs():
            alpha = decided.alpha
            ladder.add_figure(doc, study, _tag(i, study), alpha)
            doc.table(ladder.table(*ladder.steps(study, alpha)), as_text=True)
            doc.para(HOW_SURE)
            for network in ours:  # the last step at Question 2's own budget
                if said := ladder.at_full_budget(study, network, alpha):
                    doc.para(said)


def add_evidence(doc: Document, evidence: list[Evidence]) -> None:
    """Each study's whole section, folded: its network's layers, recipe, budget check,
    accuracy tables, curves and the machine's load."""
    doc.heading(2, "Appendix: the evidence of each study")
    for item in evidence:
        with doc.folded(f"{item.question}: {heading(item.study)}"):
            _evidence(doc, item.question, item.study, item.verdicts, item.tag, item.shots)


def _question_of(agreement) -> str:
    """Pooling answers 3.1; any other setting two studies share answers 3.2."""
    return "3.1" if agreement.one.key == "pool" else "3.2"


def _evidence(doc, number, study, verdicts, tag, shots) -> None:
    doc.shift = 1  # the study's own headings nest under the appendix
    try:
        add_study(doc, study, verdicts, tag, network=number in ("1", "2"), shots=shots)
    finally:
        doc.shift = 0


def _tag(index: int, study: Study) -> str:
    """The prefix of a study's figure files in the lab report."""
    return f"{index}-{study.name}".replace("/", "_")


def answer(
    number: str, members: list[tuple[int, Study, Verdicts]], pairs: list[Summarised]
) -> list[str]:
    """The plain-words answer to one question from its studies' summaries, with the runs out
    of line with their own seeds named where they are."""
    if number in ("1", "2"):
        return [single_run_answer(study, decided) for _, study, decided in members]
    unstable = [line for _, s, decided in members for line in unstable_sentences(s, decided)]
    if number == "3.1":
        pairs = [(s, decided) for _, s, decided in members]
        return (pooling_answer(pairs) + unstable) if members else []
    said = [change_answer(study, decided, pairs) for _, study, decided in members]
    return said + unstable


def change_answer(study: Study, verdicts: Verdicts, pairs: list[Summarised]) -> str:
    """3.2 from one study: a factorial's main effects, a confirmation's measured gain of the
    network the effects recommend, or a one-factor study's verdicts."""
    alpha = verdicts.alpha
    if study.kind.climbs():
        return f"{ladder.answer(study, alpha)} Under {budget_phrase(study)}."
    if study.kind.answers_factors():
        check = check_phrase(study, verdicts)
        return f"{effects_answer(study, _setting(study), alpha)} Budget check: {check}."
    if study.kind.confirms():
        studies = [s for s, _ in pairs]
        best = best_point_sentence(study, verdicts, studies)
        source = design_of(study, studies)
        check = check_phrase(source, _verdicts_of(source, pairs)) if source is not None else None
        budget = f" Budget check of the design: {check}." if check else ""
        return confirm_answer(study, verdicts) + (f" {best}" if best else "") + budget
    return verdict_sentences(study, verdicts)


def confirm_answer(study: Study, verdicts: Verdicts) -> str:
    """'The recommended network (activation=gelu) ... against the reference configuration'."""
    arms = [a for a in verdicts.compared if a.comparison is not None]
    base = verdicts.control_of(arms[0]) if arms else None
    if base is None:
        return f"{_setting(study)}: the confirmation has no usable runs of both arms."
    arm, c = arms[0], arms[0].comparison
    means = (
        f"{pct(arm.mean)} against {pct(base.mean)} for the reference configuration "
        f"({counted(arm)} each, fresh seeds; {interval(arm, verdicts.alpha)})"
    )
    if arm.verdict in DECIDED:
        gain = "gains" if c.diff > 0 else "loses"
        return (
            f"Confirmed by runs on {_setting(study)}: the network the main effects recommend "
            f"({arm.label}, every other factor at its low level) {gain} "
            f"{100 * abs(c.diff):.2f} points: {means}."
        )
    return (
        f"Not confirmed on {_setting(study)}: the network the main effects recommend "
        f"({arm.label}) reached {means}; no clear difference (a true gain of "
        f"{100 * c.detectable:.2f} points would have been found {POWER} of the time)."
    )


def pooling_effects(designs: list[Study], pairs: list[Summarised]) -> list[str]:
    """What each factorial design says of max against average pooling."""
    said = []
    for study in designs:
        effect = pooling_effect(study, _setting(study))
        if effect:
            check = check_phrase(study, _verdicts_of(study, pairs))
            said.append(f"{effect} Budget check: {check}.")
    return said


def _verdicts_of(study: Study, pairs: list[Summarised]) -> Verdicts:
    return next(verdicts for s, verdicts in pairs if s is study)


def single_run_answer(study: Study, verdicts: Verdicts) -> str:
    """'LeNet5 reached 99.32% ... (one run, seed 0; budget; 77 s of training on the cpu).'"""
    usable = study.usable()
    if not usable:
        why = "; ".join(f"{r.status.replace('_', ' ')}: {r.record.error}" for r in study.runs)
        return f"{study.name} has no test accuracy to report: the run {why}."
    run = usable[0]
    seed = flatten(run.config).get("seed")
    who = f"one run, seed {seed}" if len(usable) == 1 else counted(verdicts.arms[0])
    images = run.record.test_images
    on = f" on the {int(images):,} test images" if images is not None else ""
    text = f"{network_name(study)} reached {pct(mean_of(usable, TEST_ACC))} test accuracy{on} ("
    text += (
        f"{who}; {budget_phrase(study)}; {mean_of(usable, 'train_seconds'):.0f} s of training "
        f"on the {run.record.device} in {run.record.precision})."
    )
    return text + "".join(_evaluation_only(usable))


def _evaluation_only(usable: list[StudyRun]) -> list[str]:
    """What the headline figure owes to the evaluation-only options (same networks, same run)."""
    config, choices = flatten(usable[0].config), usable[0].record.choices
    said = []
    for option, what in (("tta", "test-time augmentation"), ("ema", "a weight average")):
        # tta is a group (its choice names it), ema a value; older runs had tta as a value
        setting = (choices or {}).get(option, config.get(option))
        if setting in (None, "none", False):
            continue
        without = mean_of(usable, without_key(option))
        if pd.notna(without):
            said.append(
                f" That figure is measured with {what} ({option}={setting}); without it the "
                f"same network scores {pct(without)}, measured in the same run."
            )
    return said


def pooling_answer(members: list[Summarised]) -> list[str]:
    """Each pooling study's verdict in one sentence with its budget check."""
    said = []
    for study, verdicts in members:
        sentences = pooling_verdicts(study, verdicts)
        if not sentences:
            said.append(f"On {_setting(study)}: no verdict (no baseline or no arm to compare).")
            continue
        check = check_phrase(study, verdicts)
        said += [f"{sentence} Budget check: {check}." for sentence in sentences]
    return said


def pooling_verdicts(study: Study, verdicts: Verdicts) -> list[str]:
    """Each compared arm's verdict against the baseline in one sentence with its numbers; none
    without a baseline or an arm to compare."""
    setting = _setting(study)
    return [
        _pooling_sentence(study, base, arm, setting, verdicts.alpha)
        for arm in verdicts.compared
        if (base := verdicts.control_of(arm)) is not None
    ]


def side_by_side(members: list[Summarised]) -> pd.DataFrame:
    """One row per compared arm of each pooling study: the setting, both means, the gap with
    its interval, the verdict and what the runs could have detected."""
    rows = []
    for study, verdicts in members:
        factor = next(iter(study.baseline), None)
        for arm in verdicts.compared:
            base = verdicts.control_of(arm)
            if base is None:
                continue
            c = arm.comparison
            rows.append(
                {
                    "setting": _setting(study),
                    f"{factor}={base.levels[factor]} %": f"{100 * base.mean:.2f}",
                    "arm": f"{factor}={arm.levels[factor]}",
                    "arm %": f"{100 * arm.mean:.2f}" if arm.n else "—",
                    "difference (points)": f"{100 * c.diff:+.2f}" if c else "—",
                    "95% CI": _points(c.ci_low, c.ci_high) if c else "—",
                    "interval": INTERVAL_KINDS.get(c.correction, "") if c else "",
                    "verdict": arm.words,
                    "seeds": arm.n,
                    f"detectable at {POWER} power (points)": _number(c.detectable) if c else "—",
                }
            )
    return pd.DataFrame(rows)


def _points(low: float, high: float) -> str:
    return f"{100 * low:+.2f} to {100 * high:+.2f}" if pd.notna(low) else "—"


def _number(points: float) -> str:
    return f"{100 * points:.2f}" if pd.notna(points) else "—"


def _pooling_sentence(study, base: Arm, arm: Arm, setting: str, alpha: float) -> str:
    factor = next(iter(study.baseline))
    mine, theirs = f"{factor}={arm.levels[factor]}", f"{factor}={base.levels[factor]}"
    reached = pct(arm.mean) if arm.n else f"no usable run of {arm.runs}"
    means = f"{mine} {reached} against {theirs} {pct(base.mean)} ({counted(arm)} each"
    if arm.verdict in DECIDED:
        return f"On {setting}: {mine} is {arm.words}: {means}; {interval(arm, alpha)})."
    if arm.verdict == EQUIVALENT:
        verdict = f"{mine} is {arm.words} of {theirs}"
        return f"On {setting}: {verdict}: {means}; {interval(arm, alpha)})."
    if arm.verdict == UNCLEAR:
        return (
            f"On {setting}: no clear difference: {means}; {interval(arm, alpha)}; "
            f"{could_find(arm.comparison)})."
        )
    return f"On {setting}: {arm.words}: {means})."


def _setting(study: Study) -> str:
    return f"{network_name(study)} ({budget_phrase(study)})"


def network_name(study: Study) -> str:
    """The class of the study's network, from its records or else its saved config."""
    named = [r.record.model for r in study.runs if r.record.model]
    if named:
        return str(named[0])
    targets = {flatten(c).get("model._target_") for c in study.configs()} - {None}
    return str(targets.pop()).rsplit(".", 1)[-1] if len(targets) == 1 else heading(study)
