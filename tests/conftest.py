"""One local Spark session for the whole test run, plus small helpers to write test data."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

# The whole suite runs the compiled featurizer and fails if it is not built; tests of the pure-Python
# fallback set DSIR_SPARK_FEATURIZER=python themselves.
os.environ.setdefault("DSIR_SPARK_FEATURIZER", "compiled")

DATA = Path(__file__).parent / "data"
PILE = DATA / "toy_pile_data.jsonl"
TARGET_C = DATA / "toy_target_data.jsonl"
TARGET_WIKI = DATA / "toy_target_data_2.jsonl"

# Text that stresses the tokenizer and lower-casing: each string is one document.
EDGE_TEXTS = [
    "",
    "one",
    "...!!! ?? --",
    "abc_123 4_5 ___ 007",
    "tab\tseparated\x1cfile\x1dgroup\x1erecord\x1funit\x0bvt\x0cff",
    "Café naïve Ångström façade ÉCOLE",
    "e\u0301le\u0300ve cafe\u0301 n\u0303",
    "漢字テスト中文，日本語です。한국어",
    "हिन्दी देवनागरी लिपि में",
    "emoji 😀👍🏽 test 🇫🇷 ok",
    "İstanbul IŞIK ıi İİ I",
    "ΟΔΟΣ ΣΑΣ Σ ΑΣ.",
    "no\u00a0break\u2003em\u3000ideographic\u2028line\u2029para\x85nel",
    "١٢٣ ٤٥ x² ½ Ⅻ ⑤",
    "MiXeD CaSe WoRdS and words",
]


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    return str(path)


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("dsir-spark-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.default.parallelism", "4")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.warehouse.dir", str(tmp_path_factory.mktemp("warehouse")))
        .getOrCreate()
    )
    yield session
    session.stop()
