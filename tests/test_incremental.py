"""Iterating costs the change: each dataset's counts are kept with a fingerprint of what they depend on,
so a new or changed target is counted alone, and the model is the one a fresh run makes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from conftest import PILE, TARGET_C, TARGET_WIKI, read_jsonl, write_jsonl

from dsir_spark.config import config_from_dict
from dsir_spark.pipeline import run_pipeline
from dsir_spark.storage.records import read_json, read_table


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> tuple[str, int]:
    rows = read_jsonl(PILE)
    return write_jsonl(tmp_path_factory.mktemp("incremental") / "raw.jsonl", rows), len(rows)


def config_for(run_dir: Path, raw: str, *targets: str, **fit) -> dict:
    return {
        "run_dir": str(run_dir),
        "raw": {"paths": [raw], "text_col": "contents"},
        "targets": [{"name": Path(t).stem, "paths": [t], "text_col": "contents"} for t in targets],
        "fit": {"num_tokens_to_fit": "all", **fit},
        "resample": {"num_to_sample": 50, "seed": 3},
        "report": {"enabled": False},
    }


def run(spark, settings: dict, **kwargs) -> dict:
    return run_pipeline(spark, config_from_dict(settings), **kwargs)


def log_diff(spark, run_dir: Path) -> np.ndarray:
    table = read_table(spark, str(run_dir / "model" / "log_diff")).sort_values("bucket")
    return np.stack([table[c].to_numpy() for c in table.columns if c != "bucket"])


def featurized(record: dict) -> int:
    return record["featurizer"]["documents_compiled"] + record["featurizer"]["documents_python"]


def test_a_new_target_on_the_same_raw_counts_only_the_target_and_fits_a_fresh_runs_model(spark, raw, tmp_path):
    raw_path, raw_documents = raw
    first = run(spark, config_for(tmp_path / "run", raw_path, str(TARGET_C)))["count"]
    assert first["datasets"] == {"toy_target_data": "counted", "raw": "counted"}
    assert featurized(first) == raw_documents + len(read_jsonl(TARGET_C))

    # A second target is added: only it is read and featurized; raw's counts are reused.
    both = config_for(tmp_path / "run", raw_path, str(TARGET_C), str(TARGET_WIKI))
    records = run(spark, both)
    assert records["count"]["datasets"] == {"toy_target_data": "reused", "toy_target_data_2": "counted",
                                            "raw": "reused"}
    assert featurized(records["count"]) == records["count"]["rows_in"] == len(read_jsonl(TARGET_WIKI))
    from dsir_spark.terminal import summary

    assert summary(records, "report.html").splitlines()[1].split()[:4] == ["count", "ran", "(toy_target_data,",
                                                                           "raw"]
    assert not records["fit"]["skipped"] and not records["score"]["skipped"]  # the model changed: fit and score rerun

    fresh = run(spark, config_for(tmp_path / "fresh", raw_path, str(TARGET_C), str(TARGET_WIKI)))
    assert featurized(fresh["count"]) == raw_documents + len(read_jsonl(TARGET_C)) + len(read_jsonl(TARGET_WIKI))
    assert np.array_equal(log_diff(spark, tmp_path / "run"), log_diff(spark, tmp_path / "fresh"))  # bit for bit
    assert records["count"]["raw"] == fresh["count"]["raw"]
    assert records["count"]["targets"] == fresh["count"]["targets"]
    selected = [sorted(r.id for r in spark.read.parquet(str(d / "selection" / "ids")).collect())
                for d in (tmp_path / "run", tmp_path / "fresh")]
    assert selected[0] == selected[1]


def test_what_the_counts_depend_on_is_noticed(spark, raw, tmp_path):
    raw_path, raw_documents = raw
    target = write_jsonl(tmp_path / "target.jsonl", read_jsonl(TARGET_C))
    settings = config_for(tmp_path / "run", raw_path, target)
    run(spark, settings)

    # The target's file changes (one more document): the target alone is counted again.
    rows = read_jsonl(TARGET_C)
    write_jsonl(tmp_path / "target.jsonl", rows + rows[:1])
    os.utime(tmp_path / "target.jsonl", (1, 1))  # another modification time, whatever the clock
    count = run(spark, settings)["count"]
    assert count["datasets"] == {"target": "counted", "raw": "reused"}
    assert count["targets"]["target"]["documents"] == len(rows) + 1

    # The fit budget is raw's alone: raw is counted again, the target's counts are kept.
    count = run(spark, {**settings, "fit": {"num_tokens_to_fit": 20_000, "sample_seed": 5}})["count"]
    assert count["datasets"] == {"target": "reused", "raw": "counted"}
    assert count["raw"]["documents"] < raw_documents
    record = read_json(spark, str(tmp_path / "run" / "counts" / "raw.json"))
    assert record["num_tokens_to_fit"] == 20_000 and record["fit_sample"]["fraction"] < 1

    # The features change every dataset's counts.
    count = run(spark, {**settings, "features": {"num_buckets": 5000}})["count"]
    assert count["datasets"] == {"target": "counted", "raw": "counted"}

    # --force counts everything again, whatever is stored.
    count = run(spark, {**settings, "features": {"num_buckets": 5000}}, force=True)["count"]
    assert count["datasets"] == {"target": "counted", "raw": "counted"}
    assert featurized(count) == raw_documents + len(rows) + 1


def test_counts_interrupted_while_rewritten_are_not_reused(spark, raw, tmp_path):
    raw_path, raw_documents = raw
    settings = config_for(tmp_path / "run", raw_path, str(TARGET_C))
    run(spark, settings)
    # What a run killed between a dataset's record and its table leaves behind (see write_counts).
    from dsir_spark.storage.records import write_json

    write_json(spark, str(tmp_path / "run" / "counts" / "raw.json"), {"status": "writing"})
    count = run(spark, settings, force=True, reuse_counts=True)["count"]
    assert count["datasets"] == {"toy_target_data": "reused", "raw": "counted"}
    assert featurized(count) == raw_documents


def test_a_fit_budget_of_a_tenth_featurizes_about_a_tenth_of_raw(spark, raw, tmp_path):
    raw_path, raw_documents = raw
    whole = run(spark, config_for(tmp_path / "all", raw_path, str(TARGET_C)))["count"]
    target_documents = whole["targets"]["toy_target_data"]["documents"]
    tenth = whole["raw"]["tokens"] // 10
    count = run(spark, config_for(tmp_path / "tenth", raw_path, str(TARGET_C), num_tokens_to_fit=tenth))["count"]
    sampled = featurized(count) - target_documents
    assert sampled == count["raw"]["documents"]  # documents outside the fit sample are never featurized
    assert 0.07 * raw_documents <= sampled <= 0.13 * raw_documents
    assert 0.07 * whole["raw"]["tokens"] <= count["raw"]["tokens"] <= 0.13 * whole["raw"]["tokens"]


@pytest.mark.parametrize("budget", [20_000, 100_000])
@pytest.mark.parametrize("bytes_per_char", [1.1, 10])  # 10: the text a tenth of the bytes, a second pass
def test_the_fit_samples_one_pass_estimate_equals_the_two_pass_one(spark, monkeypatch, budget, bytes_per_char):
    from dsir_spark.featurizer import counts

    monkeypatch.setattr(counts, "_ESTIMATE_CHARS", 50_000)  # a probe of a few percent of the documents
    rows = read_jsonl(PILE)
    documents = spark.createDataFrame([(str(i), r["contents"]) for i, r in enumerate(rows)], "id string, text string")
    size = int(sum(len(r["contents"]) for r in rows) * bytes_per_char)
    one_pass = counts.sample_for_fit(documents, budget, seed=7, max_chars=size, tokenizer="wordpunct")[1]
    two_passes = counts.sample_for_fit(documents, budget, seed=7, max_chars=None, tokenizer="wordpunct")[1]
    assert one_pass == two_passes
    assert 0 < one_pass["fraction"] < 1


def _raw_record(spark, run_dir: Path) -> dict:
    record = read_json(spark, str(run_dir / "counts" / "raw.json"))
    return {k: record[k] for k in ("documents", "tokens", "num_features", "fit_sample")}


# Chinese text: each character a token of wordpunct_cjk, each run of them between punctuation one of wordpunct.
CJK_TEXT = "数据选择很重要，语言模型需要好的训练数据。"


def _fit_budget_runs(spark, tmp_path, monkeypatch, dense: bool, tokens_per_byte: float, cjk: bool = False):
    """Raw (the Pile sample, text of a token per character: '.a.a.a', or with ``cjk`` Chinese text read
    with features.tokenizer wordpunct_cjk) with a fit budget of ``tokens_per_byte`` x its bytes;
    ``counted(name)`` runs the count stage alone in run directory ``name``, and ``estimates`` gets an
    entry for each pass made to estimate raw's tokens first."""
    from dsir_spark.stages import count

    rows = read_jsonl(PILE)
    if dense:
        rows = [{**r, "contents": ".a" * (len(r["contents"]) // 2)} for r in rows]
    if cjk:
        rows = [{**r, "contents": CJK_TEXT * (1 + len(r["contents"]) // 200)} for r in rows]
    raw_path = write_jsonl(tmp_path / "raw.jsonl", rows)
    budget = int(os.path.getsize(raw_path) * tokens_per_byte)

    def counted(name: str) -> dict:
        settings = config_for(tmp_path / name, raw_path, str(TARGET_C), num_tokens_to_fit=budget, sample_seed=2)
        if cjk:
            settings["features"] = {"tokenizer": "wordpunct_cjk"}
        return run(spark, settings, stages=("count",))["count"]

    estimates = []
    original = count.sample_for_fit
    monkeypatch.setattr(count, "sample_for_fit", lambda *a, **k: estimates.append(1) or original(*a, **k))
    return rows, budget, counted, estimates


def _probed_then_decided(spark, tmp_path, monkeypatch, counted, estimates) -> tuple[dict, dict]:
    """The count stage in run directory "probed" (raw's tokens estimated in the count pass), then in
    "decided" (never probing: the sample decided by a pass first), with the same raw record."""
    from dsir_spark.stages import count

    probed = counted("probed")
    assert estimates == []  # no pass for the estimate before the count pass
    monkeypatch.setattr(count, "LIKELY_TOKENS_PER_BYTE", 10.0)
    monkeypatch.setattr(count, "HEAD_MARGIN", 100.0)
    decided = counted("decided")
    assert estimates == [1]
    assert _raw_record(spark, tmp_path / "probed") == _raw_record(spark, tmp_path / "decided")
    assert probed["raw"] == decided["raw"]
    return probed, decided


@pytest.mark.parametrize("dense", [False, True])
def test_raw_probably_under_the_budget_is_counted_in_one_pass_with_the_same_result(spark, tmp_path, monkeypatch,
                                                                                   dense):
    """A budget between half raw's bytes and its bytes: the count pass featurizes all of raw and makes the
    fit sample's estimate itself. Real text is under the budget (one pass); text of a token per byte
    ('.a.a.a') is over it, and is counted again with its sample: both as deciding the sample first."""

    rows, _, counted, estimates = _fit_budget_runs(spark, tmp_path, monkeypatch, dense, 0.6)
    probed, decided = _probed_then_decided(spark, tmp_path, monkeypatch, counted, estimates)
    fraction = _raw_record(spark, tmp_path / "probed")["fit_sample"]["fraction"]
    if dense:
        assert fraction < 1 and probed["raw"]["documents"] < len(rows)
    else:
        assert fraction == 1.0 and probed["raw"]["documents"] == len(rows)
        assert "raw_lengths" in probed  # all of raw featurized: lengths recorded as with the sample decided
    assert featurized(probed) == featurized(decided)


@pytest.mark.parametrize("dense", [False, True])
def test_raw_whose_first_documents_show_it_under_the_budget_is_counted_in_one_pass(spark, tmp_path, monkeypatch,
                                                                                   dense):
    """A budget of 0.35 tokens per byte of raw: its bytes alone cannot show raw under it, its first
    documents can (real text, about 0.2 tokens per character): one pass, the record of deciding the
    sample first. Text of a token per character ('.a.a.a') shows over it: the sample is decided first."""
    from dsir_spark.stages import count

    rows, budget, counted, estimates = _fit_budget_runs(spark, tmp_path, monkeypatch, dense, 0.35)
    assert os.path.getsize(tmp_path / "raw.jsonl") * count.LIKELY_TOKENS_PER_BYTE > budget  # the bytes cannot tell
    guessed = counted("guessed")
    assert estimates == ([1] if dense else [])  # a pass for the estimate first only where the head says over
    monkeypatch.setattr(count, "HEAD_MARGIN", 100.0)  # the head never shows raw under: the sample decided first
    decided = counted("decided")
    assert estimates == ([1, 1] if dense else [1])
    assert _raw_record(spark, tmp_path / "guessed") == _raw_record(spark, tmp_path / "decided")
    assert guessed["raw"] == decided["raw"] and featurized(guessed) == featurized(decided)
    fraction = _raw_record(spark, tmp_path / "guessed")["fit_sample"]["fraction"]
    assert (fraction < 1) if dense else (fraction == 1.0 and guessed["raw"]["documents"] == len(rows))


def test_the_fit_budget_counts_the_runs_tokens_however_the_sample_is_decided(spark, tmp_path, monkeypatch):
    """Chinese text with features.tokenizer wordpunct_cjk: about 0.17 of its tokens per byte of JSON
    (4 of wordpunct's), a budget of 0.1. Decided in the count pass (the run's tokenizer) or by a pass
    first (wordpunct's tokens made it 'all of raw'), the sample is the same, about 0.6 of raw."""
    from dsir_spark.stages import count

    rows, budget, counted, estimates = _fit_budget_runs(spark, tmp_path, monkeypatch, False, 0.1, cjk=True)
    monkeypatch.setattr(count, "LIKELY_TOKENS_PER_BYTE", 0.0)  # probed in the count pass
    _, decided = _probed_then_decided(spark, tmp_path, monkeypatch, counted, estimates)
    sample = _raw_record(spark, tmp_path / "decided")["fit_sample"]
    assert 0.45 < sample["fraction"] < 0.75 and 0.45 * len(rows) < decided["raw"]["documents"] < 0.75 * len(rows)
    assert 0.8 * budget < decided["raw"]["tokens"] < 1.2 * budget
