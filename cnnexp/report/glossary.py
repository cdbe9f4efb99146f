"""The statistics words a report uses, each in two or three plain sentences: the report says
the plain sentence first and names the method; this appendix says what the name means."""

from __future__ import annotations

from cnnexp.report.document import Document

GLOSSARY = {
    "seed": "The random start of a run: its initial weights and the order of its images. Two "
    "seeds of one network end a little apart; that spread is the noise every comparison must "
    "beat.",
    "95% interval (confidence interval)": "The range of true differences the runs are "
    "consistent with. Made this way, such ranges contain the true difference 95 times in "
    "100. A difference is decided (better or worse) when its interval excludes zero.",
    "family-wise (simultaneous) intervals": "When a study makes several comparisons at once, "
    "each interval is widened so that all of them hold together 95 times in 100, not each "
    "alone; otherwise one comparison in twenty would look decided by chance.",
    "Bonferroni's correction": "The simplest way to make intervals family-wise: with m "
    "comparisons, each is made at level 0.05 / m.",
    "Welch's t-test": "Compares two means when the two groups may spread differently; the "
    "default here for two arms with their own seeds.",
    "paired t-test": "Compares two measurements of the same networks (with and without "
    "test-time augmentation, say) seed by seed, so the seed-to-seed noise cancels.",
    "pooled standard deviation": "One estimate of the seed noise from every arm together, "
    "used where the arms spread alike (Bartlett's test checks that they do).",
    "factorial design and aliases": "Several factors, each at two levels, changed together in "
    "a planned set of configurations, so every run informs every factor's main effect (its "
    "average change). A fractional design runs a fraction of all combinations; an effect is "
    "then mixed with (aliased to) some interactions, which its resolution says.",
    "power": "How often a study of this size would find a true difference of a given size; "
    "the reports state the difference found 80% of the time.",
    "equivalent within ±m points": "The interval lies wholly inside ±m points: the runs show "
    "the two arms differ by less than m, which is an answer, not a failure to find a "
    "difference (the two one-sided tests of equivalence).",
    "deciding in rounds (alpha spending)": "A deciding sweep adds seeds in rounds and stops an "
    "arm once it is decided. Looking after every round would find false differences more "
    "often than 5%, so each look tests at a share of the 5%, strict early and most at the "
    "last look; all the looks together stay within 5%.",
    "budget check": "The arms trained again at twice the epochs: it says whether an answer "
    "holds, shrinks or flips with more training.",
}


def add_glossary(doc: Document) -> None:
    """The glossary, as the report's last section."""
    doc.heading(2, "Glossary")
    with doc.folded("What the statistics words of this report mean, in plain sentences"):
        doc.bullets([f"{term}: {meaning}" for term, meaning in GLOSSARY.items()])
