"""The lab report: ordered by the lab's questions, each opening with its answer; the networks as
layer tables; every run in a folded appendix; TensorBoard's own pages as screenshots; figures
that keep their width in a real browser."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO, make_config, run_cli
from PIL import Image

from cnnexp.models import build_model
from cnnexp.report import figures, shots
from cnnexp.report import main as report_main
from cnnexp.report.build import add_environments
from cnnexp.report.document import PAGE_WIDTH, Document, extent
from cnnexp.report.figures import BASELINE_STYLE
from cnnexp.report.lab import QUESTIONS
from cnnexp.report.network import layer_table

TINY_RUN = ["data=synthetic", "data.synthetic.train_size=512", "data.synthetic.test_size=128",
            "data.synthetic.noise=1.0", "device=cpu", "progress=false", "epochs=3",
            "batch_size=32", "tracking.graph=false", "tracking.misclassified=0"]  # fmt: skip
needs_chromium = pytest.mark.skipif(shots.browser() is None, reason=f"no Chromium: {shots.INSTALL}")


@pytest.mark.parametrize(
    "overrides, shape",
    [
        (["setup=lenet_mnist"], (1, 32, 32)),
        (["setup=convnet_cifar10_small"], (3, 32, 32)),
        (["+experiment=cifar10_cpu"], (3, 32, 32)),
    ],
)
def test_layer_table_counts_every_parameter_once(overrides, shape):
    model = build_model(make_config(*overrides))
    table = layer_table(model, shape)
    layers, total = table.iloc[:-1], table.iloc[-1]
    assert total["layer"] == "total"
    assert layers["parameters"].sum() == total["parameters"]
    assert total["parameters"] == sum(p.numel() for p in model.parameters())
    assert layers["multiply-accumulates"].sum() == total["multiply-accumulates"] > 0
    assert (table["type"] == "Conv2d").sum() >= 2
    assert layers["layer"].is_unique


def test_layer_table_of_lenet5_has_its_shapes():
    table = layer_table(build_model(make_config("setup=lenet_mnist")), (1, 32, 32))
    rows = table.set_index("layer")
    assert rows.loc["features.0", "output shape"] == "6 × 28 × 28"
    assert rows.loc["features.0", "parameters"] == 6 * (25 + 1)
    assert rows.loc["features.1", "output shape"] == "6 × 14 × 14"  # S2: ReLU and max pool, fused
    assert rows.loc["features.1", "type"] == "ActivatedMaxPool2d"
    assert rows.loc["classifier.5", "output shape"] == "10"
    assert rows.loc["total", "parameters"] == 61_706


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A LeNet-5 run on 'MNIST' (synthetic images named so), a CIFAR-10 run with test-time
    augmentation, and a pooling study: questions 1, 2 and 3.1; nothing answers 3.2."""
    root = tmp_path_factory.mktemp("lab")
    runs = {
        "lenet": [*TINY_RUN, "data.name=mnist"],
        "ours": [
            *TINY_RUN,
            "data.name=cifar10",
            "data.channels=3",
            "model=convnet",
            "model.widths=[8,16]",
            "tta=flip",
        ],  # fmt: skip
    }
    for name, overrides in runs.items():
        result = run_cli(*overrides, f"hydra.run.dir={root / name}", cwd=REPO)
        assert result.returncode == 0, result.stderr[-3000:]
    result = run_cli("-m", "+experiment=pooling", "study.budget=mnist_cpu", *TINY_RUN, "seed=0,1",
                     "study.check.seeds=[]",
                     f"hydra.sweep.dir={root / 'pooling'}", cwd=REPO)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    # Given in another order than the lab's: the report puts them in the lab's.
    paths = [root / "pooling", root / "ours", root / "lenet"]
    assert report_main([*map(str, paths), "--lab", "--out", str(root / "report")]) == 0
    return root


