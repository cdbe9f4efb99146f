"""The renderer: a report's blocks as markdown and as one self-contained HTML file, and the
summary table as a reader sees it (percentages, no empty columns)."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd

# summary.csv column -> the report's heading; accuracies are shown in percent
SUMMARY_HEADINGS = {
    "runs": "runs",
    "usable": "usable",
    "did not train": "did not train",
    "diverged": "diverged",
    "failed": "failed",
    "incomplete": "incomplete",
    "unreadable": "unreadable",
    "mean": "test acc % (mean)",
    "median": "median",
    "std": "± std",
    "seed_values": "each seed",
    "diff": "vs baseline (points)",
    "ci": "CI (points)",
    "correction": "interval",
    "p_adjusted": "family-wise p",
    "test": "test",
    "detectable": "80% power at (points)",
    "verdict": "verdict",
    "decided_at": "decided at",
    "train_seconds_mean": "train s",
    "images_per_second_mean": "img/s",
    "parameters_mean": "parameters",
    "macs_mean": "MACs",
}
# What each family correction (cnnexp.stats.METHODS) makes of an interval, as tables and
# sentences name it.
INTERVAL_KINDS = {
    "bonferroni": "simultaneous",
    "holm": "Holm step",
    "none": "uncorrected",
    "sequential": "sequential (level spent over the looks)",
}
PERCENT = ("mean", "median", "std", "diff", "detectable")
HIDDEN_COLUMNS = {
    "values",
    "budget_epochs",
    "value_seeds",
    "n",
    "se",
    "t",
    "df",
    "p",
    "ci_low",
    "ci_high",
    "compared_with",
    "study",
    "level",
    "wall_seconds_mean",
}
PAGE_WIDTH = 1000  # px of the HTML page's text column; figures are drawn to fit it
STYLE = (
    f"body{{font-family:sans-serif;max-width:{PAGE_WIDTH}px;margin:2em auto;padding:0 1em;"
    "line-height:1.45}"
    "p,li,figcaption{overflow-wrap:anywhere}"  # a class path or a commit hash wraps on a phone
    "table.t{border-collapse:collapse;font-size:12px;margin:0.5em 0}"
    "table.t td,table.t th{border:1px solid #ccc;padding:2px 6px}"
    "details{margin:0.5em 0}summary{cursor:pointer;font-weight:bold}"
    "div.scroll{overflow-x:auto}figure{margin:1em 0}figcaption{font-size:13px;color:#333}"
    "img{max-width:100%}pre{background:#f4f4f4;padding:8px;overflow:auto}"
    ".answer{background:#eef5ee;border-left:4px solid #4a4;padding:6px 10px;margin:1em 0}"
)


class Document:
    """Blocks of a report, rendered both as markdown and as self-contained HTML."""

    def __init__(self, out: Path):
        self.out = out
        self.blocks: list[tuple] = []
        self.shift = 0  # added to every heading's level (a study nested under a lab question)

    def heading(self, level: int, text: str) -> None:
        self.blocks.append(("h", min(level + self.shift, 6), text))

    def para(self, text: str) -> None:
        self.blocks.append(("p", text))

    def answer(self, parts: str | list[str]) -> None:
        """The answer to a question, set apart from the evidence after it: a paragraph, or a
        list where several studies answer (one item each)."""
        self.blocks.append(("answer", [parts] if isinstance(parts, str) else parts))

    def details(self, summary: str, frame: pd.DataFrame) -> None:
        """A table folded away under a line that says what it holds (HTML `<details>`)."""
        self.blocks.append(("details", summary, tidy(frame)))

    @contextmanager
    def folded(self, summary: str) -> Iterator[None]:
        """Every block added inside folded away under one line (HTML `<details>`): the
        evidence a reader opens when they want it."""
        self.blocks.append(("fold", summary))
        try:
            yield
        finally:
            self.blocks.append(("unfold",))

    def bullets(self, items: list[str]) -> None:
        if items:
            self.blocks.append(("ul", items))

    def table(self, frame: pd.DataFrame, as_text: bool = False) -> None:
        """A table; `as_text` keeps cells written as text ('+0.59') exactly as written."""
        self.blocks.append(("table", tidy(frame), as_text))

    def image(self, path: Path, caption: str) -> None:
        self.blocks.append(("img", path, caption))

    def code(self, text: str) -> None:
        self.blocks.append(("code", text))

    def markdown(self) -> str:
        return "\n\n".join(self._markdown(block) for block in self.blocks) + "\n"

    def _markdown(self, block: tuple) -> str:
        kind = block[0]
        if kind == "h":
            return "#" * block[1] + " " + block[2]
        if kind == "ul":
            return "\n".join(f"- {item}" for item in block[1])
        if kind == "table":
            return _missing_as_none(block[1]).to_markdown(
                index=False, floatfmt=".4g", disable_numparse=block[2], missingval=""
            )
        if kind == "img":
            return f"![{block[2]}]({block[1].relative_to(self.out).as_posix()})"
        if kind == "code":
            return "```\n" + block[1].rstrip() + "\n```"
        if kind == "answer":
            if len(block[1]) == 1:
                return f"**Answer.** {block[1][0]}"
            return "**Answer.**\n" + "\n".join(f"- {part}" for part in block[1])
        if kind in FOLDS:
            return FOLDS[kind](block)
        if kind == "details":
            table = _missing_as_none(block[2]).to_markdown(
                index=False, floatfmt=".4g", missingval=""
            )
            return f"<details><summary>{html.escape(block[1])}</summary>\n\n{table}\n\n</details>"
        return block[1]

    def html(self, title: str) -> str:
        body = "".join(self._html(block) for block in self.blocks)
        return (
            "<!doctype html><html><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{html.escape(title)}"
            f"</title><style>{STYLE}</style></head><body>{body}</body></html>\n"
        )

    def _html(self, block: tuple) -> str:
        kind = block[0]
        if kind == "h":
            return f"<h{block[1]}>{html.escape(block[2])}</h{block[1]}>"
        if kind == "ul":
            return "<ul>" + "".join(f"<li>{inline(i)}</li>" for i in block[1]) + "</ul>"
        if kind == "table":
            return _html_table(block[1])
        if kind == "answer":
            if len(block[1]) == 1:
                return f'<p class="answer"><b>Answer.</b> {inline(block[1][0])}</p>'
            items = "".join(f"<li>{inline(part)}</li>" for part in block[1])
            return f'<div class="answer"><b>Answer.</b><ul>{items}</ul></div>'
        if kind in FOLDS:
            return FOLDS[kind](block)
        if kind == "details":
            return (
                f"<details><summary>{html.escape(block[1])}</summary>"
                f"{_html_table(block[2])}</details>"
            )
        if kind == "img":
            data = base64.b64encode(block[1].read_bytes()).decode()
            caption = html.escape(block[2])
            return (
                f'<figure><img src="data:image/png;base64,{data}" alt="{caption}">'
                f"<figcaption>{caption}</figcaption></figure>"
            )
        if kind == "code":
            return f"<pre>{html.escape(block[1])}</pre>"
        return f"<p>{inline(block[1])}</p>"


# A fold opens and closes the same way in markdown (which passes HTML through) and in HTML.
FOLDS = {
    "fold": lambda block: f"<details><summary>{html.escape(block[1])}</summary>\n",
    "unfold": lambda block: "</details>",
}


def _missing_as_none(frame: pd.DataFrame) -> pd.DataFrame:
    """Missing values as None, which tabulate leaves empty (it prints a float NaN as nan)."""
    return frame.astype(object).where(frame.notna(), None)


def inline(text: str) -> str:
    """Text as HTML, its `code` spans (Markdown's backticks) as <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def _html_table(frame: pd.DataFrame) -> str:
    """A table that scrolls sideways on its own rather than widening the page; a missing value
    is an empty cell."""
    table = frame.to_html(
        index=False, float_format=lambda v: f"{v:.4g}", border=0, classes="t", na_rep=""
    )
    return f'<div class="scroll">{table}</div>'


def display_summary(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary as the report shows it: factors, run counts, accuracies in percent with every
    seed's value, then the comparison with the baseline."""
    shown = summary.copy()
    for col in PERCENT:  # blank, not "nan", where there is nothing to show (the baseline's gap)
        shown[col] = [f"{100 * v:.2f}" if pd.notna(v) else "" for v in shown[col]]
    shown["seed_values"] = [", ".join(f"{100 * v:.2f}" for v in vs) for vs in shown["values"]]
    shown["ci"] = [
        f"{100 * lo:+.2f} to {100 * hi:+.2f}" if pd.notna(lo) else ""
        for lo, hi in zip(shown["ci_low"], shown["ci_high"], strict=True)
    ]
    shown["p_adjusted"] = shown["p_adjusted"].map(lambda p: f"{p:.3g}" if pd.notna(p) else "")
    shown["verdict"] = shown["verdict"].fillna("baseline" if shown["verdict"].notna().any() else "")
    shown["test"] = shown["test"].fillna("")
    shown["correction"] = shown["correction"].map(lambda c: INTERVAL_KINDS.get(c, ""))
    factors = [c for c in shown.columns if c not in SUMMARY_HEADINGS and c not in HIDDEN_COLUMNS]
    columns = [c for c in SUMMARY_HEADINGS if c in shown and _shown(shown[c])]
    return shown[factors + columns].rename(columns=SUMMARY_HEADINGS)


def _shown(column: pd.Series) -> bool:
    """A column worth a place in the table: not empty, and counts that are not all zero."""
    filled = column.replace("", pd.NA).dropna()
    return not filled.empty and not (filled.astype(str) == "0").all()


def tidy(frame: pd.DataFrame) -> pd.DataFrame:
    """Whole numbers (parameters, counts) and large rates shown as integers, not e-notation."""
    frame = frame.copy()
    for col in frame.columns:
        values = frame[col]
        if pd.api.types.is_float_dtype(values) and values.notna().any():
            whole = (values.dropna() % 1 == 0).all() and values.abs().max() >= 1
            if whole or values.abs().max() >= 1000:  # counts, or rates where decimals are noise
                frame[col] = values.round().astype("Int64")
                if frame[col].isna().any():  # an empty cell, not <NA>
                    frame[col] = frame[col].astype(object).where(frame[col].notna(), "")
    return frame


@dataclass(frozen=True)
class Extent:
    """How much a reader meets of a page before opening any fold: words (in text and tables,
    not in code or style) and figures, and the same inside the folds."""

    words: int
    figures: int
    folded_words: int
    folded_figures: int


def extent(page: str) -> Extent:
    """Count an HTML page's words and figures outside and inside its `<details>` folds."""
    counter = _Counter()
    counter.feed(page)
    return Extent(*counter.counts[False], *counter.counts[True])


class _Counter(HTMLParser):
    WORD = re.compile(r"[^\W_][\w.,%'+-]*")  # 98.95%, +0.50, LeNet-5: one word each

    def __init__(self):
        super().__init__()
        self.folds, self.hidden = 0, 0
        self.counts = {False: [0, 0], True: [0, 0]}  # folded? -> [words, figures]

    def handle_starttag(self, tag, attrs):
        self.folds += tag == "details"
        self.hidden += tag in ("style", "script", "title")
        if tag == "img":
            self.counts[self.folds > 0][1] += 1

    def handle_endtag(self, tag):
        self.folds -= tag == "details"
        self.hidden -= tag in ("style", "script", "title")

    def handle_data(self, data):
        if not self.hidden:
            self.counts[self.folds > 0][0] += len(self.WORD.findall(data))
