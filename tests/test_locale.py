"""Buckets do not depend on the JVM's default locale (Turkish: I/ı/İ/i lower-case differently)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
from conftest import EDGE_TEXTS

from dsir_spark.config import FeatureConfig
from dsir_spark.featurizer.counts import bucket_counts

SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pyspark.sql import SparkSession
    from dsir_spark.config import FeatureConfig
    from dsir_spark.featurizer.counts import bucket_counts
    turkish = "-Duser.language=tr -Duser.country=TR"
    spark = (SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false")
             .config("spark.driver.extraJavaOptions", turkish).config("spark.executor.extraJavaOptions", turkish)
             .getOrCreate())
    texts = json.loads(sys.stdin.read())
    locale = spark.sql("select lower('IŞIK') as l").first().l
    df = spark.createDataFrame([(t,) for t in texts], "text string")
    counts = bucket_counts(df, FeatureConfig())
    print(json.dumps({"jvm_lower_of_I": locale, "counts": counts.counts.tolist()}))
    """
)


def test_same_buckets_under_a_turkish_jvm_locale(spark):
    texts = EDGE_TEXTS + ["ISTANBUL IRMAK İZMİR Iğdır"] * 3
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "LC_ALL": "tr_TR.UTF-8"}
    result = subprocess.run([sys.executable, "-c", SCRIPT], input=json.dumps(texts), capture_output=True,
                            text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    turkish = json.loads(result.stdout.strip().splitlines()[-1])
    # The JVM really ran Turkish: its own lower() maps I to dotless ı (for non-ASCII strings) ...
    assert turkish["jvm_lower_of_I"] == "\u0131\u015f\u0131k"  # ışık, not ışik
    # ... and our buckets are still Python's (the reference's).
    here = bucket_counts(spark.createDataFrame([(t,) for t in texts], "text string"), FeatureConfig())
    np.testing.assert_array_equal(np.array(turkish["counts"]), here.counts)
