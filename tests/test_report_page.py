"""The report's example documents and its page: the examples are the documents the selection and the
scores say they are; document text is shown escaped, never run; the page loads in a real headless browser
without a console message (a network request or a script would be one) and shows the examples."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from conftest import PILE, TARGET_C, read_jsonl, write_jsonl

from dsir_spark.config import config_from_dict
from dsir_spark.pipeline import run_pipeline
from dsir_spark.selection.examples import TEXT_CHARS, marks
from dsir_spark.selection.report_page import examples_markdown, framed, to_html
from dsir_spark.stages.report import read_report_page

PER_GROUP = 3
BROWSER = shutil.which("chromium-headless-shell") or shutil.which("chromium") or shutil.which("google-chrome")
HOSTILE = ("<script>alert('x')</script></textarea><img src=x onerror=alert(1)> 🧪👩🏽‍🔬✨ "
           "שלום עולם مرحبا بالعالم 東京 \x00 nul \x07 bell `` ``` end")


@pytest.fixture(scope="module")
def run(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("page")
    rows = read_jsonl(PILE)
    rows[7]["contents"] = HOSTILE + " " + rows[7]["contents"]  # a raw document that holds markup and controls
    config = config_from_dict({
        "run_dir": str(root / "run"),
        "raw": {"paths": [write_jsonl(root / "raw.jsonl", rows)], "text_col": "contents", "id_col": "id"},
        "targets": [{"paths": [str(TARGET_C)], "text_col": "contents"}],
        "resample": {"num_to_sample": 40, "seed": 3},
        "report": {"label_col": "metadata.pile_set_name", "example_documents": PER_GROUP},
    })
    run_pipeline(spark, config)
    folder = root / "run" / "report"
    report = json.loads((folder / "report.json").read_text())
    scores = pd.read_parquet(root / "run" / "scores")
    selection = pd.read_parquet(root / "run" / "selection" / "ids")
    texts = {str(r["id"]): r for r in rows}
    return folder, report, scores, selection, texts


def _ids(report: dict, group: str) -> list[str]:
    return [e["id"] for e in report["examples"] if e["group"] == group]


def test_the_examples_are_what_the_selection_and_the_scores_say(run):
    _, report, scores, selection, _ = run
    by_weight = selection.sort_values(["log_weight", "id"], ascending=[False, True])
    assert _ids(report, "top") == [str(i) for i in by_weight["id"][:PER_GROUP]]
    by_key = selection.sort_values(["key", "id"])
    assert _ids(report, "boundary") == [str(i) for i in by_key["id"][:PER_GROUP]]
    chosen = set(_ids(report, "random"))
    assert len(chosen) == PER_GROUP and chosen <= {str(i) for i in selection["id"]}
    eligible = scores[(scores["num_tokens"] >= 100) & ~scores["id"].isin(selection["id"])]
    passed = eligible.sort_values(["log_weight", "id"], ascending=[False, True])
    assert _ids(report, "passed_over") == [str(i) for i in passed["id"][:PER_GROUP]]
    assert not set(_ids(report, "passed_over")) & {str(i) for i in selection["id"]}
    assert len(set(_ids(report, "raw"))) == PER_GROUP and set(_ids(report, "raw")) <= {str(i) for i in scores["id"]}


def test_each_example_shows_its_own_text_label_weight_and_marked_ngrams(run):
    _, report, scores, selection, texts = run
    weights = dict(zip(scores["id"].astype(str), scores["log_weight"]))
    for example in report["examples"]:
        source = texts[example["id"]]
        assert example["text"] == source["contents"][:TEXT_CHARS]
        assert example["truncated"] == (len(source["contents"]) > TEXT_CHARS)
        assert example["label"] == source["metadata"]["pile_set_name"]
        assert example["log_weight"] == pytest.approx(weights[example["id"]], rel=1e-12)
        shown = {g["ngram"] for side in ("toward", "away") for g in example[side]}
        for mark in example["marks"]:  # every mark covers tokens of one of the n-grams shown beside it
            words = re.findall(r"\w+|[^\w\s]+", example["text"][mark["start"]:mark["end"]].lower())
            assert any(word in gram.split(" ") for word in words for gram in shown)
    top = next(e for e in report["examples"] if e["group"] == "top")
    assert top["toward"] and top["marks"] and {m["side"] for m in top["marks"]} <= {"toward", "away"}


def test_marks_join_the_tokens_of_an_ngram_and_keep_sides_apart():
    text = "The Software is free.  See the SOFTWARE!"
    spans = marks(text, toward={"the software"}, away={"free"}, tokenizer="wordpunct", ngrams=2)
    assert [(text[m.start:m.end], m.side) for m in spans] == [
        ("The Software", "toward"), ("free", "away"), ("the SOFTWARE", "toward")]
    assert marks("İstanbul the software", {"the software"}, set(), "wordpunct", 2) == []  # length changes


def test_document_text_is_escaped_in_the_page_and_the_markdown(run):
    folder, report, _, _, _ = run
    page = (folder / "report.html").read_text()
    hostile = {
        "group": "raw", "target": None, "id": "<b>x</b>", "num_tokens": 9, "log_weight": -1.0, "key": None,
        "selected": False, "label": "</td><script>alert(2)</script>", "text": HOSTILE, "truncated": False,
        "toward": [{"ngram": "<script>", "count": 1, "log_ratio": 1.0, "total": 1.0}], "away": [],
        "marks": [{"start": 0, "end": 8, "side": "toward"}],
    }
    crafted = to_html({**report, "examples": [hostile]}, {})
    for text in (page, crafted):
        assert "<script" not in text and "<img src=x" not in text and "</textarea>" not in text
        assert "\x00" not in text and "\x07" not in text
    assert ('<mark class="toward">&lt;script&gt;</mark>alert(&#x27;x&#x27;)&lt;/script&gt;&lt;/textarea&gt;'
            "&lt;img src=x onerror=alert(1)&gt;") in crafted
    assert '<span class="ctl">␀</span>' in crafted and '<span class="ctl">␇</span>' in crafted
    assert "שלום עולם مرحبا بالعالم" in crafted and "🧪👩🏽‍🔬✨" in crafted and '<pre dir="auto"><bdi>' in crafted
    markdown = examples_markdown({**report, "examples": [hostile]})
    assert "````text\n" in markdown  # a fence longer than the text's ``` run
    assert "\x00" not in markdown


def test_the_page_makes_no_network_request_and_runs_no_script(run):
    folder, _, _, _, _ = run
    page = (folder / "report.html").read_text()
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page)
    assert page.count('src="data:image/png;base64,') == 3  # the figures, inline


def test_a_notebook_gets_the_page_in_a_frame_of_its_own(spark, run):
    folder, _, _, _, _ = run
    config = config_from_dict({"run_dir": str(folder.parent), "raw": {"paths": ["x.jsonl"]},
                               "targets": [{"paths": ["y.jsonl"]}]})
    page = read_report_page(spark, config)
    assert page == (folder / "report.html").read_text()
    frame = framed(page)
    assert frame.startswith('<iframe sandbox="" srcdoc="&lt;!doctype html&gt;') and "<script" not in frame
    assert html.unescape(frame.split('srcdoc="', 1)[1].split('" style=', 1)[0]) == page


# A real headless browser (the slow suite: CI installs chromium-headless-shell where it is missing).
def _render(page: Path, out: Path) -> tuple[str, list[str]]:
    """The DOM after load and the browser's console messages (a CSP violation, a script error ...)."""
    if BROWSER is None:
        pytest.fail("no headless browser: install chromium-headless-shell (apt-get install chromium-headless-shell)")
    common = [BROWSER, "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--enable-logging=stderr", "--v=0",
              f"--user-data-dir={tempfile.mkdtemp()}"]
    dom = subprocess.run([*common, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    shot = subprocess.run([*common, "--window-size=1200,2000", f"--screenshot={out}", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    console = [line for line in (dom.stderr + shot.stderr).splitlines() if ":CONSOLE" in line]
    return dom.stdout, console


@pytest.mark.slow
def test_the_check_sees_a_page_that_misbehaves(tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text("<!doctype html><meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'\">"
                   "<img src=\"https://example.invalid/x.png\"><script>console.error('boom')</script>")
    _, console = _render(bad, tmp_path / "bad.png")
    assert len(console) >= 2, console  # the blocked image and the blocked script


@pytest.mark.slow
def test_the_page_loads_in_a_real_browser_and_shows_the_examples(run, tmp_path):
    folder, report, _, _, _ = run
    dom, console = _render(folder / "report.html", tmp_path / "shot.png")
    assert console == []
    assert dom.count('class="doc"') == len(report["examples"]) == 5 * PER_GROUP
    assert "Example documents" in dom and "The highest-weighted selected documents" in dom
    first = next(e for e in report["examples"] if e["group"] == "top")
    assert f"<code>{first['id']}</code>" in dom
    png = (tmp_path / "shot.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 50_000  # a page drawn, not a blank one
