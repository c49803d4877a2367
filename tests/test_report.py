"""The selection report: the KL-reduction metric, DSIR beating its baselines, and the report files."""

from __future__ import annotations

import builtins
import json
import struct

import numpy as np
import pytest
from conftest import PILE, read_jsonl, write_jsonl

from dsir_spark import HashedNgramDSIR
from dsir_spark.config import FeatureConfig
from dsir_spark.featurizer.features import Featurizer
from dsir_spark.run.directory import read_record, write_record
from dsir_spark.selection.evaluation import kl_divergence, kl_reduction


def _distribution(texts: list[str]) -> np.ndarray:
    """The bucket distribution of ``texts``, by the pure-Python featurizer on the driver."""
    counts = np.zeros((1, FeatureConfig().num_buckets), dtype=np.int64)
    Featurizer(FeatureConfig()).count(texts, np.zeros(len(texts), dtype=np.int64), counts)
    return counts[0] / counts[0].sum()


def test_kl_matches_an_independent_numpy_computation():
    p = np.array([0.5, 0.25, 0.125, 0.125])
    q = np.array([0.25, 0.25, 0.25, 0.25])
    assert kl_divergence(p, q) == pytest.approx(sum(pi * np.log(pi / qi) for pi, qi in zip(p, q)), rel=1e-6)
    assert kl_divergence(p, p) == 0.0
    # Zero probabilities: the log-ratio's 1e-8 keeps it finite, as documented.
    zero = np.array([0.5, 0.5, 0.0, 0.0])
    expected = sum(a * (np.log(a + 1e-8) - np.log(b + 1e-8)) for a, b in zip(zero, q))
    assert kl_divergence(zero, q) == pytest.approx(expected, rel=1e-12)


def test_kl_reduction_identity_and_averaging_over_targets():
    rng = np.random.default_rng(0)
    p, q, s = (x / x.sum() for x in rng.random((3, 50)) + 0.01)
    # KL(p||q) - KL(p||s) = sum p * (log s - log q) where all are positive.
    assert kl_reduction([p], q, [s]) == pytest.approx(float(np.sum(p * (np.log(s + 1e-8) - np.log(q + 1e-8)))),
                                                      rel=1e-12)
    p2 = rng.random(50) + 0.01
    p2 /= p2.sum()
    both = kl_reduction([p, p2], q, [s, s])
    assert both == pytest.approx((kl_reduction([p], q, [s]) + kl_reduction([p2], q, [s])) / 2, rel=1e-12)
    assert kl_reduction([p], q, [p]) == pytest.approx(kl_divergence(p, q), rel=1e-12)  # perfect selection


@pytest.fixture(scope="module")
def wikipedia_run(spark, tmp_path_factory):
    """Half of the Pile sample's Wikipedia articles are the target; the rest stay in raw."""
    root = tmp_path_factory.mktemp("report")
    rows = read_jsonl(PILE)
    wiki = [r for r in rows if r["metadata"]["pile_set_name"] == "Wikipedia (en)"]
    target_ids = {r["id"] for r in wiki[::2]}
    raw = write_jsonl(root / "raw.jsonl", [r for r in rows if r["id"] not in target_ids])
    target = write_jsonl(root / "target.jsonl", [r for r in rows if r["id"] in target_ids])
    dsir = HashedNgramDSIR(raw, target, str(root / "run"), text_col="contents", id_col="id", spark=spark)
    dsir.fit_importance_estimator(num_tokens_to_fit="all")
    dsir.compute_importance_weights()
    dsir.resample(str(root / "out"), num_to_sample=40, seed=0)
    return root, dsir


def test_dsir_beats_random_and_selects_more_wikipedia(spark, wikipedia_run):
    root, dsir = wikipedia_run
    report = dsir.report(label_col="metadata.pile_set_name")
    kl = report["kl_reduction"]
    assert set(kl) == {"selected", "random", "top_k"}
    assert kl["selected"] > kl["random"] and kl["top_k"] > kl["random"]
    shares = report["labels"]["shares"]
    assert shares["selected"]["Wikipedia (en)"] > shares["raw"]["Wikipedia (en)"]
    # Exactly the shares of the raw rows and of the selected ones (one scan of raw gives both).
    labels = {r["id"]: r["metadata"]["pile_set_name"] for r in read_jsonl(root / "raw.jsonl")}
    chosen = [labels[r.id] for r in spark.read.parquet(str(root / "run" / "selection" / "ids")).collect()]
    for name, values in (("raw", list(labels.values())), ("selected", chosen)):
        assert shares[name] == pytest.approx({k: values.count(k) / len(values) for k in sorted(set(values))})
    assert report["documents"]["selected"] == 40
    # The examples' texts and labels come from the same pass over raw as the label shares.
    rows = {str(r["id"]): r for r in read_jsonl(root / "raw.jsonl")}
    assert report["examples"] and {e["group"] for e in report["examples"]} >= {"top", "random", "passed_over", "raw"}
    for example in report["examples"]:
        assert example["label"] == rows[example["id"]]["metadata"]["pile_set_name"]
        assert example["text"] == rows[example["id"]]["contents"][:2000]
    # Exactly the KL reduction of the selected documents, counted here on the driver.
    texts = {r["id"]: r["contents"] for r in read_jsonl(root / "raw.jsonl")}
    selected_probs = _distribution([texts[r.id] for r in spark.read.parquet(
        str(root / "run" / "selection" / "ids")).collect()])
    target_probs = _distribution([r["contents"] for r in read_jsonl(root / "target.jsonl")])
    expected = kl_reduction([target_probs], _distribution(list(texts.values())), [selected_probs])
    assert kl["selected"] == pytest.approx(expected, rel=1e-9)
    assert report["documents"]["raw"] == report["documents"]["eligible"] + report["documents"]["too_short"]
    histogram = report["log_weights"][0]
    outside = histogram["outside"]
    # Eligible documents only, and every one counted: in a bin, or below or above the axis.
    assert sum(histogram["selected"]) + outside["selected"]["below"] + outside["selected"]["above"] == 40
    eligible = report["documents"]["eligible"]
    assert sum(histogram["raw"]) + outside["raw"]["below"] + outside["raw"]["above"] == eligible
    # The axis is the central 99%: about 1% of the eligible documents fall outside it, never more than 2%.
    assert 0 < outside["raw"]["below"] + outside["raw"]["above"] <= 0.02 * eligible


