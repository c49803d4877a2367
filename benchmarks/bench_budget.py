"""A token budget against a document count: the cost of selecting by tokens, same scores, same size.

    python benchmarks/bench_budget.py [--docs 2000000] [--repeats 3]

The synthetic scores of bench_resample.py (log weights ~ N(0, 3), 50..400 tokens). For k = 1% and 20%
of N: ``select`` with num_to_sample = k, then with num_tokens = the tokens of that selection (so both
select about as much), each materialized by counting the selection and summing its tokens; medians of
``--repeats`` runs after one warm-up, in one local[2] session. Prints a Markdown table with the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time

from bench_resample import make_data


def timed(spark, scores, **size) -> tuple[float, int, int]:
    from pyspark.sql import functions as F

    from dsir_spark.selection.resampling import select

    started = time.perf_counter()
    selection, _ = select(scores, ["log_weight"], seed=1, min_example_length=0, **size)
    row = selection.agg(F.count("*").alias("n"), F.sum("num_tokens").alias("t")).first()
    return time.perf_counter() - started, int(row["n"]), int(row["t"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=2_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from pyspark.sql import SparkSession

    spark = (SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
             .config("spark.sql.shuffle.partitions", "8").getOrCreate())
    scores = spark.read.parquet(str(make_data(args.docs) / "scores.parquet"))
    print(f"N = {args.docs:,} scored documents; local[2]; medians of {args.repeats} runs")
    print("| k | by documents: s | by tokens (same tokens): s | documents selected by tokens | ratio |")
    print("|---|---|---|---|---|")
    for share in (0.01, 0.20):
        k = int(args.docs * share)
        timed(spark, scores, num_to_sample=k)  # warm-up
        by_docs = [timed(spark, scores, num_to_sample=k) for _ in range(args.repeats)]
        budget = by_docs[0][2]
        by_tokens = [timed(spark, scores, num_tokens=budget) for _ in range(args.repeats)]
        docs_s, tokens_s = statistics.median(t for t, _, _ in by_docs), statistics.median(t for t, _, _ in by_tokens)
        ratio = tokens_s / docs_s
        print(f"| {k:,} ({share:.0%}) | {docs_s:.2f} | {tokens_s:.2f} | {by_tokens[0][1]:,} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