@pytest.mark.slow  # three runs of their own (about 40 s), shared by the tests below
def test_lab_report_follows_the_lab_questions_each_opening_with_its_answer(lab):
    text = (lab / "report" / "report.md").read_text()
    headings = re.findall(r"^## (.+)$", text, flags=re.M)
    numbered = [h.split(" ", 1)[0] for h in headings if h[0].isdigit()]
    assert numbered == list(QUESTIONS) == ["1", "2", "3.1", "3.2"]
    assert headings[0] == "Summary"
    assert headings[len(numbered) + 1 :] == [
        "Bonuses and compliance",
        "Environment",
        "Procedure",
        "References",
        "Appendix: the evidence of each study",
        "Appendix: every run",
        "Glossary",
    ]
    sections = [s for s in re.split(r"^## ", text, flags=re.M) if s[0].isdigit()]
    for section in sections:
        first = [b for b in section.split("\n\n")[1:] if not b.startswith("The lab asks")][0]
        assert first.startswith("**Answer.**"), first
    one, two, pooling, changes = sections
    assert "LeNet5 reached" in one and "one run, seed 0" in one
    assert "61,706 trainable parameters" in one and "LeCun et al. 1998" in one  # in words
    assert "How it was trained. Data: " in one and "Loss: cross-entropy" in one
    evidence = text.split("## Appendix: the evidence of each study")[1]
    assert "| features.0 " in evidence and "| total " in evidence  # the layer table, folded
    assert "test-time augmentation (tta=flip)" in two and "without it the same network" in two
    (said,) = [b for b in pooling.split("\n\n") if b.startswith("**Answer.**")]
    assert said.startswith("**Answer.** On LeNet5: ") and "(" not in said  # plain words first
    assert "pool=avg" in said and "pool=max" in said
    full = pooling.split("<details><summary>The same answer with its numbers")[1]
    assert "On LeNet5 (synthetic, 512 training images, 3 epochs" in full
    assert "2 seeds each" in full
    assert "| setting " in pooling and "| 95% CI " in pooling  # side by side
    assert "| simultaneous " in pooling and "nan" not in pooling
    assert "What each passes on" in pooling and "Gradients" in pooling
    assert "Not answered here" in changes


@pytest.mark.slow
def test_every_run_is_in_a_folded_appendix_in_percent_without_none(lab):
    text = (lab / "report" / "report.md").read_text()
    appendix = text.split("## Appendix: every run")[1].split("## Glossary")[0]
    assert appendix.count("<details><summary>") == 3
    assert "pooling: 4 runs" in appendix
    assert "test acc %" in appendix and "None" not in appendix and "nan" not in appendix
    assert "without tta %" in appendix and "_without_" not in appendix  # named for a reader
    html = (lab / "report" / "report.html").read_text()
    assert html.count("<details>") == html.count("</details>")


@pytest.mark.slow
def test_a_grader_meets_a_short_main_body_and_the_rest_folded(lab):
    page = (lab / "report" / "report.html").read_text()
    seen = extent(page)
    assert 300 < seen.words < seen.folded_words  # the evidence is folded, the answers are not
    assert 0 < seen.figures <= 15 and seen.folded_figures > seen.figures
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", page, flags=re.S)
    assert len(captions) == seen.figures + seen.folded_figures
    for caption in captions:  # each filled from the data it shows
        assert caption.strip() and not re.search(r"(:|of) 0\b(?![.,]\d)", caption), caption
    assert str(lab) not in page and "/tmp/" not in page  # no path of the machine that made it
    text = re.sub(r'src="data:[^"]*"', "", page)  # the figures' bytes are no text
    for marker in ("NaN", "&lt;NA&gt;", ">nan<", "`"):
        assert marker not in text


