"""The trainer's tokens: a Hugging Face ``tokenizer.json`` (``tokens.tokenizer``), with one end-of-document
token per document where ``tokens.eos`` says, as the shards hold them.

The driver reads the file once (any path the run can read) and checks it; the tokenizer then travels
with the functions that need it (as its JSON text: no pickle of a Rust object) and is built once per
Python worker. A document's tokens are ``encode(text).ids``, plus the end-of-document id where set
(TemplateProcessing ``$A <EOS>``, the post-processor datatrove and Megatron's preprocessors append it
with), so the figures the run counts are the ids a trainer reads.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import Column, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.functions import pandas_udf

from dsir_spark.config import ConfigError, TokensConfig
from dsir_spark.storage.io import read_once
from dsir_spark.storage.records import local_path

# Names end-of-document tokens go by in the tokenizers trainers use (tokens.eos: true finds one of them).
EOS_NAMES = ("<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>", "<|eot_id|>", "[SEP]")
MEGATRON_DTYPES = {2: (np.uint16, 8), 4: (np.int32, 4)}  # token bytes -> (numpy type, Megatron's dtype code)


class ModelTokenizer:
    """A tokenizer.json and its end-of-document token; picklable, built lazily where it runs."""

    def __init__(self, spec: str, eos: str | None, sha256: str, source: str) -> None:
        self.spec, self.eos, self.sha256, self.source = spec, eos, sha256, source
        self._built = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_built": None}

    @property
    def tokenizer(self):
        if self._built is None:
            from tokenizers import Tokenizer
            from tokenizers.processors import TemplateProcessing

            built = Tokenizer.from_str(self.spec)
            if self.eos is not None:
                built.post_processor = TemplateProcessing(
                    single="$A <EOS>", pair=None, special_tokens=[("<EOS>", built.token_to_id(self.eos))])
            self._built = built
        return self._built

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    @property
    def eos_id(self) -> int | None:
        return None if self.eos is None else self.tokenizer.token_to_id(self.eos)

    @property
    def token_bytes(self) -> int:
        """Bytes per token id in a Megatron .bin: uint16 where the vocabulary fits in it, else int32."""
        return 2 if self.vocab_size <= np.iinfo(np.uint16).max + 1 else 4

    def encode(self, texts: Sequence[str | None]) -> list[list[int]]:
        return [encoding.ids for encoding in self.tokenizer.encode_batch([text or "" for text in texts])]

    def describe(self) -> dict[str, Any]:
        """What the manifest and the records say of it."""
        return {"path": self.source, "sha256": self.sha256, "vocab_size": self.vocab_size, "eos": self.eos,
                "eos_id": self.eos_id, "token_bytes": self.token_bytes}


def _read(spark: SparkSession | None, path: str) -> bytes:
    local = local_path(path)
    if local is not None:
        try:
            with open(local, "rb") as handle:
                return handle.read()
        except OSError as exc:
            raise ConfigError(f"tokens.tokenizer: cannot read {path} ({exc.strerror}); give the path of a "
                              "tokenizer.json this run can read") from exc
    if spark is None:
        raise ConfigError(f"tokens.tokenizer: {path} is remote; it is read through Spark when a stage runs")
    return spark.read.format("binaryFile").load(path).select("content").first()["content"]


def _eos_token(built, eos: bool | str, path: str) -> str | None:
    if eos is False:
        return None
    if isinstance(eos, str):
        if built.token_to_id(eos) is None:
            raise ConfigError(f"tokens.eos: {eos!r} is not a token of {path}; give one of its tokens, or true to "
                              "use the tokenizer's own end-of-document token")
        return eos
    found = [name for name in EOS_NAMES if built.token_to_id(name) is not None]
    if len(found) != 1:
        raise ConfigError(f"tokens.eos: true, but {path} has {'none' if not found else 'several'} of the usual "
                          f"end-of-document tokens {list(EOS_NAMES)}{': ' + str(found) if found else ''}; "
                          "write the token, e.g. tokens.eos: '<|endoftext|>'")
    return found[0]


def load_model_tokenizer(spark: SparkSession | None, tokens: TokensConfig) -> ModelTokenizer | None:
    """The run's tokenizer (None without tokens.tokenizer), read and checked on the driver."""
    if tokens.tokenizer is None:
        return None
    try:
        from tokenizers import Tokenizer
    except ImportError as exc:
        raise ConfigError("tokens.tokenizer needs the tokenizers library on every node: "
                          "pip install 'dsir-spark[tokens]'") from exc
    # Read once per run: checked before any pass, used again by the resample stage.
    data = read_once(tokens.tokenizer, lambda: _read(spark, tokens.tokenizer))
    try:
        spec = data.decode("utf-8")
        json.loads(spec)
        built = Tokenizer.from_str(spec)
    except Exception as exc:  # noqa: BLE001 - tokenizers raises plain Exceptions for a file it cannot read
        raise ConfigError(f"tokens.tokenizer: {tokens.tokenizer} is not a Hugging Face tokenizer.json "
                          f"({str(exc).splitlines()[0][:200]})") from exc
    eos = _eos_token(built, tokens.eos, tokens.tokenizer)
    return ModelTokenizer(spec, eos, hashlib.sha256(data).hexdigest(), tokens.tokenizer)


def token_count(tokenizer: ModelTokenizer, text: Column) -> Column:
    """A column: each text's number of model tokens (end-of-document token included where set)."""
    @pandas_udf("long")
    def count(texts: pd.Series) -> pd.Series:
        return pd.Series([len(ids) for ids in tokenizer.encode(texts.tolist())], dtype="int64")

    return count(F.coalesce(text, F.lit("")))
