"""Token budgets and the temperature: the longest prefix of the key order within T tokens, exact and
reproducible on any partitioning; t = 1 is today's selection, a small t the top-k."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import PILE, TARGET_C
from pyspark.sql import functions as F

import dsir_spark.selection.resampling as resampling
from dsir_spark.config import DatasetConfig, FitConfig, GroupCap, ReportConfig, ResampleConfig, RunConfig
from dsir_spark.pipeline import run_pipeline
from dsir_spark.selection.resampling import KEY, ResampleError, gumbel_keys, select


@pytest.fixture(scope="module")
def scores(spark):
    """5,000 documents of 20 to 2,000 tokens with known log weights; every 10th too short (< 100)."""
    rng = np.random.default_rng(7)
    tokens = rng.integers(100, 2000, 5000)
    tokens[::10] = 20
    weights = rng.normal(0, 2, 5000)
    rows = [(i, int(n), float(w)) for i, (n, w) in enumerate(zip(tokens, weights))]
    return spark.createDataFrame(rows, "id long, num_tokens int, log_weight double").cache()


def ids_of(selection):
    return sorted(r.id for r in selection.select("id").collect())


def brute_force_prefix(scores, budget: int, seed: int, temperature: float = 1.0) -> list[int]:
    """The driver's own prefix sum over every key, in key order (key descending, ties by id)."""
    keys = gumbel_keys(scores.where("num_tokens >= 100"), "log_weight", seed, 0, False, temperature=temperature)
    rows = sorted(keys.select("id", "num_tokens", KEY).collect(), key=lambda r: (-r[KEY], r["id"]))
    chosen, total = [], 0
    for row in rows:
        if total + row["num_tokens"] > budget:
            break
        chosen.append(row["id"])
        total += row["num_tokens"]
    return sorted(chosen)


@pytest.mark.parametrize("band_limit", [50_000, 150])  # all on the driver; several narrowing rounds
def test_a_token_budget_selects_the_longest_prefix_within_it(scores, monkeypatch, band_limit):
    monkeypatch.setattr(resampling, "BAND_LIMIT", band_limit)
    budget = 400_000
    selection, summary = select(scores.repartition(1), ["log_weight"], num_tokens=budget, seed=3)
    expected = brute_force_prefix(scores, budget, 3)
    assert ids_of(selection) == expected
    assert summary["selected"] == len(expected) and summary["tokens_selected"] <= budget
    taken = {r.id: r.num_tokens for r in scores.collect()}
    assert summary["tokens_selected"] == sum(taken[i] for i in expected)
    # The next document in key order would not have fitted.
    keys = gumbel_keys(scores.where("num_tokens >= 100"), "log_weight", 3, 0, False)
    following = keys.where(~F.col("id").isin(expected)).orderBy(F.desc(KEY), "id").first()
    assert summary["tokens_selected"] + following["num_tokens"] > budget
    moved, _ = select(scores.repartition(5), ["log_weight"], num_tokens=budget, seed=3)
    assert ids_of(moved) == expected  # partition-independent
    other, _ = select(scores, ["log_weight"], num_tokens=budget, seed=4)
    assert ids_of(other) != expected


def test_a_budget_of_every_eligible_token_selects_every_eligible_document_and_one_more_is_refused(scores):
    eligible_tokens = scores.where(F.col("num_tokens") >= 100).agg(F.sum("num_tokens")).first()[0]
    selection, summary = select(scores, ["log_weight"], num_tokens=eligible_tokens, seed=1)
    assert summary["selected"] == summary["eligible"] == 4500 == selection.count()
    assert summary["tokens_selected"] == summary["eligible_tokens"] == eligible_tokens
    with pytest.raises(ResampleError, match=f"num_tokens_to_sample={eligible_tokens + 1:,} but 4500 of 5000 "
                                            f"documents are eligible .* holding {eligible_tokens:,} tokens in all"):
        select(scores, ["log_weight"], num_tokens=eligible_tokens + 1, seed=1)


def test_token_budgets_per_target_are_met_as_stated(scores):
    two = scores.withColumn("log_weight_1", -F.col("log_weight"))
    columns = ["log_weight", "log_weight_1"]
    selection, summary = select(two, columns, num_tokens=300_000, proportions=[0.25, 0.75], seed=2)
    assert summary["per_target"] == [75_000, 225_000]
    tokens = {r.id: r.num_tokens for r in scores.collect()}
    rows = selection.collect()
    assert len({r.id for r in rows}) == len(rows)  # no document for two targets
    for target, budget in enumerate(summary["per_target"]):
        mine = [tokens[r.id] for r in rows if r.target == target]
        assert sum(mine) == summary["thresholds"][target]["tokens"] <= budget
        assert len(mine) == summary["thresholds"][target]["documents"]


def test_temperature_one_is_todays_selection_and_a_small_one_the_top_k(scores):
    today, _ = select(scores, ["log_weight"], 300, seed=9)
    same, summary = select(scores, ["log_weight"], 300, seed=9, temperature=1.0)
    assert ids_of(same) == ids_of(today) and "temperature" not in summary
    top, _ = select(scores, ["log_weight"], 300, top_k=True)
    sharp, summary = select(scores.repartition(3), ["log_weight"], 300, seed=9, temperature=1e-6)
    assert ids_of(sharp) == ids_of(top) and summary["temperature"] == 1e-6
    flat, _ = select(scores, ["log_weight"], 300, seed=9, temperature=50.0)
    flat_again, _ = select(scores.repartition(4), ["log_weight"], 300, seed=9, temperature=50.0)
    assert len(ids_of(flat)) == 300 and ids_of(flat) == ids_of(flat_again)
    # Flatter: the mean log weight of the selection falls toward the eligible mean.
    weights = {r.id: r.log_weight for r in scores.collect()}
    mean = {name: np.mean([weights[i] for i in ids_of(s)]) for name, s in (("t1", today), ("t50", flat))}
    assert mean["t50"] < mean["t1"]
    expected = brute_force_prefix(scores, 100_000, 9, temperature=0.5)
    tempered, _ = select(scores, ["log_weight"], num_tokens=100_000, seed=9, temperature=0.5)
    assert ids_of(tempered) == expected