@pytest.mark.slow
def test_single_runs_are_captioned_as_single_runs(lab):
    text = (lab / "report" / "report.md").read_text()
    one = text.split("## 2 ")[0]
    assert "one run per line" in one and "mean ± std" not in one
    # The GPU requirement faced once, at the top, with the command that meets it.
    assert text.count("No run in this report used a GPU") == 1
    assert text.index("No run in this report used a GPU") < text.index("## 1 ")
    assert "python -m cnnexp.lab --budget full" in text


@pytest.mark.slow
@needs_chromium
def test_tensorboard_screenshots_of_a_run(lab, tmp_path):
    out = tmp_path / "report"
    assert report_main([str(lab / "lenet"), "--tensorboard-shots", "--out", str(out)]) == 0
    pictures = sorted((out / "figures").glob("tensorboard-*.png"))
    assert [p.name.rsplit("-", 1)[-1] for p in pictures] == ["images.png", "scalars.png"]
    assert all(p.stat().st_size > 20_000 for p in pictures)  # a drawn page, not a blank one
    text = (out / "report.md").read_text()
    assert "TensorBoard's Scalars page" in text and "TensorBoard's Images page" in text


@pytest.mark.slow
@needs_chromium
def test_report_images_keep_their_width_in_chromium(lab):
    """Rendered at a laptop's width, no figure is shrunk below 70% of its own width."""
    scales = image_scales(lab / "report" / "report.html", width=1280)
    assert len(scales) >= 4
    assert min(scales) >= 0.7, scales


@needs_chromium
def test_a_long_class_path_or_commit_wraps_on_a_phone(tmp_path):
    """No sideways scroll at a phone's 390 px for a word longer than the line (a model's class
    path, a commit hash): the page is as wide as the phone."""
    doc = Document(tmp_path)
    doc.para("WhitenedResNet (cnnexp.models.whitened_resnet.WhitenedResNet) on 3 x 32 x 32 inputs")
    doc.bullets(["git commit: " + "55749f9e22fbae213f11e76997ebccc434ee8062" * 2])
    (tmp_path / "page.html").write_text(doc.html("t"))
    assert laid_out(tmp_path / "page.html", 390, "document.documentElement.scrollWidth") == 390


def image_scales(page: Path, width: int) -> list[float]:
    """Each image's drawn width over its natural width, as headless Chromium lays the page out."""
    return laid_out(page, width, "[...document.images].map(i=>i.width/i.naturalWidth)")


def laid_out(page: Path, width: int, expression: str):
    """What a script `expression` gives once headless Chromium has laid the page out in a
    window `width` px wide (a JSON value)."""
    with (
        tempfile.TemporaryDirectory() as profile,
        shots.DevTools(shots.browser(), profile) as tools,
    ):
        tab = tools.open(width, 1000)
        tools.load(tab, page.as_uri())
        answer = tools.call(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True}, tab
        )
    return answer["result"]["value"]


def test_twenty_arms_get_twenty_colours_and_none_is_the_baselines_black():
    pairs = [pair for pair, _ in zip(figures.styles(), range(20), strict=False)]
    assert len({colour for colour, _ in pairs}) == 20
    assert BASELINE_STYLE["color"] not in {colour for colour, _ in pairs}
    assert len(set(pairs)) == 20


def test_verdict_panels_wrap_to_the_page_width(tmp_path):
    """18 levels in 8 groups: rows of panels no wider than the page, not one shrunk strip."""
    levels = ["baseline"] + [f"{g}-{v}" for g in "abcdefgh" for v in (1, 2)] + ["i-1"]
    summary = pd.DataFrame(
        {
            "arch": levels,
            "mean": 0.6,
            "values": [[0.59, 0.6, 0.61]] * len(levels),
            "diff": [float("nan")] + [0.01] * (len(levels) - 1),
            "ci_low": [float("nan")] + [-0.01] * (len(levels) - 1),
            "ci_high": [float("nan")] + [0.03] * (len(levels) - 1),
            "verdict": [None] + ["no clear difference"] * (len(levels) - 1),
        }
    )
    rows = figures._wrap(figures._panels(summary, "arch", "baseline"))
    assert len(rows) > 1
    assert all(sum(len(lv) + 1 for _, lv in row) <= figures.PANEL_UNITS for row in rows)
    path = figures.verdict_panels(summary, "arch", "baseline", tmp_path / "v.png")
    with Image.open(path) as picture:
        assert picture.width <= PAGE_WIDTH