def test_report_reuses_the_resample_record_and_matches_a_recount(spark, wikipedia_run):
    """The report takes the selection's size and the scores' sizes from the resample stage's record; a
    record without them (an older version's) makes it count them again, to the same report."""
    root, dsir = wikipedia_run
    from_record = dsir.report()
    # Without labels the examples' rows come from the report's pass too: their texts, and no label.
    rows = {str(r["id"]): r for r in read_jsonl(root / "raw.jsonl")}
    assert from_record["examples"] and all(e["text"] == rows[e["id"]]["contents"][:2000] and e["label"] is None
                                           for e in from_record["examples"])
    folder = str(root / "run" / "selection")
    record = read_record(spark, folder)
    documents = from_record["documents"]
    assert (record["selected"], record["documents"], record["eligible"]) == (
        documents["selected"], documents["raw"], documents["eligible"])
    assert record["eligible_tokens"] > 0
    write_record(spark, folder, {k: v for k, v in record.items() if k != "eligible_tokens"})
    try:
        recounted = dsir.report()
    finally:
        write_record(spark, folder, record)
    for key in ("kl_reduction", "documents", "tokens", "log_weights", "lengths"):
        assert recounted[key] == from_record[key]


def is_png(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 100 and height > 100
    return width, height


def test_report_files_and_figures(wikipedia_run):
    root, dsir = wikipedia_run
    dsir.report(label_col="metadata.pile_set_name")
    folder = root / "run" / "report"
    report = json.loads((folder / "report.json").read_text())
    for key in ("kl_reduction", "documents", "tokens", "log_weights", "labels", "figures", "seed"):
        assert key in report
    assert set(report["figures"]) == {"log_weight_histogram.png", "num_tokens_histogram.png", "label_shares.png"}
    for name in report["figures"]:
        is_png(folder / name)
    markdown = (folder / "report.md").read_text()
    assert "KL reduction" in markdown and "![label_shares.png](label_shares.png)" in markdown


def test_report_without_the_plotting_extra(wikipedia_run, monkeypatch, tmp_path):
    root, dsir = wikipedia_run
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    for png in (root / "run" / "report").glob("*.png"):
        png.unlink()
    report = dsir.report()
    folder = root / "run" / "report"
    assert report["figures"] == [] and not list(folder.glob("*.png"))
    written = json.loads((folder / "report.json").read_text())
    assert written["kl_reduction"]["selected"] == report["kl_reduction"]["selected"]
    assert "KL reduction" in (folder / "report.md").read_text()


def test_separate_targets_report_per_target(spark, tmp_path):
    rows = read_jsonl(PILE)
    by_source = lambda name: [r for r in rows if r["metadata"]["pile_set_name"] == name][:10]  # noqa: E731
    raw = write_jsonl(tmp_path / "raw.jsonl", rows)
    wiki = write_jsonl(tmp_path / "wiki.jsonl", by_source("Wikipedia (en)"))
    code = write_jsonl(tmp_path / "code.jsonl", by_source("Github"))
    dsir = HashedNgramDSIR(raw, [wiki, code], str(tmp_path / "run"), text_col="contents", id_col="id",
                           separate_targets=True, spark=spark)
    dsir.fit_importance_estimator(num_tokens_to_fit="all")
    dsir.compute_importance_weights()
    dsir.resample(str(tmp_path / "out"), num_to_sample=30, seed=1)
    report = dsir.report()
    per_target = report["kl_reduction"]["per_target"]
    assert set(per_target) == {"target_0", "target_1"}
    for values in per_target.values():
        assert values["selected"] > values["random"]
    # Exactly the KL reduction of each target's part of the selection, counted here on the driver.
    texts = {r["id"]: r["contents"] for r in rows}
    chosen = spark.read.parquet(str(tmp_path / "run" / "selection" / "ids")).collect()
    raw_probs = _distribution(list(texts.values()))
    for t, target in enumerate((by_source("Wikipedia (en)"), by_source("Github"))):
        part = _distribution([texts[r.id] for r in chosen if r.target == t])
        expected = kl_reduction([_distribution([r["contents"] for r in target])], raw_probs, [part])
        assert per_target[f"target_{t}"]["selected"] == pytest.approx(expected, rel=1e-9)
    # Examples per target: each target's top ones are its part of the selection, by its own weight.
    for t in (0, 1):
        mine = sorted((r for r in chosen if r.target == t), key=lambda r: (-r.log_weight, r.id))
        top = [e for e in report["examples"] if e["group"] == "top" and e["target"] == t]
        assert [e["id"] for e in top] == [str(r.id) for r in mine[:5]]
        assert all(e["text"] == texts[int(e["id"])][:2000] for e in top)
    assert "<h4>Target target_1</h4>" in (tmp_path / "run" / "report" / "report.html").read_text()
