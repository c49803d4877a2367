"""What reading JSON Lines costs Spark, pass by pass, in one warm session: schema inference (all lines,
and Spark's samplingRatio), the typed read of id and text that the count and score passes make (text as
VARIANT, as dsir-spark reads it), and the whole record as one VARIANT column.

    python benchmarks/bench_json_read.py benchmarks/out/corpus_1200mb.jsonl [--cores 2] [--repeat 2]

Each pass is run --repeat times; the first run of the first pass pays for the cold JVM.
"""

from __future__ import annotations

import argparse
import time

from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import LongType, StructField, StructType, VariantType


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("path")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    spark = (SparkSession.builder.master(f"local[{args.cores}]").config("spark.driver.memory", "4g")
             .config("spark.ui.showConsoleProgress", "false").getOrCreate())
    path = args.path
    typed = StructType([StructField("id", LongType()), StructField("text", VariantType())])
    passes = {
        "schema inference, every line": lambda: len(spark.read.json(path).schema.fields),
        "schema inference, samplingRatio 0.001": lambda: len(
            spark.read.option("samplingRatio", 0.001).json(path).schema.fields),
        "typed read of id and text": lambda: spark.read.schema(typed).json(path).select(
            F.sum(F.length(F.variant_get("text", "$", "string"))), F.sum("id")).first()[0],
        "the record as one VARIANT": lambda: spark.read.option("singleVariantColumn", "v").json(path).select(
            F.sum(F.length(F.variant_get("v", "$.text", "string")))).first()[0],
    }
    print("| pass | seconds per run |\n|---|---|")
    for name, run in passes.items():
        seconds = []
        for _ in range(args.repeat):
            started = time.time()
            run()
            seconds.append(time.time() - started)
        print(f"| {name} | {', '.join(f'{s:.1f}' for s in seconds)} |", flush=True)


if __name__ == "__main__":
    main()
