"""What must not grow with the data: the plan's Spark jobs with the number of input files, and a task's
table of n-gram strings with the target's size."""

from __future__ import annotations

import json

import pytest
from conftest import TARGET_C
from pyspark.sql import functions as F

from dsir_spark.config import DatasetConfig, FeatureConfig, FitConfig, ResampleConfig, RunConfig
from dsir_spark.featurizer.counts import count_pass
from dsir_spark.featurizer.features import sha256_bucket
from dsir_spark.pipeline import plan
from dsir_spark.run.directory import STAGES, input_fingerprint
from dsir_spark.storage.io import one_listing


def many_files(folder, count: int, nested: bool = False):
    for i in range(count):
        where = folder / f"sub{i % 3}" if nested else folder
        where.mkdir(parents=True, exist_ok=True)
        (where / f"part-{i:05d}.jsonl").write_text(json.dumps({"id": i, "text": f"document number {i}"}) + "\n")
    return folder


def jobs_of_plan(spark, tmp_path, files: int, nested: bool, pattern: str = "") -> int:
    folder = many_files(tmp_path / f"raw_{files}_{nested}", files, nested)
    config = RunConfig(run_dir=str(tmp_path / f"run_{files}_{nested}"),
                       raw=DatasetConfig(paths=(f"{folder}{pattern}",), id_col="id"),
                       targets=(DatasetConfig(paths=(str(TARGET_C),), text_col="contents"),),
                       fit=FitConfig(num_tokens_to_fit="all"), resample=ResampleConfig(num_to_sample=1))
    group = f"plan-{files}-{nested}-{len(pattern)}"
    spark.sparkContext.setJobGroup(group, "the plan of a run")
    try:
        with one_listing():
            steps = plan(spark, config, False, STAGES)
            assert input_fingerprint(spark, config) == input_fingerprint(spark, config)
        fresh = input_fingerprint(spark, config)  # listed again, outside the run's one listing
    finally:
        spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)
    assert all(step.runs for step in steps)
    with one_listing():
        assert input_fingerprint(spark, config) == fresh
    return len(spark.sparkContext.statusTracker().getJobIdsForGroup(group))


@pytest.mark.parametrize("nested, pattern", [(False, ""), (False, "/*.jsonl"), (True, "")])
def test_the_plan_runs_as_many_spark_jobs_for_300_files_as_for_10(spark, tmp_path, nested, pattern):
    few, many = (jobs_of_plan(spark, tmp_path, n, nested, pattern) for n in (10, 300))
    assert few == many
    if not nested:
        assert many == 0  # a local folder or glob is listed by the driver itself


def test_a_tiny_string_bound_still_finds_the_most_frequent_strings_and_counts_stay_exact(spark):
    """A skewed target: one bigram in every document. Tallied from only 300 characters per task, the
    strings still name it first in its bucket; the bucket counts are those of an unbounded pass."""
    texts = [f"alpha beta alpha beta {word} gamma{i} delta{i % 7}" for i, word in enumerate(["x", "y", "z"] * 200)]
    documents = spark.createDataFrame([(t,) for t in texts], "text string").repartition(4)
    features = FeatureConfig()
    bounded = count_pass(documents, features, F.lit(0), strings={0: None}, string_chars=300)
    exact = count_pass(documents, features, F.lit(0), strings={0: None}, string_chars=10**9)
    assert (bounded.counts[0].counts == exact.counts[0].counts).all()
    assert bounded.counts[0].documents == 600
    top = bounded.strings.sort_values("count", ascending=False).iloc[0]
    assert top["ngram"] in ("alpha beta", "alpha", "beta")
    ranked = exact.strings.sort_values("count", ascending=False)["ngram"].head(3).tolist()
    assert set(ranked) == {"alpha", "beta", "alpha beta"}
    bounded_top = bounded.strings.sort_values("count", ascending=False)["ngram"].head(3).tolist()
    assert set(bounded_top) == set(ranked)
    assert bounded.strings["count"].sum() < exact.strings["count"].sum()  # it did stop counting


