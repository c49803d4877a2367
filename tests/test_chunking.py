"""Equal-length chunks: one tokenization gives each chunk's features and its exact span of the text."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import EDGE_TEXTS, PILE, TARGET_C, read_jsonl
from hypothesis import given, settings
from hypothesis import strategies as st

from dsir_spark.config import ChunkingConfig, DatasetConfig, FeatureConfig, FitConfig, ResampleConfig, RunConfig
from dsir_spark.estimators.ngram_ratio import DSIRModel
from dsir_spark.featurizer.features import CompiledFeaturizer, Featurizer, tokenize
from dsir_spark.pipeline import run_pipeline
from dsir_spark.run.directory import stage_dir

CONFIG = FeatureConfig(ngrams=2, num_buckets=997)
TABLE = np.random.default_rng(3).normal(size=(2, 997))
# Letters (some non-ASCII), digits, punctuation and spaces; no character whose lower case changes the
# text's length or depends on what follows (U+0130, sigma), so that a slice lower-cases like the whole.
PLAIN = st.text(st.sampled_from(list("abcXYZ éÅß漢字0129_.,!?-  \t\n")), max_size=300)


def chunk_tokens_of(text, chunks, d):
    return [tokenize(text[s:e]) for doc, s, e in zip(chunks.doc, chunks.start, chunks.end) if doc == d]


@settings(max_examples=150, deadline=None)
@given(texts=st.lists(PLAIN, min_size=1, max_size=5), size=st.integers(1, 9))
def test_the_chunks_token_streams_make_the_documents_and_each_text_is_the_exact_slice(texts, size):
    chunks = Featurizer(CONFIG).score_chunks(texts, TABLE, size, 0)
    for d, text in enumerate(texts):
        streams = chunk_tokens_of(text, chunks, d)
        assert [t for stream in streams for t in stream] == tokenize(text)
        assert all(len(stream) == size for stream in streams[:-1]) and all(0 < len(s) <= size for s in streams)
    # Each chunk is scored as its own text would be.
    alone = Featurizer(CONFIG).score([texts[d][s:e] for d, s, e in zip(chunks.doc, chunks.start, chunks.end)],
                                     TABLE)
    assert np.array_equal(alone[0], chunks.num_tokens) and np.array_equal(alone[1], chunks.sums)


@settings(max_examples=150, deadline=None)
@given(texts=st.lists(st.one_of(st.text(max_size=200), st.sampled_from(EDGE_TEXTS), st.none()), max_size=6),
       size=st.integers(1, 7), min_tokens=st.integers(0, 8), ngrams=st.integers(1, 4),
       hash_mode=st.sampled_from(["sha256", "xxhash64"]))
def test_compiled_chunks_equal_the_pure_python_ones(texts, size, min_tokens, ngrams, hash_mode):
    config = FeatureConfig(ngrams=ngrams, num_buckets=997, hash=hash_mode)
    ours, theirs = (f(config).score_chunks(texts, TABLE, size, min_tokens) for f in (CompiledFeaturizer, Featurizer))
    for field in ("doc", "chunk", "start", "end", "num_tokens", "sums"):
        assert np.array_equal(getattr(ours, field), getattr(theirs, field)), field


def test_a_shorter_last_chunk_is_kept_with_min_tokens_and_spans_map_through_lower_casing():
    # U+0130 lower-cases to "i" + U+0307 (two tokens under re): spans map back to the original characters,
    # and a boundary inside one character's lower case puts that character in both chunks.
    text = "İİ one two three four five"
    for featurizer in (CompiledFeaturizer(CONFIG), Featurizer(CONFIG)):
        chunks = featurizer.score_chunks([text], TABLE, 3, 2)
        assert [text[s:e] for s, e in zip(chunks.start, chunks.end)] == ["İİ", "İ one two", "three four five"]
        chunks = featurizer.score_chunks([text], TABLE, 4, 2)
        assert [text[s:e] for s, e in zip(chunks.start, chunks.end)] == ["İİ", "one two three four"]
        chunks = featurizer.score_chunks([text], TABLE, 4, 1)
        assert [text[s:e] for s, e in zip(chunks.start, chunks.end)] == ["İİ", "one two three four", "five"]
        assert list(chunks.chunk) == [0, 1, 2] and list(chunks.num_tokens) == [4, 4, 1]


def run_config(run_dir, chunk_tokens=64, **resample) -> RunConfig:
    return RunConfig(
        run_dir=str(run_dir),
        raw=DatasetConfig(paths=(str(PILE),), text_col="contents", id_col="id"),
        targets=(DatasetConfig(paths=(str(TARGET_C),), text_col="contents"),),
        fit=FitConfig(num_tokens_to_fit="all"),
        chunking=ChunkingConfig(tokens=chunk_tokens, min_tokens=10),
        resample=ResampleConfig(num_to_sample=60, min_example_length=10, output_format="json", **resample),
    )


def test_selected_chunks_hold_the_exact_original_text_beside_the_documents_columns(spark, tmp_path):
    records = run_pipeline(spark, run_config(tmp_path / "run"), stages=("count", "fit", "score", "resample"))
    raw = {r["id"]: r for r in read_jsonl(PILE)}
    expected_chunks = 0
    for row in raw.values():
        expected_chunks += sum(1 for _ in range(0, len(tokenize(row["contents"])) // 64)) + (
            1 if len(tokenize(row["contents"])) % 64 >= 10 else 0)
    assert records["score"]["chunking"]["chunks"] == expected_chunks == records["score"]["rows_out"]
    scores = {r["id"]: r for r in spark.read.parquet(stage_dir(run_config(tmp_path / "run"), "score")).collect()}
    output = [json.loads(line) for path in (tmp_path / "run" / "output").glob("*.json") for line in open(path)]
    assert len(output) == 60
    for row in output:
        chunk_id = f"{row['dsir_doc_id']}/{row['dsir_chunk']}"
        span = scores[chunk_id]
        assert row["contents"] == raw[row["dsir_doc_id"]]["contents"][span["dsir_char_start"]:span["dsir_char_end"]]
        assert row["id"] == row["dsir_doc_id"] and row["metadata"] == raw[row["id"]]["metadata"]
        assert row["dsir_log_weight"] == span["log_weight"]
        assert len(tokenize(row["contents"])) == span["num_tokens"]

    # The report's examples are chunks: their ids, weights and exact text slices.
    report = run_pipeline(spark, run_config(tmp_path / "run"))["report"]["report"]
    assert report["examples"] and all("/" in e["id"] for e in report["examples"])
    for example in report["examples"]:
        span, document = scores[example["id"]], raw[int(example["id"].split("/")[0])]
        assert example["text"] == document["contents"][span["dsir_char_start"]:span["dsir_char_end"]][:2000]
        assert example["num_tokens"] == span["num_tokens"]

    # explain: a document's id stands for each of its chunks, in order; a chunk id for itself.
    from dsir_spark.stages.explain import explain

    document = next(i for i, r in raw.items() if len(tokenize(r["contents"])) >= 3 * 64)
    chunk_ids = sorted((s for s in scores if s.startswith(f"{document}/")), key=lambda s: int(s.split("/")[1]))
    explained = explain(spark, run_config(tmp_path / "run"), [document, chunk_ids[1]], top=3)
    assert [e["id"] for e in explained] == [*chunk_ids, chunk_ids[1]] and len(chunk_ids) >= 3
    for entry in explained:
        assert entry["num_tokens"] == scores[entry["id"]]["num_tokens"]
        assert entry["weights"][0]["log_weight"] == pytest.approx(scores[entry["id"]]["log_weight"], abs=1e-9)


@pytest.mark.parametrize("partitions", [1, 5])
def test_chunk_ids_and_scores_do_not_depend_on_partitioning(spark, tmp_path, partitions):
    run_pipeline(spark, run_config(tmp_path / "run"), stages=("count", "fit"))
    model = DSIRModel.load(spark, stage_dir(run_config(tmp_path / "run"), "fit"))
    docs = spark.read.json(str(PILE)).select("id", "contents")
    baseline = model.transform(docs.coalesce(1), "contents", "id", chunk_tokens=64, chunk_min_tokens=10)
    moved = model.transform(docs.repartition(partitions, "contents"), "contents", "id", chunk_tokens=64,
                            chunk_min_tokens=10)
    assert sorted(baseline.collect()) == sorted(moved.collect())
