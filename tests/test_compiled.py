"""The compiled featurizer (dsir_spark.featurizer._featurize) against the pure-Python one and the reference.

The suite runs with DSIR_SPARK_FEATURIZER=compiled (conftest), so every Spark test, the parity tests
with data-selection included, exercises the compiled path; these tests compare the two paths directly.
"""

from __future__ import annotations

import hashlib
import sys

import numpy as np
import pytest
import xxhash
from conftest import EDGE_TEXTS, PILE, read_jsonl
from data_selection.hashed_ngram_dsir import get_ngram_counts
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsir_spark.config import FeatureConfig
from dsir_spark.featurizer.features import CompiledFeaturizer, Featurizer, make_featurizer, tokenize

TEXTS = EDGE_TEXTS + [r["contents"] for r in read_jsonl(PILE)[:200]]
MODES = ["sha256", "xxhash64"]


TOKENIZERS = ["wordpunct", "wordpunct_regex", "wordpunct_cjk"]


def python_features(config: FeatureConfig, text: str) -> tuple[list[str], list[int]]:
    return tokenize(text, config.tokenizer), Featurizer(config).featurize([text]).buckets.tolist()


def test_the_compiled_featurizer_is_built_and_chosen():
    from dsir_spark.featurizer import _featurize  # fails when `pip install` did not build the extension

    assert _featurize.__file__.endswith((".so", ".pyd"))
    assert make_featurizer(FeatureConfig(), "auto").name == "compiled"
    assert make_featurizer(FeatureConfig(), "python").name == "python"


@pytest.fixture(params=[True, False], ids=["sha-extensions", "portable-sha256"])
def sha_backend(request):
    """Both SHA-256 compressions: the x86 SHA extensions (where the CPU has them) and portable C."""
    from dsir_spark.featurizer import _featurize

    active = _featurize.use_sha_extensions(request.param)
    if request.param and not active:
        pytest.skip("this CPU has no SHA extensions: only the portable SHA-256 runs here")
    yield request.param
    _featurize.use_sha_extensions(True)


@given(data=st.binary(max_size=300), seed=st.integers(min_value=0, max_value=2**64 - 1))
# The fixture only switches the SHA-256 compression; it holds no state that examples could share.
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_hashes_follow_their_specifications(sha_backend, data, seed):
    from dsir_spark.featurizer import _featurize

    assert _featurize.xxh64(data, seed) == xxhash.xxh64_intdigest(data, seed=seed)
    for m in (1, 97, 10000, 2**31 - 1):
        assert _featurize.sha256_bucket(data, m) == int(hashlib.sha256(data).hexdigest(), 16) % m


