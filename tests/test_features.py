"""The featurizer alone, against the reference's get_ngram_counts, and the xxhash64 mode's properties."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import EDGE_TEXTS, PILE, read_jsonl
from data_selection.hashed_ngram_dsir import get_ngram_counts

from dsir_spark.config import FeatureConfig
from dsir_spark.featurizer.features import Featurizer, tokenize

TEXTS = EDGE_TEXTS + [r["contents"] for r in read_jsonl(PILE)[:40]]


@pytest.mark.parametrize("ngrams,num_buckets", [(1, 10000), (2, 10000), (3, 50000), (5, 97)])
def test_sha256_counts_equal_reference_per_document(ngrams, num_buckets):
    featurizer = Featurizer(FeatureConfig(ngrams=ngrams, num_buckets=num_buckets))
    features = featurizer.featurize(TEXTS)
    for d, text in enumerate(TEXTS):
        ours = np.bincount(features.buckets[features.doc_index == d], minlength=num_buckets)
        expected = get_ngram_counts(text, n=ngrams, num_buckets=num_buckets)
        np.testing.assert_array_equal(ours, expected, err_msg=f"document {d}: {text[:40]!r}")


def test_tokens_of_tricky_text():
    assert tokenize(None) == []
    assert tokenize("") == []
    assert tokenize("Hello, WORLD!!  x_1") == ["hello", ",", "world", "!!", "x_1"]
    # Python lower(): capital dotted I becomes i + combining dot; re's \w excludes combining marks,
    # so the dot is a punctuation token of its own (as in the reference with nltk < 3.10).
    assert tokenize("İstanbul") == ["i", "\u0307", "stanbul"]
    assert tokenize("ΟΔΟΣ") == ["οδος"]  # final sigma
    assert tokenize("a\x1cb\x1fc") == ["a", "b", "c"]  # information separators are whitespace


@pytest.mark.parametrize("ngrams", [1, 2, 4])
def test_xxhash64_mode_has_the_same_features_in_other_buckets(ngrams):
    sha = Featurizer(FeatureConfig(ngrams=ngrams, hash="sha256")).featurize(TEXTS)
    xx = Featurizer(FeatureConfig(ngrams=ngrams, hash="xxhash64")).featurize(TEXTS)
    # Same number of features per document: exactly the reference's n-grams, hashed differently.
    np.testing.assert_array_equal(np.bincount(xx.doc_index, minlength=len(TEXTS)),
                                  np.bincount(sha.doc_index, minlength=len(TEXTS)))
    np.testing.assert_array_equal(xx.num_tokens, sha.num_tokens)
    assert not np.array_equal(np.sort(xx.buckets), np.sort(sha.buckets))
    assert xx.buckets.min() >= 0 and xx.buckets.max() < 10000


def test_xxhash64_mode_is_deterministic_and_position_free():
    config = FeatureConfig(hash="xxhash64")
    alone = Featurizer(config).featurize(["the cat sat on the mat"])
    batched = Featurizer(config).featurize(["something else first", "the cat sat on the mat"])
    np.testing.assert_array_equal(np.sort(alone.buckets), np.sort(batched.buckets[batched.doc_index == 1]))
    # The same bigram hashes to the same bucket wherever it occurs; a different order does not.
    twice = Featurizer(config).featurize(["a b a b"])
    bigram_buckets = twice.buckets[4:]  # after the 4 unigrams: "a b", "b a", "a b"
    assert bigram_buckets[0] == bigram_buckets[2]