def pile_run(spark, run_dir, resample: ResampleConfig, report: ReportConfig) -> dict:
    """The whole pipeline on the bundled Pile sample and C target with these resample and report settings."""
    return run_pipeline(spark, RunConfig(
        run_dir=str(run_dir),
        raw=DatasetConfig(paths=(str(PILE),), text_col="contents", id_col="id"),
        targets=(DatasetConfig(paths=(str(TARGET_C),), text_col="contents"),),
        fit=FitConfig(num_tokens_to_fit="all"),
        resample=resample,
        report=report,
    ))


def test_a_run_with_a_token_budget_writes_the_prefix_and_reports_on_it(spark, tmp_path):
    records = pile_run(spark, tmp_path / "run", ResampleConfig(num_tokens_to_sample=60_000, seed=1),
                       ReportConfig(enabled=True))
    resample = records["resample"]
    output = spark.read.parquet(str(tmp_path / "run" / "output"))
    scores = spark.read.parquet(str(tmp_path / "run" / "scores"))
    tokens = output.select("id").join(scores, "id").agg(F.sum("num_tokens")).first()[0]
    assert output.count() == resample["selected"] == resample["rows_out"]
    assert tokens == resample["tokens_selected"] <= 60_000
    assert resample["num_tokens_to_sample"] == 60_000 and resample["thresholds"][0]["tokens"] == tokens
    assert records["report"]["report"]["documents"]["selected"] == resample["selected"]


def greedy_with_caps(scores, caps: dict, default: float | None, amount: int, by_tokens: bool, seed: int):
    """The greedy walk over the key order that passes over documents of full groups, on the driver."""
    keys = gumbel_keys(scores.where("num_tokens >= 100"), "log_weight", seed, 0, False)
    rows = sorted(keys.select("id", "num_tokens", "group", KEY).collect(), key=lambda r: (-r[KEY], r["id"]))
    limit = {g: int(share * amount) for g, share in caps.items()}
    used, full, chosen, total = {}, set(), [], 0
    for row in rows:
        group, size = row["group"], row["num_tokens"] if by_tokens else 1
        cap = limit.get(group, int(default * amount) if default is not None else None)
        if group in full:
            continue
        if cap is not None and used.get(group, 0) + size > cap:
            full.add(group)  # a full group: its later documents are passed over
            continue
        if total + size > amount:
            break
        chosen.append(row["id"])
        used[group], total = used.get(group, 0) + size, total + size
    return sorted(chosen)


@pytest.mark.parametrize("by_tokens", [False, True])
def test_group_caps_equal_the_greedy_walk_that_passes_over_full_groups(scores, by_tokens):
    from dsir_spark.selection.resampling import Quota

    grouped = scores.withColumn("group", F.concat(F.lit("g"), (F.col("id") % 4).cast("string")))
    amount = 150_000 if by_tokens else 800
    quota = Quota("group", 0.3, {"g1": 0.1})
    size = {"num_tokens": amount} if by_tokens else {"num_to_sample": amount}
    selection, summary = select(grouped.repartition(3), ["log_weight"], seed=5, quota=quota, **size)
    expected = greedy_with_caps(grouped, {"g1": 0.1}, 0.3, amount, by_tokens, 5)
    assert ids_of(selection) == expected
    measure = "tokens" if by_tokens else "documents"
    assert summary["groups"]["g1"][measure] <= 0.1 * amount
    assert all(g[measure] <= 0.3 * amount for g in summary["groups"].values())
    if not by_tokens:
        assert len(expected) == amount  # exactly k, the caps permitting


def test_a_run_with_a_group_cap_on_a_raw_column(spark, tmp_path):
    resample = ResampleConfig(num_to_sample=200, group_col="metadata.pile_set_name", max_share=0.4,
                              group_caps=(GroupCap("Github", 0.05),), min_example_length=20)
    records = pile_run(spark, tmp_path / "run", resample,
                       ReportConfig(enabled=True, label_col="metadata.pile_set_name"))
    record = records["resample"]
    output = spark.read.parquet(str(tmp_path / "run" / "output"))
    shares = {r["g"]: r["n"] for r in output.groupBy(F.col("metadata.pile_set_name").alias("g"))
              .agg(F.count("*").alias("n")).collect()}
    assert sum(shares.values()) == 200 and shares.get("Github", 0) <= 10 and max(shares.values()) <= 80
    assert {g: v["documents"] for g, v in record["groups"].items()} == shares
    # The report's baselines keep the same quotas: no baseline gives Github more than its 5%.
    shares_of = records["report"]["report"]["labels"]["shares"]
    assert shares_of["selected"].get("Github", 0) <= 0.05
    assert shares_of["random"].get("Github", 0) <= 0.05 and shares_of["top_k"].get("Github", 0) <= 0.05
    assert max(shares_of["random"].values()) <= 0.4 and max(shares_of["top_k"].values()) <= 0.4
