"""Hashed n-gram features: the reference's tokenizer and hashing, vectorized over Arrow batches.

Tokens are ``re.findall(r"\\w+|[^\\w\\s]+", text.lower())``, exactly NLTK's WordPunctTokenizer as
``data-selection`` 1.0.3 uses it. Doing this in the Python worker, not in the JVM, makes the character
classes and the lower-casing Python's by construction (no Unicode-version or JVM-locale drift) and it
was as fast as Spark's own regexp_extract_all here (see README, "Why the features run in Python").

Hash modes:
- ``sha256``: bucket = int(sha256(utf8(ngram)).hexdigest(), 16) % num_buckets, the reference's buckets.
  An n-gram is its tokens joined by single spaces. Buckets are cached per worker process.
- ``xxhash64``: each token is hashed once with XXH64 (seed 0, cached); the hash of an n-gram is built
  from its tokens' hashes, h(t1..tk) = mix(h(t1..tk-1) * 0x9E3779B97F4A7C15 + h(tk)) in uint64
  arithmetic (mix = splitmix64's finalizer), so no n-gram string is ever built.
  bucket = hash % num_buckets. Different buckets from the reference, same tokens.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dsir_spark.config import FeatureConfig

WORDPUNCT = re.compile(r"\w+|[^\w\s]+")
# Caches are per worker process and bounded, so memory stays flat on any corpus.
_CACHE_LIMIT = 1 << 20
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def tokenize(text: str | None) -> list[str]:
    """Lower-case and split into word and punctuation runs; None and "" give no tokens."""
    return WORDPUNCT.findall(text.lower()) if text else []


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


class Featurizer:
    """Turns texts into hashed n-gram features for one FeatureConfig."""

    def __init__(self, config: FeatureConfig) -> None:
        self.config = config

    def featurize(self, texts: Sequence[str | None]) -> Features:
        token_lists = [tokenize(t) for t in texts]
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