def test_strings_only_documents_name_their_buckets_and_are_not_counted(spark):
    documents = spark.createDataFrame([("alpha beta", 0), ("alpha beta", 0), ("gamma delta", 1)], "text string, g int")
    gamma = sha256_bucket("gamma", FeatureConfig().num_buckets)
    counted = count_pass(documents, FeatureConfig(), F.col("g"), strings={1: [gamma]}, strings_only=[1])
    assert set(counted.counts) == {0} and counted.counts[0].documents == 2 and counted.counts[0].tokens == 4
    assert set(counted.strings["bucket"]) == {gamma} and "gamma" in set(counted.strings["ngram"])


def test_strings_come_only_from_the_rows_string_rows_picks_and_counts_stay_exact(spark):
    """The report names buckets from a seeded sample of documents: rows not picked give no strings,
    however many tasks there are, and every row is still counted."""
    rows = [(f"alpha{i} beta{i}", i % 2 == 0) for i in range(40)]
    documents = spark.createDataFrame(rows, "text string, picked boolean").repartition(8)
    counted = count_pass(documents, FeatureConfig(), F.lit(0), strings={0: None}, string_rows=F.col("picked"))
    words = {word for ngram in counted.strings["ngram"] for word in ngram.split()}
    assert words == {f"{name}{i}" for i in range(0, 40, 2) for name in ("alpha", "beta")}
    assert counted.counts[0].documents == 40 and counted.counts[0].tokens == 80


def test_labels_are_tallied_per_group_for_every_row_as_text(spark):
    """Every row's label counts in its group, strings_only rows and texts that are null too; a label
    that is not a string is counted as Spark writes it (true, not True), a null label as None."""
    documents = spark.createDataFrame(
        [("alpha beta", 0, True), ("alpha", 0, None), (None, 0, True), ("gamma", 1, False), ("delta", 1, False),
         ("alpha", 2, True)], "text string, g int, flag boolean").repartition(3)
    counted = count_pass(documents, FeatureConfig(), F.col("g"), strings_only=[1], labels=F.col("flag"))
    assert counted.labels == {0: {"true": 2, None: 1}, 1: {"false": 2}, 2: {"true": 1}}
    assert set(counted.counts) == {0, 2} and counted.counts[0].documents == 3 and counted.counts[0].null_texts == 1
    assert count_pass(documents, FeatureConfig(), F.col("g")).labels == {}


def test_big_input_defaults_fill_in_only_what_the_user_did_not_set(spark, monkeypatch):
    from dsir_spark.runtime import session

    monkeypatch.setattr(session, "BIG_INPUT_DEFAULTS", {**session.BIG_INPUT_DEFAULTS,
                                                        "spark.sql.shuffle.partitions": "99"})
    keys = ("spark.sql.execution.arrow.maxBytesPerBatch", "spark.sql.sources.parallelPartitionDiscovery.parallelism",
            "spark.sql.files.openCostInBytes")
    local = RunConfig(run_dir="runs/x", raw=DatasetConfig(paths=("data/raw",)),
                      targets=(DatasetConfig(paths=("file:/data/target.jsonl",)),))
    remote = RunConfig(run_dir="runs/x", raw=DatasetConfig(paths=("s3a://bucket/raw",)), targets=local.targets)
    try:
        for key in keys:  # an earlier command line in this process set them
            spark.conf.unset(key)
        assert session.apply_big_input_defaults(spark, remote) == {
            "spark.sql.execution.arrow.maxBytesPerBatch": str(64 << 20),
            "spark.sql.sources.parallelPartitionDiscovery.parallelism": "100"}
        assert spark.conf.get("spark.sql.execution.arrow.maxBytesPerBatch") == str(64 << 20)
        assert spark.conf.get("spark.sql.shuffle.partitions") == "4"  # the test session's own setting stays
        assert spark.conf.get("spark.sql.files.openCostInBytes") == "4194304b"  # remote input: Spark's own 4 MB
        # Local inputs: files are cheap to open; what was set before (by the user, or above) stays.
        assert session.apply_big_input_defaults(spark, local) == {"spark.sql.files.openCostInBytes": str(256 << 10)}
    finally:
        for key in keys:
            spark.conf.unset(key)