@pytest.mark.parametrize("tokenizer", TOKENIZERS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("ngrams,num_buckets", [(1, 10000), (2, 10000), (3, 50000), (5, 97)])
def test_compiled_scores_and_counts_equal_python_bit_for_bit(sha_backend, mode, ngrams, num_buckets, tokenizer):
    config = FeatureConfig(ngrams=ngrams, num_buckets=num_buckets, hash=mode, tokenizer=tokenizer)
    python, compiled = Featurizer(config), CompiledFeaturizer(config)
    log_diff = np.random.default_rng(ngrams).normal(size=(3, num_buckets))
    tokens_py, sums_py = python.score(TEXTS, log_diff)
    tokens_c, sums_c = compiled.score(TEXTS, log_diff)
    np.testing.assert_array_equal(tokens_c, tokens_py)
    assert sums_c.tobytes() == sums_py.tobytes()  # the same doubles, bit for bit
    rows = (np.arange(len(TEXTS)) % 3).astype(np.int64)
    counts_py = np.zeros((3, num_buckets), dtype=np.int64)
    counts_c = counts_py.copy()
    np.testing.assert_array_equal(compiled.count(TEXTS, rows, counts_c), python.count(TEXTS, rows, counts_py))
    np.testing.assert_array_equal(counts_c, counts_py)
    np.testing.assert_array_equal(compiled.token_counts(TEXTS), python.token_counts(TEXTS))


@pytest.mark.parametrize("ngrams", [1, 2, 3])
def test_compiled_sha256_counts_equal_the_reference(ngrams):
    compiled = CompiledFeaturizer(FeatureConfig(ngrams=ngrams))
    for text in TEXTS:
        _, buckets = compiled.features(text)
        expected = get_ngram_counts(text, n=ngrams, num_buckets=10000)
        np.testing.assert_array_equal(np.bincount(buckets, minlength=10000), expected, err_msg=text[:40])


@pytest.mark.parametrize("mode,tokenizer", [("sha256", "wordpunct"), ("xxhash64", "wordpunct"),
                                            ("sha256", "wordpunct_regex"), ("xxhash64", "wordpunct_cjk")])
def test_every_unicode_code_point_tokenizes_and_hashes_alike(mode, tokenizer):
    """Each code point inside a word and beside punctuation: tokens and buckets equal on both paths (for
    wordpunct_regex, the Python path is the `regex` module's findall with NLTK >= 3.10's pattern and flags)."""
    config = FeatureConfig(ngrams=2, hash=mode, tokenizer=tokenizer)
    compiled = CompiledFeaturizer(config)
    points = [c for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF]
    for start in range(0, len(points), 65536):
        text = " ".join(f"a{chr(c)}b ,{chr(c)}." for c in points[start:start + 65536])
        tokens, buckets = compiled.features(text)
        expected_tokens, expected_buckets = python_features(config, text)
        assert tokens == expected_tokens, f"code points from U+{points[start]:04X}"
        assert buckets == expected_buckets, f"code points from U+{points[start]:04X}"


def test_wordpunct_cjk_makes_each_han_kana_and_hangul_character_a_token_and_leaves_the_rest_to_wordpunct():
    text = "東京Tower 2024年に、カタカナとひらがな. 한국어 문장 ｶﾀｶﾅ ＡＢＣ café_1 ㄱㄴ"
    expected = ["東", "京", "tower", "2024", "年", "に", "、", "カ", "タ", "カ", "ナ", "と", "ひ", "ら", "が", "な",
                ".", "한", "국", "어", "문", "장", "ｶ", "ﾀ", "ｶ", "ﾅ", "ａｂｃ", "café_1", "ㄱㄴ"]
    assert tokenize(text, "wordpunct_cjk") == expected
    assert tokenize(text) == ["東京tower", "2024年に", "、", "カタカナとひらがな", ".", "한국어", "문장", "ｶﾀｶﾅ",
                              "ａｂｃ", "café_1", "ㄱㄴ"]  # wordpunct: whole runs, n-grams that say nothing
    for mode in MODES:
        config = FeatureConfig(ngrams=2, hash=mode, tokenizer="wordpunct_cjk")
        assert CompiledFeaturizer(config).features(text) == python_features(config, text)
    # Character bigrams of CJK text: the same phrase in two sentences shares its buckets.
    compiled = CompiledFeaturizer(FeatureConfig(ngrams=2, tokenizer="wordpunct_cjk"))
    first, second = (set(compiled.features(t)[1]) for t in ("東京の天気は晴れ", "明日の東京の天気"))
    assert len(first & second) >= 5


def test_wordpunct_regex_keeps_combining_marks_inside_words_where_re_splits_them():
    text = "हिन्दी x² café"
    assert tokenize(text) == ["ह", "ि", "न", "्", "द", "ी", "x²", "café"]  # re: vowel signs are not \w
    assert tokenize(text, "wordpunct_regex") == ["हिन्दी", "x", "²", "café"]  # regex: marks are, ² is not
    config = FeatureConfig(tokenizer="wordpunct_regex")
    assert CompiledFeaturizer(config).features(text) == python_features(config, text)


def test_lone_surrogates_fail_on_both_paths_as_in_the_reference():
    text = "abc \ud800 def"
    with pytest.raises(UnicodeEncodeError):
        Featurizer(FeatureConfig()).featurize([text])
    with pytest.raises(UnicodeEncodeError):
        CompiledFeaturizer(FeatureConfig()).features(text)


@given(st.lists(st.text(max_size=60), max_size=8), st.sampled_from(MODES), st.integers(1, 4))
@settings(max_examples=200, deadline=None)
def test_random_strings_featurize_alike(texts, mode, ngrams):
    config = FeatureConfig(ngrams=ngrams, num_buckets=1009, hash=mode)
    compiled = CompiledFeaturizer(config)
    for text in texts:
        assert compiled.features(text) == python_features(config, text)
    log_diff = np.linspace(-1, 1, 1009)[np.newaxis, :]
    assert compiled.score(texts, log_diff)[1].tobytes() == Featurizer(config).score(texts, log_diff)[1].tobytes()


def test_none_and_non_text_values():
    compiled = CompiledFeaturizer(FeatureConfig())
    assert compiled.features(None) == ([], [])
    np.testing.assert_array_equal(compiled.token_counts([None, "", "a b"]), [0, 0, 2])
    with pytest.raises(TypeError, match="str or None"):
        compiled.token_counts([3])


def test_the_sha256_cache_stays_exact_when_it_fills_up():
    """More distinct n-grams than the cache holds: it starts over, the buckets stay the reference's."""
    compiled = CompiledFeaturizer(FeatureConfig(ngrams=1, num_buckets=7919))
    words = [f"w{i}" for i in range(1_200_000)]
    _, buckets = compiled.features(" ".join(words))
    sample = range(0, len(words), 997)
    assert [buckets[i] for i in sample] == [int(hashlib.sha256(words[i].encode()).hexdigest(), 16) % 7919
                                            for i in sample]
