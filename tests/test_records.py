"""Small records and listings without Spark jobs: the same bytes and listings as through Spark."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
from conftest import PILE, TARGET_C
from pyspark.sql import functions as F

from dsir_spark.config import DatasetConfig, FitConfig, ReportConfig, ResampleConfig, RunConfig
from dsir_spark.pipeline import complete_without_session, run_pipeline
from dsir_spark.storage.io import _local_listing, list_files, one_listing
from dsir_spark.storage.records import read_json, read_table, write_json, write_table


def spark_listing(spark, path):
    listing = spark.read.format("binaryFile").load(path).select(
        "path", "length", F.col("modificationTime").cast("long").alias("mtime"))
    return sorted((r["path"], int(r["length"]), int(r["mtime"])) for r in listing.collect())


def test_the_local_listing_is_sparks(spark, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    for name in ("a.jsonl", "b.jsonl", "c.parquet"):
        (folder / name).write_text("x" * len(name))
    (folder / "_SUCCESS").write_text("")
    (folder / ".a.jsonl.crc").write_text("")
    for path in (str(folder), f"{folder}/", f"{folder}/*.jsonl", f"{folder}/?.parquet", str(PILE)):
        local = _local_listing(spark, path)
        assert local is not None and local == spark_listing(spark, path), path
    (folder / "sub").mkdir()  # a subfolder: Spark's own rules apply, Spark lists
    assert _local_listing(spark, str(folder)) is None
    assert list_files(spark, str(folder)) == spark_listing(spark, str(folder))


def test_a_run_lists_each_input_once(spark, tmp_path):
    path = tmp_path / "one.jsonl"
    path.write_text('{"text": "a"}\n')
    with one_listing():
        first = list_files(spark, str(path))
        path.write_text('{"text": "a longer line"}\n')
        assert list_files(spark, str(path)) == first  # the run's listing, not the file's new size
    assert list_files(spark, str(path)) != first


def test_records_written_either_way_read_either_way(spark, tmp_path):
    record = {"status": "done", "n": 3, "nested": {"a": [1, 2]}}
    local = str(tmp_path / "local")
    write_json(spark, local, record)
    spark.createDataFrame([("{\"status\": \"old\"}",)], "value string").coalesce(1).write.mode(
        "overwrite").text(str(tmp_path / "spark_written"))
    assert read_json(spark, local) == record == read_json(spark, f"file://{local}")
    assert spark.read.text(local).first().value.startswith('{"n": 3')  # Spark reads the plain file
    assert read_json(spark, str(tmp_path / "spark_written")) == {"status": "old"}  # plain reads Spark's
    write_json(spark, str(tmp_path / "spark_written"), record)  # replaces Spark's part, marker and checksums
    assert read_json(spark, str(tmp_path / "spark_written")) == record
    assert sorted(p.name for p in (tmp_path / "spark_written").iterdir()) == ["part-00000.txt"]
    assert read_json(spark, str(tmp_path / "missing")) is None

    table = pd.DataFrame({"bucket": pd.Series([0, 1, 2], dtype="int32"), "count": pd.Series([5, 0, 7], dtype="int64")})
    write_table(spark, str(tmp_path / "table"), table)
    pd.testing.assert_frame_equal(read_table(spark, str(tmp_path / "table")), table)
    pd.testing.assert_frame_equal(spark.read.parquet(str(tmp_path / "table")).toPandas(), table)


def test_a_complete_run_is_answered_without_a_session(spark, tmp_path):
    config = RunConfig(
        run_dir=str(tmp_path / "run"),
        raw=DatasetConfig(paths=(str(PILE),), text_col="contents", id_col="id"),
        targets=(DatasetConfig(paths=(str(TARGET_C),), text_col="contents"),),
        fit=FitConfig(num_tokens_to_fit="all"),
        resample=ResampleConfig(num_to_sample=20),
        report=ReportConfig(enabled=False),
    )
    assert complete_without_session(config) is None  # nothing ran yet
    config = replace(config, report=ReportConfig(enabled=True))
    records = run_pipeline(spark, config)
    again = complete_without_session(config)
    assert again is not None and set(again) == set(records)
    assert all(r["skipped"] and r["fingerprint"] == records[s]["fingerprint"] for s, r in again.items())
    # Another setting, or another seed: the resample stage must run, which needs Spark.
    assert complete_without_session(replace(config, resample=replace(config.resample, seed=1))) is None
    assert complete_without_session(replace(config, run_dir=f"file://{tmp_path}/run")) is not None
    assert complete_without_session(replace(config, run_dir="s3a://bucket/run")) is None
