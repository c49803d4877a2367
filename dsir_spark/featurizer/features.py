"""Hashed n-gram features: the reference's tokenizer and hashing, vectorized over Arrow batches.

Tokens are ``re.findall(r"\\w+|[^\\w\\s]+", text.lower())``, exactly NLTK's WordPunctTokenizer as
``data-selection`` 1.0.3 uses it. Doing this in the Python worker, not in the JVM, makes the character
classes and the lower-casing Python's by construction (no Unicode-version or JVM-locale drift) and it
was as fast as Spark's own regexp_extract_all here (docs/features.md, "Why not Spark SQL expressions").

Hash modes:
- ``sha256``: bucket = int(sha256(utf8(ngram)).hexdigest(), 16) % num_buckets, the reference's buckets.
  An n-gram is its tokens joined by single spaces. Buckets are cached per worker process.
- ``xxhash64``: each token is hashed once with XXH64 (seed 0, cached); the hash of an n-gram is built
  from its tokens' hashes, h(t1..tk) = mix(h(t1..tk-1) * 0x9E3779B97F4A7C15 + h(tk)) in uint64
  arithmetic (mix = splitmix64's finalizer), so no n-gram string is ever built.
  bucket = hash % num_buckets. Different buckets from the reference, same tokens.

Two implementations give the same features: the pure-Python ``Featurizer`` below, and the compiled
``dsir_spark.featurizer._featurize`` (C, built by ``pip install``), used when it is importable. ``make_featurizer``
picks one; ``DSIR_SPARK_FEATURIZER=python`` (read on the driver) forces the pure-Python one everywhere.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dsir_spark.config import FeatureConfig

log = logging.getLogger("dsir_spark")
# What a hash mode means, recorded in model.json: a model is only applied by the same definition.
HASH_DEFINITIONS = {
    "sha256": "sha256-hexdigest-mod-v1",
    "xxhash64": "xxh64-seed0-splitmix64-golden-v1",
}
FEATURIZER_ENV = "DSIR_SPARK_FEATURIZER"
IMPLEMENTATIONS = ("auto", "compiled", "python")
WORDPUNCT = re.compile(r"\w+|[^\w\s]+")
# NLTK's WordPunctTokenizer flags; NLTK >= 3.10 compiles its pattern with the `regex` module instead of re.
_NLTK_FLAGS = re.UNICODE | re.MULTILINE | re.DOTALL
# Caches are per worker process and bounded, so memory stays flat on any corpus.
_CACHE_LIMIT = 1 << 20
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


_PATTERNS: dict[str, re.Pattern] = {"wordpunct": WORDPUNCT}
# wordpunct_cjk: these word characters are tokens of their own (as BERT's basic tokenizer splits CJK), so
# the n-grams of Chinese, Japanese or Korean text without spaces are character n-grams.
CJK_NAMES = ("CJK UNIFIED IDEOGRAPH", "CJK COMPATIBILITY IDEOGRAPH", "HIRAGANA", "KATAKANA",
             "HALFWIDTH KATAKANA", "HANGUL SYLLABLE")


WORD_CHARACTER = re.compile(r"\w")


@functools.cache
def cjk_characters() -> str:
    """The word characters (re's ``\\w``) that wordpunct_cjk makes single tokens: Han ideographs,
    hiragana, katakana and Hangul syllables, by their names in this interpreter's Unicode database."""
    import unicodedata

    return "".join(ch for ch in map(chr, range(0x110000))
                   if unicodedata.name(ch, "").startswith(CJK_NAMES) and WORD_CHARACTER.match(ch))


def _class_of(characters: str) -> str:
    """A regular-expression class body holding exactly ``characters``, as ranges."""
    points, ranges = sorted(map(ord, characters)), []
    for point in points:
        if ranges and point == ranges[-1][1] + 1:
            ranges[-1][1] = point
        else:
            ranges.append([point, point])
    return "".join(f"\\U{a:08X}-\\U{b:08X}" if a != b else f"\\U{a:08X}" for a, b in ranges)


def tokenizer_pattern(tokenizer: str = "wordpunct"):
    """The compiled wordpunct pattern of a tokenizer: Python's re (``wordpunct``), the ``regex`` module
    as NLTK >= 3.10 compiles it (``wordpunct_regex``), or re with CJK characters as single tokens
    (``wordpunct_cjk``)."""
    pattern = _PATTERNS.get(tokenizer)
    if pattern is None and tokenizer == "wordpunct_cjk":
        cjk = _class_of(cjk_characters())
        pattern = _PATTERNS[tokenizer] = re.compile(f"[{cjk}]|[^\\W{cjk}]+|[^\\w\\s]+")
    elif pattern is None:
        pattern = _PATTERNS[tokenizer] = _engine(tokenizer).compile(WORDPUNCT.pattern, _NLTK_FLAGS)
    return pattern


def _engine(tokenizer: str):
    """The regular-expression module a tokenizer's word and space classes come from."""
    if tokenizer in ("wordpunct", "wordpunct_cjk"):
        return re
    if tokenizer != "wordpunct_regex":
        raise ValueError(f"unknown tokenizer {tokenizer!r}")
    try:
        import regex
    except ImportError as exc:
        raise RuntimeError("features.tokenizer: wordpunct_regex needs the `regex` module on every node; "
                           "pip install 'dsir-spark[regex]' (or regex), or use tokenizer: wordpunct") from exc
    return regex


def tokenize(text: str | None, tokenizer: str = "wordpunct") -> list[str]:
    """Lower-case and split into word and punctuation runs; None and "" give no tokens."""
    return tokenizer_pattern(tokenizer).findall(text.lower()) if text else []


_CLASSES: dict[str, bytes] = {}


def character_classes(tokenizer: str) -> bytes | None:
    """For the compiled featurizer, a tokenizer's class of every code point (0 space, 1 word, 2 other),
    read from its own regex engine; None for ``wordpunct``, whose classes the C module reads from CPython.
    The wordpunct pattern splits text into maximal runs of word or of other characters, so the classes
    define the tokens."""
    if tokenizer == "wordpunct":
        return None
    if tokenizer not in _CLASSES:
        module = _engine(tokenizer)
        every = "".join(map(chr, range(0x110000)))
        classes = bytearray([2]) * 0x110000
        for name, value in (("\\s", 0), ("\\w", 1)):
            for match in module.finditer(f"{name}+", every, _NLTK_FLAGS):
                classes[match.start():match.end()] = bytes([value]) * (match.end() - match.start())
        if tokenizer == "wordpunct_cjk":
            for ch in cjk_characters():
                classes[ord(ch)] = 3  # a token of its own
        _CLASSES[tokenizer] = bytes(classes)
    return _CLASSES[tokenizer]


@dataclass(frozen=True)
class ChunkScores:
    """Chunks of a batch of documents: chunk i is chunk ``chunk[i]`` of document ``doc[i]``, the
    characters ``start[i]:end[i]`` of its original text, with ``num_tokens[i]`` tokens and log-weight
    sums ``sums[t, i]``."""

    doc: np.ndarray
    chunk: np.ndarray
    start: np.ndarray
    end: np.ndarray
    num_tokens: np.ndarray
    sums: np.ndarray


def ngram_strings(tokens: Sequence[str], ngrams: int) -> list[str]:
    """A document's n-grams as strings, in feature order (its unigrams, then bigrams, ...)."""
    grams = list(tokens)
    for k in range(2, ngrams + 1):
        grams += map(" ".join, zip(*(tokens[i:] for i in range(k))))
    return grams


def chunks_of(num_tokens: int, chunk_tokens: int, min_tokens: int) -> int:
    """How many chunks a document of ``num_tokens`` tokens gives: full ones, and a shorter last one
    with at least ``min_tokens`` tokens (never an empty one)."""
    full, rest = divmod(num_tokens, chunk_tokens)
    return full + (1 if rest and rest >= min_tokens else 0)


def sha256_bucket(gram: str, num_buckets: int) -> int:
    """The reference's ``hash_buckets``."""
    return int(hashlib.sha256(gram.encode("utf-8")).hexdigest(), 16) % num_buckets


class _Sha256Buckets(dict):
    """n-gram string -> bucket; a miss computes sha256 once."""

    def __init__(self, num_buckets: int) -> None:
        super().__init__()
        self.num_buckets = num_buckets

    def __missing__(self, gram: str) -> int:
        bucket = sha256_bucket(gram, self.num_buckets)
        self[gram] = bucket
        return bucket


class _XxHashes(dict):
    """token -> XXH64 of its UTF-8 bytes; a miss hashes once."""

    def __missing__(self, token: str) -> int:
        import xxhash

        value = xxhash.xxh64_intdigest(token.encode("utf-8"))
        self[token] = value
        return value


_SHA_CACHES: dict[int, _Sha256Buckets] = {}
_XX_CACHE = _XxHashes()


def _sha_cache(num_buckets: int) -> _Sha256Buckets:
    cache = _SHA_CACHES.get(num_buckets)
    if cache is None or len(cache) > _CACHE_LIMIT:
        cache = _SHA_CACHES[num_buckets] = _Sha256Buckets(num_buckets)
    return cache


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer: spreads the bits of a uint64 array (wrap-around arithmetic)."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@dataclass(frozen=True)
class Features:
    """The features of a batch of documents, flattened.

    ``buckets[i]`` is the bucket of feature i and ``doc_index[i]`` the document it belongs to;
    ``num_tokens[d]`` is document d's token count.
    """

    buckets: np.ndarray
    doc_index: np.ndarray
    num_tokens: np.ndarray

    def bucket_counts(self, num_buckets: int) -> np.ndarray:
        return np.bincount(self.buckets, minlength=num_buckets).astype(np.int64)

    def document_sums(self, values: np.ndarray) -> np.ndarray:
        """Per document, the sum of ``values[bucket]`` over its features (a dot with its bucket counts)."""
        return np.bincount(self.doc_index, weights=values[self.buckets], minlength=len(self.num_tokens))

    def sparse(self, num_buckets: int) -> SparseCounts:
        """Each document's bucket counts, distinct buckets ascending (as the compiled featurizer's)."""
        keys, counts = np.unique(self.doc_index * num_buckets + self.buckets, return_counts=True)
        indptr = np.searchsorted(keys // num_buckets, np.arange(len(self.num_tokens) + 1), side="left")
        return SparseCounts(indptr.astype(np.int64), (keys % num_buckets).astype(np.int32), counts.astype(np.int32))

    def sums(self, values: np.ndarray, num_buckets: int, sublinear: bool) -> np.ndarray:
        """``document_sums``, or with ``sublinear`` per document the sum over its distinct buckets, in order
        of first occurrence, of values[bucket] * log1p(count), left to right (bincount adds in input
        order), as the compiled featurizer does."""
        if not sublinear:
            return self.document_sums(values)
        keys, first, counts = np.unique(self.doc_index * num_buckets + self.buckets, return_index=True,
                                        return_counts=True)
        order = np.argsort(first, kind="stable")  # documents are contiguous: their buckets stay together
        keys, counts = keys[order], counts[order]
        terms = values[keys % num_buckets] * log1p(counts)
        return np.bincount(keys // num_buckets, weights=terms, minlength=len(self.num_tokens))


def log1p(counts: np.ndarray) -> np.ndarray:
    """log(1 + count) of integer counts by the C library's log1p, as the compiled featurizer computes it
    (numpy's own log1p may differ from it in the last bit)."""
    distinct, where = np.unique(counts, return_inverse=True)
    return np.array([math.log1p(c) for c in distinct.tolist()], dtype=np.float64)[where]


@dataclass(frozen=True)
class SparseCounts:
    """Bucket counts of documents as compressed sparse rows: document d's distinct buckets (ascending)
    are ``buckets[indptr[d]:indptr[d + 1]]``, with ``counts`` of the same slice."""

    indptr: np.ndarray
    buckets: np.ndarray
    counts: np.ndarray

    def doc_index(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.indptr) - 1, dtype=np.int64), np.diff(self.indptr))


class Featurizer:
    """Turns texts into hashed n-gram features for one FeatureConfig (pure Python, the fallback)."""

    name = "python"

    def __init__(self, config: FeatureConfig) -> None:
        self.config = config

    def count(self, texts: Sequence[str | None], rows: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """Adds each document's bucket counts to ``counts[rows[d]]`` (int64, rows x num_buckets);
        returns the token count of each document (int64)."""
        features = self.featurize(texts)
        flat = rows[features.doc_index] * self.config.num_buckets + features.buckets
        counts += np.bincount(flat, minlength=counts.size).reshape(counts.shape)
        return features.num_tokens

    def score(self, texts: Sequence[str | None], log_diff: np.ndarray,
              sublinear: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(token counts as int32, sums[t, d] = dot(log_diff[t], bucket counts of d)) of each document;
        with ``sublinear`` the dot is with log1p of the bucket counts (see Features.sums)."""
        features = self.featurize(texts)
        sums = np.stack([features.sums(row, self.config.num_buckets, sublinear) for row in log_diff])
        return features.num_tokens.astype(np.int32), sums

    def sparse_counts(self, texts: Sequence[str | None]) -> SparseCounts:
        return self.featurize(texts).sparse(self.config.num_buckets)

    def token_counts(self, texts: Sequence[str | None]) -> np.ndarray:
        tokenizer = self.config.tokenizer
        return np.fromiter((len(tokenize(t, tokenizer)) for t in texts), dtype=np.int64, count=len(texts))

    def score_chunks(self, texts: Sequence[str | None], log_diff: np.ndarray, chunk_tokens: int,
                     min_tokens: int, sublinear: bool = False) -> ChunkScores:
        """Each document's tokens in consecutive chunks of ``chunk_tokens``, each scored by the n-grams
        inside it (as ``score``); one tokenization gives both the chunks' features and their character spans."""
        pattern = tokenizer_pattern(self.config.tokenizer)
        rows: list[tuple[int, int, int, int]] = []
        token_lists: list[list[str]] = []
        for d, text in enumerate(texts):
            if not text:
                continue
            lowered = text.lower()
            matches = list(pattern.finditer(lowered))
            chunks = chunks_of(len(matches), chunk_tokens, min_tokens)
            # Lower-casing keeps the length of almost every text (U+0130 becomes two characters): map back.
            origin = None if len(lowered) == len(text) else np.repeat(
                np.arange(len(text)), [len(c.lower()) for c in text])
            for c in range(chunks):
                part = matches[c * chunk_tokens:(c + 1) * chunk_tokens]
                start, end = part[0].start(), part[-1].end()
                if origin is not None:
                    start, end = int(origin[start]), int(origin[end - 1]) + 1
                rows.append((d, c, start, end))
                token_lists.append([m.group() for m in part])
        features = self._features_of(token_lists)
        table = np.array(rows, dtype=np.int64).reshape(-1, 4)
        return ChunkScores(doc=table[:, 0], chunk=table[:, 1].astype(np.int32), start=table[:, 2], end=table[:, 3],
                           num_tokens=features.num_tokens.astype(np.int32),
                           sums=np.stack([features.sums(row, self.config.num_buckets, sublinear) for row in log_diff]))

    def features(self, text: str | None) -> tuple[list[str], list[int]]:
        """One document's tokens and its features' buckets in order (unigrams, bigrams, ...)."""
        tokens = tokenize(text, self.config.tokenizer)
        return tokens, self._features_of([tokens]).buckets.tolist()

    def featurize(self, texts: Sequence[str | None]) -> Features:
        return self._features_of([tokenize(t, self.config.tokenizer) for t in texts])

    def _features_of(self, token_lists: list[list[str]]) -> Features:
        num_tokens = np.fromiter((len(t) for t in token_lists), dtype=np.int64, count=len(token_lists))
        if self.config.hash == "sha256":
            buckets, doc_index = self._sha256(token_lists)
        else:
            buckets, doc_index = self._xxhash64(token_lists, num_tokens)
        return Features(buckets=buckets, doc_index=doc_index, num_tokens=num_tokens)

    def _sha256(self, token_lists: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
        lookup = _sha_cache(self.config.num_buckets).__getitem__
        n = self.config.ngrams
        buckets: list[int] = []
        per_doc = np.zeros(len(token_lists), dtype=np.int64)
        for d, tokens in enumerate(token_lists):
            start = len(buckets)
            buckets += map(lookup, tokens)
            for k in range(2, n + 1):
                buckets += map(lookup, map(" ".join, zip(*(tokens[i:] for i in range(k)))))
            per_doc[d] = len(buckets) - start
        doc_index = np.repeat(np.arange(len(token_lists), dtype=np.int64), per_doc)
        return np.asarray(buckets, dtype=np.int64), doc_index

    def _xxhash64(self, token_lists: list[list[str]], num_tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        all_tokens = [t for tokens in token_lists for t in tokens]
        lookup = _XX_CACHE.__getitem__
        if len(_XX_CACHE) > _CACHE_LIMIT:
            _XX_CACHE.clear()
        hashes = np.fromiter(map(lookup, all_tokens), dtype=np.uint64, count=len(all_tokens))
        token_doc = np.repeat(np.arange(len(token_lists), dtype=np.int64), num_tokens)
        modulus = np.uint64(self.config.num_buckets)
        parts, docs = [hashes % modulus], [token_doc]
        gram = hashes
        for k in range(2, self.config.ngrams + 1):
            # gram[i] covers tokens i..i+k-1 of the flat list; keep it only inside one document.
            gram = _mix64(gram[:-1] * _GOLDEN + hashes[k - 1 :])
            same_doc = token_doc[: len(gram)] == token_doc[k - 1 :]
            parts.append(gram[same_doc] % modulus)
            docs.append(token_doc[: len(gram)][same_doc])
        return np.concatenate(parts).astype(np.int64), np.concatenate(docs)


class CompiledFeaturizer:
    """The same features from ``dsir_spark.featurizer._featurize`` (C): no Python object per token or n-gram.
    One instance per config and process, so its sha256 n-gram cache outlives a batch."""

    name = "compiled"

    def __init__(self, config: FeatureConfig) -> None:
        from dsir_spark.featurizer import _featurize

        self.config = config
        self._native = _featurize.Featurizer(config.ngrams, config.num_buckets, config.hash,
                                             character_classes(config.tokenizer))

    def count(self, texts: Sequence[str | None], rows: np.ndarray, counts: np.ndarray) -> np.ndarray:
        num_tokens = np.empty(len(texts), dtype=np.int64)
        self._native.count(texts, np.ascontiguousarray(rows, dtype=np.int64), counts, num_tokens)
        return num_tokens

    def score(self, texts: Sequence[str | None], log_diff: np.ndarray,
              sublinear: bool = False) -> tuple[np.ndarray, np.ndarray]:
        num_tokens = np.empty(len(texts), dtype=np.int32)
        sums = np.empty((len(log_diff), len(texts)), dtype=np.float64)
        self._native.score(texts, np.ascontiguousarray(log_diff, dtype=np.float64), num_tokens, sums, sublinear)
        return num_tokens, sums

    def sparse_counts(self, texts: Sequence[str | None]) -> SparseCounts:
        indptr, buckets, counts = self._native.sparse_counts(texts)
        return SparseCounts(np.frombuffer(indptr, dtype=np.int64), np.frombuffer(buckets, dtype=np.int32),
                            np.frombuffer(counts, dtype=np.int32))

    def token_counts(self, texts: Sequence[str | None]) -> np.ndarray:
        num_tokens = np.empty(len(texts), dtype=np.int64)
        self._native.token_counts(texts, num_tokens)
        return num_tokens

    def score_chunks(self, texts: Sequence[str | None], log_diff: np.ndarray, chunk_tokens: int,
                     min_tokens: int, sublinear: bool = False) -> ChunkScores:
        log_diff = np.ascontiguousarray(log_diff, dtype=np.float64)
        doc, chunk, start, end, num_tokens, sums = self._native.score_chunks(texts, log_diff, chunk_tokens,
                                                                            min_tokens, sublinear)
        return ChunkScores(doc=np.frombuffer(doc, dtype=np.int64), chunk=np.frombuffer(chunk, dtype=np.int32),
                           start=np.frombuffer(start, dtype=np.int64), end=np.frombuffer(end, dtype=np.int64),
                           num_tokens=np.frombuffer(num_tokens, dtype=np.int32),
                           sums=np.frombuffer(sums, dtype=np.float64).reshape(-1, len(log_diff)).T)

    def features(self, text: str | None) -> tuple[list[str], list[int]]:
        """One document's tokens and its features' buckets in order (for tests and explanations)."""
        return self._native.features(text)


def requested_implementation() -> str:
    """The featurizer asked for on the driver (``DSIR_SPARK_FEATURIZER``: auto, compiled or python).
    Read once on the driver and shipped to the workers, whose environment may differ."""
    value = os.environ.get(FEATURIZER_ENV, "auto").strip().lower() or "auto"
    if value not in IMPLEMENTATIONS:
        raise ValueError(f"{FEATURIZER_ENV}={value!r}; use one of {IMPLEMENTATIONS}")
    return value


def compiled_available() -> bool:
    try:
        from dsir_spark.featurizer import _featurize  # noqa: F401
    except ImportError:
        return False
    return True


_FEATURIZERS: dict[tuple[FeatureConfig, str], Featurizer | CompiledFeaturizer] = {}


def make_featurizer(config: FeatureConfig, implementation: str = "auto") -> Featurizer | CompiledFeaturizer:
    """The compiled featurizer when it is importable (``auto``) or required (``compiled``), else the
    pure-Python one. Cached per process: Spark reuses Python workers across tasks."""
    key = (config, implementation)
    featurizer = _FEATURIZERS.get(key)
    if featurizer is None:
        if implementation == "python":
            featurizer = Featurizer(config)
        elif compiled_available():
            featurizer = CompiledFeaturizer(config)
        elif implementation == "compiled":
            raise RuntimeError(
                f"{FEATURIZER_ENV}=compiled but dsir_spark.featurizer._featurize is not built on this node; "
                "install the platform wheel (or pip install with a C compiler), or unset it to fall back to pure Python"
            )
        else:
            log.warning("dsir_spark.featurizer._featurize is not built here: using the pure-Python featurizer (slower)")
            featurizer = Featurizer(config)
        _FEATURIZERS[key] = featurizer
    return featurizer
