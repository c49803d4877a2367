"""Chunks as documents: the rows of a raw dataset cut to the character spans the score stage found.

Scoring with ``chunking.tokens`` writes one row per chunk (id "<doc id>/<chunk>", the document's id, the
chunk index and its characters [start, end) in the original text); ``expand_chunks`` turns such rows
back into documents whose text is the exact slice of the original, with the document's other columns.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from dsir_spark.columns import CHAR_END, CHAR_START, CHUNK, DOC_ID, ID
from dsir_spark.config import DatasetConfig
from dsir_spark.storage.io import replace_text

SPAN_COLUMNS = (ID, DOC_ID, CHUNK, CHAR_START, CHAR_END)


def is_chunked(scores: DataFrame) -> bool:
    return DOC_ID in scores.columns


def expand_chunks(raw: DataFrame, chunks: DataFrame, dataset: DatasetConfig) -> DataFrame:
    """``raw`` (from ``io.read_dataset``) with one row per chunk of ``chunks`` (SPAN_COLUMNS): the text
    column and ``__dsir_text`` hold the chunk's characters, ``__dsir_id`` its id, and DOC_ID and CHUNK
    are added."""
    spans = chunks.select(*SPAN_COLUMNS).withColumnRenamed(ID, "__dsir_chunk_id")
    joined = raw.join(spans, raw["__dsir_id"] == spans[DOC_ID])
    text = F.col("__dsir_text").substr(F.col(CHAR_START) + 1, F.col(CHAR_END) - F.col(CHAR_START))
    joined = joined.withColumn("__dsir_text", text)
    joined = replace_text(joined, dataset.text_col, F.col("__dsir_text"))
    return (joined.withColumn("__dsir_id", F.col("__dsir_chunk_id"))
            .drop("__dsir_chunk_id", CHAR_START, CHAR_END))
