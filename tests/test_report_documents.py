"""The report reads the documents the resample stage staged in its own pass over raw (the selection's,
the baselines', the examples', and with a label column every raw row's label), not raw: the same report
as one that joins raw itself, which it still does for report settings the resample stage did not stage."""

from __future__ import annotations

import json
import os

import pytest
from conftest import DATA, PILE, TARGET_C, TARGET_WIKI, read_jsonl, write_jsonl

from dsir_spark.config import config_from_dict
from dsir_spark.pipeline import run_pipeline
from dsir_spark.run.directory import read_record, write_record
from dsir_spark.selection.report_documents import holder
from dsir_spark.stages.report import report_stage
from dsir_spark.stages.resample import resample_stage


def _report(root) -> dict:
    return json.loads((root / "run" / "report" / "report.json").read_text())


COMPARED = ("kl_reduction", "labels", "examples", "ngrams", "documents", "tokens", "log_weights", "lengths")


@pytest.fixture(scope="module")
def run(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("report-documents")
    rows = read_jsonl(PILE)
    settings = {
        "run_dir": str(root / "run"),
        "raw": {"paths": [write_jsonl(root / "raw.jsonl", rows)], "text_col": "contents", "id_col": "id"},
        "targets": [{"paths": [str(TARGET_C)], "text_col": "contents"}],
        "resample": {"num_to_sample": 40, "seed": 3},
        "report": {"label_col": "metadata.pile_set_name", "example_documents": 2},
    }
    config = config_from_dict(settings)
    run_pipeline(spark, config)
    return root, config, settings, len(rows), _report(root)


def _without_staged(spark, root, work):
    """``work()`` with the resample record saying nothing was staged (as a version before staging did)."""
    folder = str(root / "run" / "selection")
    record = read_record(spark, folder)
    write_record(spark, folder, {k: v for k, v in record.items() if k != "report_documents"})
    try:
        return work()
    finally:
        write_record(spark, folder, record)


def test_the_staged_documents_are_the_held_ones_and_every_rows_label(spark, run):
    root, _, _, documents, _ = run
    record = read_record(spark, str(root / "run" / "selection"))
    assert record["report_documents"]["label_col"] == "metadata.pile_set_name"
    held = spark.read.parquet(str(root / "run" / "selection" / "held")).toPandas()
    assert len(held) == documents  # a label column: every raw row, for raw's label shares
    selected = held["__dsir_selected"]
    assert int(selected.sum()) == 40
    # Only the selected rows carry the output's columns (their lines, read whole: json_schema: sample),
    # their text there only (not staged twice).
    assert held["__dsir_record"].notna().sum() == 40 and held[selected]["__dsir_record"].notna().all()
    assert held[selected]["__dsir_report_text"].isna().all()
    # The selection's 40 and the baselines' 40 each (overlapping), and the examples (2 per group).
    texts = held[held["__dsir_report_text"].notna() | selected]
    assert 40 < len(texts) <= 3 * 40 + 5 * 2
    assert (held["__dsir_report_group"] != 0).sum() <= len(texts)


def test_the_report_from_the_staged_documents_equals_one_that_reads_raw(spark, run):
    root, config, _, _, staged = run
    assert staged["labels"]["shares"]["raw"] and staged["examples"]
    from_raw = _without_staged(spark, root, lambda: (report_stage(spark, config), _report(root))[1])
    for key in COMPARED:
        assert from_raw[key] == staged[key], key


def test_the_report_reads_no_raw_document(spark, run):
    """raw's bytes replaced by others of the same size and time (the run sees the same inputs): the report
    from the staged documents is the same; one that joins raw reads the replaced bytes."""
    root, config, _, _, staged = run
    raw = root / "raw.jsonl"
    before, stat = raw.read_bytes(), raw.stat()
    raw.write_bytes(b"{}\n" * (len(before) // 3) + b" " * (len(before) % 3))
    os.utime(raw, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    try:
        report_stage(spark, config)
        again = _report(root)
        for key in COMPARED:
            assert again[key] == staged[key], key
        # A report that joins raw reads the replaced bytes: documents without text, no label, no n-gram
        read_raw = _without_staged(spark, root, lambda: (report_stage(spark, config), _report(root))[1])
        assert read_raw["labels"]["shares"]["raw"] == {} and read_raw["kl_reduction"] != staged["kl_reduction"]
    finally:
        raw.write_bytes(before)
        os.utime(raw, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_other_report_settings_read_raw_to_the_report_staged_for_them(spark, run, tmp_path):
    """A run staged for one label column, reported on with another, joins raw itself: the same report as
    the one staged for that label column (the fixture's run, on the same documents)."""
    root, _, settings, _, staged = run
    rows = [{**r, "source": r["metadata"]["pile_set_name"][:4]} for r in read_jsonl(PILE)]
    raw = {**settings["raw"], "paths": [write_jsonl(tmp_path / "raw.jsonl", rows)]}
    staged_for = {**settings, "run_dir": str(tmp_path / "run"), "raw": raw,
                  "report": {**settings["report"], "label_col": "source"}}
    run_pipeline(spark, config_from_dict(staged_for))
    assert read_record(spark, str(tmp_path / "run" / "selection"))["report_documents"]["label_col"] == "source"
    report_stage(spark, config_from_dict({**staged_for, "report": settings["report"]}))
    relabelled = json.loads((tmp_path / "run" / "report" / "report.json").read_text())
    for key in COMPARED:
        assert relabelled[key] == staged[key], key


def test_a_nested_text_column_and_generated_ids_report_as_from_raw(spark, tmp_path):
    """The selected rows' text is staged once, in the output's (nested) text column: the report reads it
    there, to the report that joins raw."""
    rows = [{"doc": {"body": r["contents"], "source": r["metadata"]["pile_set_name"]}} for r in read_jsonl(PILE)]
    config = config_from_dict({
        "run_dir": str(tmp_path / "run"),
        "raw": {"paths": [write_jsonl(tmp_path / "raw.jsonl", rows)], "text_col": "doc.body"},
        "targets": [{"paths": [str(TARGET_C)], "text_col": "contents"}],
        "resample": {"num_to_sample": 30, "seed": 1, "output_format": "json"},
        "report": {"label_col": "doc.source", "example_documents": 2},
    })
    run_pipeline(spark, config)
    staged = _report(tmp_path)
    texts = {r["doc"]["body"] for r in rows}
    assert staged["examples"] and all(e["text"] and any(t.startswith(e["text"]) for t in texts)
                                      for e in staged["examples"])
    from_raw = _without_staged(spark, tmp_path, lambda: (report_stage(spark, config), _report(tmp_path))[1])
    for key in COMPARED:
        assert from_raw[key] == staged[key], key


def test_in_the_models_tokens_the_baselines_hold_as_many_documents_and_report_as_from_raw(spark, tmp_path):
    """A budget in the trainer's tokens split between two targets: the baselines hold as many documents
    as the selection for each target (their model tokens are not counted), staged or joined from raw."""
    rows = read_jsonl(PILE)
    raw = write_jsonl(tmp_path / "raw.jsonl", [{"id": r["id"], "text": r["contents"],
                                                "source": r["metadata"]["pile_set_name"]} for r in rows])
    settings = {
        "run_dir": str(tmp_path / "run"),
        "raw": {"paths": [raw], "id_col": "id"},
        "targets": [{"paths": [str(TARGET_C)], "text_col": "contents"},
                    {"paths": [str(TARGET_WIKI)], "text_col": "contents"}],
        "fit": {"separate_targets": True, "target_proportions": [0.7, 0.3]},
        "tokens": {"tokenizer": str(DATA / "sample_tokenizer.json")},  # trained on this sample
        "resample": {"num_to_sample": None, "num_tokens_to_sample": 6000, "seed": 5},
        "report": {"label_col": "source", "example_documents": 1},
    }
    config = config_from_dict(settings)
    records = run_pipeline(spark, config)
    staged = _report(tmp_path)
    held = spark.read.parquet(str(tmp_path / "run" / "selection" / "held")).toPandas()
    codes = held["__dsir_report_group"]
    selected = held[held["__dsir_selected"]]
    per_target = [int((codes.map(lambda c: holder(c, 0, 3)) == t + 1).sum()) for t in range(2)]
    assert len(selected) == records["resample"]["selected"] == sum(per_target) and min(per_target) > 0
    for index in (1, 2):  # random, top-k: for each target as many documents as the selection
        assert [int((codes.map(lambda c, i=index: holder(c, i, 3)) == t + 1).sum()) for t in range(2)] == per_target
    from_raw = _without_staged(spark, tmp_path, lambda: (report_stage(spark, config), _report(tmp_path))[1])
    assert "per_target" in staged["kl_reduction"] and "ngrams" not in staged  # separate targets: no n-grams
    for key in COMPARED:
        assert from_raw.get(key) == staged.get(key), key
    # Selected again without a report: the staged documents go (no report would read them).
    resample_stage(spark, config_from_dict({**settings, "report": {"enabled": False}}))
    assert not (tmp_path / "run" / "selection" / "held").exists()


def test_a_chunked_run_stages_its_chunks_and_reports_as_from_raw(spark, tmp_path):
    """Chunks: the resample stage stages the chunks the report holds (with a label column, every chunk's
    label), their text a slice of their document; the report reads them, to the raw-joined one."""
    rows = read_jsonl(PILE)
    config = config_from_dict({
        "run_dir": str(tmp_path / "run"),
        "raw": {"paths": [str(PILE)], "text_col": "contents", "id_col": "id"},
        "targets": [{"paths": [str(TARGET_C)], "text_col": "contents"}],
        "chunking": {"tokens": 64, "min_tokens": 10},
        "resample": {"num_to_sample": 40, "seed": 2, "min_example_length": 10},
        "report": {"label_col": "metadata.pile_set_name", "example_documents": 1},
    })
    records = run_pipeline(spark, config)
    held = spark.read.parquet(str(tmp_path / "run" / "selection" / "held")).toPandas()
    assert len(held) == records["score"]["chunking"]["chunks"]  # every chunk, for its label
    texts = {r["id"]: r["contents"] for r in rows}
    with_text = held[held["__dsir_report_text"].notna()]
    pairs = zip(with_text["__dsir_report_id"], with_text["__dsir_report_text"])
    assert len(with_text) > 0 and all(text in texts[int(i.split("/")[0])] for i, text in pairs)
    staged = _report(tmp_path)
    assert staged["examples"] and all("/" in e["id"] for e in staged["examples"])
    from_raw = _without_staged(spark, tmp_path, lambda: (report_stage(spark, config), _report(tmp_path))[1])
    for key in COMPARED:
        assert from_raw[key] == staged[key], key