def test_an_answer_from_several_studies_is_a_list_with_one_item_each(tmp_path):
    doc = Document(tmp_path)
    doc.answer("One study: one paragraph.")
    doc.answer(["On MNIST: no clear difference.", "On CIFAR-10: average pooling better."])
    md, page = doc.markdown(), doc.html("t")
    assert "**Answer.** One study: one paragraph." in md
    assert "**Answer.**\n- On MNIST: no clear difference.\n- On CIFAR-10: average" in md
    assert '<p class="answer"><b>Answer.</b> One study: one paragraph.</p>' in page
    assert (
        '<div class="answer"><b>Answer.</b><ul><li>On MNIST: no clear difference.</li>'
        "<li>On CIFAR-10: average pooling better.</li></ul></div>"
    ) in page


def test_a_page_fits_a_phone_and_shows_no_markdown_and_no_missing_value_markers(tmp_path):
    doc = Document(tmp_path)
    doc.para("Run `python -m cnnexp.lab` again.")
    frame = pd.DataFrame({"arm": ["a", "b"], "runs": [3.0, float("nan")], "acc": [0.5, None]})
    doc.table(frame)
    page, md = doc.html("t"), doc.markdown()
    assert "<meta name='viewport' content='width=device-width, initial-scale=1'>" in page
    assert "Run <code>python -m cnnexp.lab</code> again." in page and "`" not in page
    for marker in ("NaN", "&lt;NA&gt;", ">nan<"):
        assert marker not in page
    assert "<NA>" not in md and "nan" not in md


def test_a_report_cites_only_what_its_runs_contain():
    from cnnexp.report.build import references
    from cnnexp.report.runs import Study as Runs
    from cnnexp.report.runs import runs_of

    def study(*configs):
        return Runs("s", Path("."), runs_of([{"config": c} for c in configs]), [])

    lenet = {"model": {"_target_": "cnnexp.models.lenet.LeNet5"}, "data": {"name": "mnist"},
             "label_smoothing": 0.0, "optimizer": {"_target_": "torch.optim.SGD"}}  # fmt: skip
    cited = " ".join(references([study(lenet)]))
    assert "LeCun" in cited and "Welch" in cited
    for absent in ("Muon", "Lightning", "Lookahead", "Inception", "CIFAR-10", "residual"):
        assert absent not in cited
    ours = {"model": {"_target_": "cnnexp.models.whitened_resnet.WhitenedResNet",
                      "residual": True, "batch_norm": True},
            "data": {"name": "cifar10"}, "label_smoothing": 0.2,
            "optimizer": {"_target_": "cnnexp.muon.Muon"}}  # fmt: skip
    cited = " ".join(references([study(lenet), study(ours)]))
    for present in ("LeCun", "Muon", "Inception", "CIFAR-10", "residual", "airbench"):
        assert present in cited


def test_the_network_is_counted_as_its_run_records_it_and_says_what_is_frozen():
    from cnnexp.models import count_macs
    from cnnexp.report.network import counts_sentence

    config = make_config("+experiment=cifar10_cpu", "model.width_mult=0.5")
    model = build_model(config)
    table = layer_table(model, (3, 32, 32))
    text = counts_sentence(model, {"model": {"_target_": "x"}}, (3, 32, 32),
                           int(table.iloc[-1]["multiply-accumulates"]))  # fmt: skip
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters()) - trainable
    assert frozen > 0  # the whitening stem's filters
    assert f"{trainable:,} trainable parameters (and {frozen:,} frozen" in text
    assert f"{count_macs(model, (3, 32, 32)):,} multiply-accumulates per image" in text
    assert "also counts each bias" in text


def test_the_procedure_gives_each_study_the_command_its_folder_recorded(tmp_path):
    import yaml

    from cnnexp.report.build import command_of
    from cnnexp.report.runs import Study as Runs
    from cnnexp.report.runs import runs_of

    recorded = {"hydra": {"overrides": {
        "hydra": ["hydra/launcher=workers", f"hydra.sweep.dir={tmp_path}"],
        "task": ["+experiment=pooling", "study.budget=mnist_cpu", "study.check.seeds=[0,1]"],
    }}}  # fmt: skip
    (tmp_path / "multirun.yaml").write_text(yaml.safe_dump(recorded))
    study = Runs("pooling", tmp_path, runs_of([{}, {}]), [])
    assert command_of(study) == (
        "python -m cnnexp -m hydra/launcher=workers +experiment=pooling study.budget=mnist_cpu "
        "'study.check.seeds=[0,1]'"
    )
    run = tmp_path / "one"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["+experiment=cifar10_cpu"]))
    single = Runs("ours", run, runs_of([{}]), [])
    assert command_of(single) == "python -m cnnexp +experiment=cifar10_cpu"


def test_a_page_is_measured_as_a_reader_meets_it(tmp_path):
    doc = Document(tmp_path)
    doc.heading(2, "Answer")
    doc.para("LeNet-5 reached 98.95% on MNIST, +0.50 points with `tta`.")
    with doc.folded("the evidence"):
        doc.para("Five words folded away here.")
        with doc.folded("deeper"):
            doc.para("Two more.")
    doc.para("After the fold.")
    seen = extent(doc.html("a title not counted"))
    assert (seen.words, seen.folded_words) == (1 + 9 + 3, 2 + 5 + 1 + 2)
    assert seen.figures == seen.folded_figures == 0


LAB_REPORT = REPO / "docs" / "lab-report" / "report.html"


def test_the_docs_lab_report_is_short_enough_to_grade():
    """docs/lab-report: 2,000-3,500 words and at most about 15 figures before any fold."""
    seen = extent(LAB_REPORT.read_text())
    assert 2000 <= seen.words <= 3500, seen
    assert seen.figures <= 15, seen


def test_the_environment_names_the_instruction_sets_the_runs_were_limited_to(tmp_path):
    """A run made under ATEN_CPU_CAPABILITY=avx2 on a bf16 CPU says so beside its CPU flags:
    its speed and precision are those of the cap, not of the flags."""
    run = tmp_path / "0"
    run.mkdir()
    caps = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    env = {"cpu": "AMD EPYC", "cpu_flags": ["avx2", "avx512_bf16"], "isa_caps": caps, "gpus": []}
    (run / "env.json").write_text(json.dumps(env))
    from cnnexp.report.runs import Study as Runs
    from cnnexp.report.runs import runs_of

    doc = Document(tmp_path)
    add_environments(doc, [Runs("lenet", tmp_path, runs_of([{"run": str(run)}]), [])])
    text = doc.markdown()
    assert "cpu flags: avx2, avx512_bf16" in text
    assert "isa caps: ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2" in text
    assert "gpus: none" in text


def test_a_report_without_tensorboard_pictures_says_why_and_what_takes_them(monkeypatch):
    from cnnexp.report import evidence

    assert "made without `--tensorboard-shots`" in evidence.why_no_shots(asked=False)
    monkeypatch.setattr(evidence, "browser", lambda: None)
    assert "no Chromium was found" in evidence.why_no_shots(asked=True)
    assert "apt-get install chromium" in evidence.why_no_shots(asked=True)
    monkeypatch.setattr(evidence, "browser", lambda: "/usr/bin/chromium")
    assert "taking them failed" in evidence.why_no_shots(asked=True)
