"""Bucket counts of a dataset: one pass over the documents, a num_buckets-sized result.

Each Python worker featurizes its Arrow batches and emits, once per partition and group, the nonzero
bucket counts of everything it saw plus document, token and null-text totals. Spark sums those partial
counts by bucket; the driver receives at most num_buckets + 3 rows, never per-document data.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from dsir_spark.columns import TEXT
from dsir_spark.config import FeatureConfig
from dsir_spark.featurizer.features import make_featurizer, requested_implementation
from dsir_spark.featurizer.ngrams import BUCKET, COUNT, NGRAM, STRINGS_PER_BUCKET, NgramTally, rank_in_bucket

if TYPE_CHECKING:  # pandas only on the driver: Python workers import this module, and pandas costs each 1-2 s
    import pandas as pd

# Totals ride along with the bucket counts under negative "buckets".
_DOCS, _TOKENS, _NULL_TEXTS, _COMPILED_DOCS = -1, -2, -3, -4
_TOTALS = 4
_PARTIAL_SCHEMA = f"grp int, {BUCKET} int, {COUNT} long, {NGRAM} string"
GROUP = "__dsir_group"
# The group of the n-gram string rows of a count pass, and how much text per task they come from.
STRINGS = -1_000_000
STRING_SAMPLE_CHARS = 2_000_000
# The group of the document-id rows of a count pass (bucket 0: an id, as a string; _NULL_ID: null ids),
# the column holding the ids, and how many duplicated ids are shown.
IDS, _NULL_ID = -2_000_000, -1
ID_KEY = "__dsir_id_key"
ID_EXAMPLES = 5
# The group of the label rows of a count pass (bucket: a group, ngram: a label, count: its rows) and the
# column holding the labels.
LABELS = -3_000_000
LABEL = "__dsir_label"
# The group of the document-length rows of a count pass (bucket: a length in tokens, count: documents).
LENGTHS = -4_000_000
# The group of the fit-sample probe rows of a count pass (bucket: a document's characters, count: its
# tokens, ngram: its hashed uniform as repr; bucket _PROBE_TOTAL: the characters of every document), and
# the column holding each document's uniform.
PROBE, _PROBE_TOTAL = -5_000_000, -1
PROBE_U = "__dsir_probe_u"
STRING_ROW = "__dsir_string_row"  # count_pass(string_rows=...): whether a row's n-gram strings are tallied
# The group of the rows a count pass returns whole (ngram: a JSON object of the row's id, text and label)
# and the column saying which rows those are.
FETCHED = -6_000_000
FETCH_ROW = "__dsir_fetch_row"


@dataclass(frozen=True)
class BucketCounts:
    """Counts of one dataset: ``counts[b]`` features in bucket b, and totals."""

    counts: np.ndarray
    documents: int
    tokens: int
    null_texts: int
    # documents featurized by the compiled featurizer (the rest by the pure-Python one); not persisted
    compiled_documents: int = 0

    def to_pandas(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame({"bucket": np.arange(len(self.counts), dtype=np.int32), "count": self.counts})

    def probabilities(self) -> np.ndarray:
        return self.counts / self.counts.sum()

    def stats(self) -> dict[str, int]:
        return {
            "documents": self.documents,
            "tokens": self.tokens,
            "null_texts": self.null_texts,
            "num_features": int(self.counts.sum()),
        }


def dense_counts(buckets: np.ndarray, values: np.ndarray, num_buckets: int) -> np.ndarray:
    """A num_buckets-long count vector from sparse (bucket, count) pairs."""
    counts = np.zeros(num_buckets, dtype=np.int64)
    counts[buckets] = values
    return counts


def _id_rows(batch: pa.RecordBatch, groups: np.ndarray, id_groups: frozenset[int]) -> pa.RecordBatch | None:
    """One (IDS, 0 or _NULL_ID, 1, id) row per document of ``id_groups``: summed by Spark, an id that
    occurs twice has a count of 2."""
    checked = np.isin(groups, list(id_groups))
    if not checked.any():
        return None
    keys = batch.column(ID_KEY).filter(pa.array(checked))
    buckets = np.where(keys.is_null().to_numpy(zero_copy_only=False), _NULL_ID, 0).astype(np.int32)
    return pa.RecordBatch.from_arrays(
        [pa.array(np.full(len(keys), IDS, dtype=np.int32)), pa.array(buckets),
         pa.array(np.ones(len(keys), dtype=np.int64)), keys.cast(pa.string())],
        names=["grp", BUCKET, COUNT, NGRAM])


def _tally_labels(batch: pa.RecordBatch, tallied: dict[tuple[int, str | None], int]) -> None:
    """Adds the batch's rows per (group, label) to ``tallied``."""
    table = pa.Table.from_batches([batch.select([GROUP, LABEL])])
    for row in table.group_by([GROUP, LABEL]).aggregate([([], "count_all")]).to_pylist():
        key = (row[GROUP], row[LABEL])
        tallied[key] = tallied.get(key, 0) + row["count_all"]


def _label_rows(tallied: dict[tuple[int, str | None], int]) -> pa.RecordBatch:
    """One (LABELS, group, count, label) row per (group, label) tallied."""
    return pa.RecordBatch.from_arrays(
        [pa.array(np.full(len(tallied), LABELS, dtype=np.int32)), pa.array([g for g, _ in tallied], pa.int32()),
         pa.array(list(tallied.values()), pa.int64()), pa.array([label for _, label in tallied], pa.string())],
        names=["grp", BUCKET, COUNT, NGRAM])


def _fetched_rows(batch: pa.RecordBatch, labelled: bool) -> pa.RecordBatch | None:
    """One (FETCHED, 0, 1, row as JSON) row per row of the batch whose FETCH_ROW is true."""
    picked = pc.fill_null(batch.column(FETCH_ROW), False)
    if not pc.any(picked).as_py():
        return None
    rows = batch.filter(picked)
    labels = rows.column(LABEL).to_pylist() if labelled else [None] * rows.num_rows
    found = [json.dumps({"id": i, "text": t, "label": label})
             for i, t, label in zip(rows.column(ID_KEY).to_pylist(), rows.column(TEXT).to_pylist(), labels)]
    return pa.RecordBatch.from_arrays(
        [pa.array(np.full(len(found), FETCHED, dtype=np.int32)), pa.array(np.zeros(len(found), dtype=np.int32)),
         pa.array(np.ones(len(found), dtype=np.int64)), pa.array(found, pa.string())],
        names=["grp", BUCKET, COUNT, NGRAM])


def _length_rows(lengths: dict[int, int]) -> pa.RecordBatch:
    """One (LENGTHS, length, documents) row per document length seen."""
    return pa.RecordBatch.from_arrays(
        [pa.array(np.full(len(lengths), LENGTHS, dtype=np.int32)), pa.array(list(lengths), pa.int32()),
         pa.array(list(lengths.values()), pa.int64()), pa.nulls(len(lengths), pa.string())],
        names=["grp", BUCKET, COUNT, NGRAM])


Probed = tuple[np.ndarray, np.ndarray, np.ndarray]  # (u, tokens, characters) of the probed documents


def _probe_tally(chars: np.ndarray, u: np.ndarray, cap: float,
                 tokens_of: Callable[[np.ndarray], np.ndarray]) -> tuple[int, Probed]:
    """One batch's part of the fit sample's estimate (see sample_for_fit): the characters of its documents,
    and (u, tokens, characters) of those whose uniform ``u`` is under ``cap`` (``tokens_of``: the tokens of
    the documents a mask picks)."""
    under = u < cap
    return int(chars.sum()), (u[under], np.asarray(tokens_of(under), dtype=np.int64), chars[under])


def _probe_rows(batch: pa.RecordBatch, groups: np.ndarray, num_tokens: np.ndarray,
                probe: tuple[frozenset[int], float]) -> tuple[int, pa.RecordBatch | None]:
    """The characters of the probe groups' documents in a batch, and one (PROBE, characters, tokens, u)
    row per such document whose uniform is under the cap."""
    probe_groups, cap = probe
    mine = np.isin(groups, list(probe_groups))
    if not mine.any():
        return 0, None
    chars = pc.utf8_length(batch.column(TEXT)).fill_null(0).to_numpy(zero_copy_only=False)[mine].astype(np.int64)
    u = batch.column(PROBE_U).to_numpy(zero_copy_only=False)[mine]
    total, (u, tokens, chars) = _probe_tally(chars, u, cap, lambda under: num_tokens[mine][under])
    if not len(u):
        return total, None
    return total, pa.RecordBatch.from_arrays(
        [pa.array(np.full(len(u), PROBE, dtype=np.int32)), pa.array(chars.astype(np.int32)), pa.array(tokens),
         pa.array([repr(float(x)) for x in u])], names=["grp", BUCKET, COUNT, NGRAM])


def _partial_counts(config: FeatureConfig, implementation: str, strings: dict[int, frozenset[int] | None],
                    string_chars: int, strings_only: frozenset[int], id_groups: frozenset[int], labelled: bool,
                    length_groups: frozenset[int], probe: tuple[frozenset[int], float] | None = None,
                    string_rows: bool = False, fetching: bool = False):
    def count_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        featurizer = make_featurizer(config, implementation)
        compiled = int(featurizer.name == "compiled")
        totals: dict[int, np.ndarray] = {}  # group -> [totals..., bucket counts...]
        tallies = {group: NgramTally(config, implementation, string_chars, buckets)
                   for group, buckets in strings.items()}
        labels: dict[tuple[int, str | None], int] = {}
        lengths: dict[int, int] = {}  # documents per length in tokens, over the length_groups
        probe_chars = 0
        for batch in batches:
            groups = batch.column(GROUP).to_numpy(zero_copy_only=False)
            if labelled:
                _tally_labels(batch, labels)
            fetched = _fetched_rows(batch, labelled) if fetching else None
            if fetched is not None:
                yield fetched
            if id_groups:
                ids = _id_rows(batch, groups, id_groups)
                if ids is not None:
                    yield ids
            counted = np.flatnonzero(~np.isin(groups, list(strings_only))) if strings_only else None
            texts = batch.column(TEXT) if counted is None else batch.column(TEXT).take(pa.array(counted))
            pylist = texts.to_pylist()
            if len(pylist):
                counted_groups = groups if counted is None else groups[counted]
                present, rows = np.unique(counted_groups, return_inverse=True)
                counts = np.zeros((len(present), config.num_buckets), dtype=np.int64)
                num_tokens = featurizer.count(pylist, rows.astype(np.int64), counts)
                nulls = texts.is_null().to_numpy(zero_copy_only=False)
                for row, group in enumerate(present):
                    total = totals.setdefault(int(group), np.zeros(config.num_buckets + _TOTALS, dtype=np.int64))
                    in_group = rows == row
                    total[_TOTALS:] += counts[row]
                    total[0] += int(in_group.sum())
                    total[1] += int(num_tokens[in_group].sum())
                    total[2] += int(nulls[in_group].sum())
                    total[3] += int(in_group.sum()) * compiled
                    if group in length_groups:
                        values, times = np.unique(np.minimum(num_tokens[in_group], 2**31 - 1), return_counts=True)
                        for value, n in zip(values.tolist(), times.tolist()):
                            lengths[value] = lengths.get(value, 0) + n
                if probe is not None:  # every row counted: count_pass takes no strings_only with a probe
                    chars, probed = _probe_rows(batch, groups, num_tokens, probe)
                    probe_chars += chars
                    if probed is not None:
                        yield probed
            picked = (pc.fill_null(batch.column(STRING_ROW), False).to_numpy(zero_copy_only=False)
                      if string_rows and tallies else True)
            for group, tally in tallies.items():
                for d in np.flatnonzero((groups == group) & picked) if not tally.full else ():
                    tally.add(batch.column(TEXT)[int(d)].as_py())
        for group, total in totals.items():
            nonzero = np.flatnonzero(total[_TOTALS:])
            buckets = np.concatenate([nonzero, [_DOCS, _TOKENS, _NULL_TEXTS, _COMPILED_DOCS]]).astype(np.int32)
            values = np.concatenate([total[_TOTALS:][nonzero], total[:_TOTALS]]).astype(np.int64)
            yield pa.RecordBatch.from_arrays(
                [pa.array(np.full(len(buckets), group, dtype=np.int32)), pa.array(buckets), pa.array(values),
                 pa.nulls(len(buckets), pa.string())],
                names=["grp", BUCKET, COUNT, NGRAM],
            )
        if labels:
            yield _label_rows(labels)
        if lengths:
            yield _length_rows(lengths)
        if probe is not None:
            yield pa.RecordBatch.from_arrays([pa.array([PROBE], pa.int32()), pa.array([_PROBE_TOTAL], pa.int32()),
                                              pa.array([probe_chars], pa.int64()), pa.nulls(1, pa.string())],
                                             names=["grp", BUCKET, COUNT, NGRAM])
        for tally in tallies.values():
            if tally.seen:
                buckets, grams, counts = tally.columns()
                yield pa.RecordBatch.from_arrays([pa.array(np.full(len(buckets), STRINGS, dtype=np.int32)), buckets,
                                                  counts, grams], names=["grp", BUCKET, COUNT, NGRAM])

    return count_partition


@dataclass(frozen=True)
class IdCheck:
    """Document ids that are not unique: null ids, distinct ids that occur more than once, and the
    most frequent of those as (id, occurrences)."""

    null_ids: int = 0
    duplicated: int = 0
    examples: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class CountPass:
    """What one pass over documents counted: bucket counts per group, (when asked for) the most
    frequent n-gram strings of each bucket in the chosen groups' documents (bucket, ngram, count), the
    chosen groups' ids that are null or not unique, and each group's rows per label (None: null)."""

    counts: dict[int, BucketCounts]
    strings: pd.DataFrame
    ids: IdCheck = IdCheck()
    labels: dict[int, dict[str | None, int]] = dataclass_field(default_factory=dict)
    lengths: dict[int, int] = dataclass_field(default_factory=dict)
    # with a probe: (characters of the probed groups, [(u, tokens, characters) under the cap])
    probe: tuple[int, list[tuple[float, int, int]]] | None = None
    # with fetch_rows: those rows, each {"id": str, "text": str | None, "label": str | None}
    fetched: list[dict[str, Any]] = dataclass_field(default_factory=list)


def _id_check(rows: pd.DataFrame) -> IdCheck:
    nulls = rows[rows[BUCKET] == _NULL_ID]
    duplicated = rows[rows[BUCKET] == 0].sort_values([COUNT, NGRAM], ascending=[False, True])
    return IdCheck(null_ids=int(nulls[COUNT].sum()),
                   duplicated=int(duplicated["dsir_ids"].max()) if len(duplicated) else 0,
                   examples=tuple((str(i), int(c)) for i, c in zip(duplicated[NGRAM], duplicated[COUNT])))


def count_pass(documents: DataFrame, config: FeatureConfig, group: Column,
               strings: Mapping[int, Iterable[int] | None] | None = None, string_chars: int = STRING_SAMPLE_CHARS,
               strings_only: Iterable[int] = (), per_bucket: int = STRINGS_PER_BUCKET,
               id_groups: Iterable[int] = (), labels: Column | None = None,
               length_groups: Iterable[int] = (), probe: tuple[Column, Iterable[int], float] | None = None,
               string_rows: Column | None = None, fetch_rows: Column | None = None) -> CountPass:
    """Counts per value of an integer ``group`` expression in one pass over ``documents`` (``text``).
    With ``strings`` (group -> buckets, None: all), the n-gram strings behind those buckets too, from at
    most ``string_chars`` characters of each such group's text per task (see ngrams.NgramTally), of the
    rows ``string_rows`` (a boolean) picks if given: a sample whose size does not grow with the number of
    tasks; documents of ``strings_only`` groups give strings and are not counted. With ``id_groups``, the null
    and duplicated ids (``ID_KEY``, a string) of those groups' rows. With ``labels``, every row's label
    (as a string; rows of every group, ``strings_only`` ones too) is tallied per group.
    With ``probe`` (a uniform per row, groups, cap), the fit sample's estimate from the same pass: the
    characters of those groups' documents and (u, tokens, characters) of each under the cap (see
    fit_sample_info). With ``fetch_rows`` (a boolean picking a handful of rows), those rows whole: id
    (``ID_KEY``), text and label. The driver receives at most (groups + per_bucket) x num_buckets +
    ID_EXAMPLES rows, with labels one row per (group, label) found, with a probe one row per probed
    document, and the fetched rows."""
    if probe is not None and strings_only:
        raise ValueError("a count pass with a probe counts every row: give no strings_only")
    wanted = {int(g): (None if b is None else frozenset(int(x) for x in b)) for g, b in (strings or {}).items()}
    checked = frozenset(int(g) for g in id_groups)
    keyed = checked or fetch_rows is not None
    columns = [TEXT, group.cast("int").alias(GROUP)] + ([F.col(ID_KEY).cast("string")] if keyed else [])
    if labels is not None:
        columns.append(labels.cast("string").alias(LABEL))
    if string_rows is not None:
        columns.append(string_rows.cast("boolean").alias(STRING_ROW))
    if fetch_rows is not None:
        columns.append(fetch_rows.cast("boolean").alias(FETCH_ROW))
    probing = None
    if probe is not None:
        columns.append(probe[0].cast("double").alias(PROBE_U))
        probing = (frozenset(int(g) for g in probe[1]), float(probe[2]))
    partials = documents.select(*columns).mapInArrow(
        _partial_counts(config, requested_implementation(), wanted, string_chars,
                        frozenset(int(g) for g in strings_only), checked, labels is not None,
                        frozenset(int(g) for g in length_groups), probing, string_rows is not None,
                        fetch_rows is not None), _PARTIAL_SCHEMA
    )
    totals = partials.groupBy("grp", BUCKET, NGRAM).agg(F.sum(COUNT).alias(COUNT))
    is_strings, is_ids = F.col("grp") == F.lit(STRINGS), F.col("grp") == F.lit(IDS)
    if checked:  # only ids that are null or occur twice are ranked; the first few reach the driver
        totals = totals.where(~is_ids | (F.col(BUCKET) == F.lit(_NULL_ID)) | (F.col(COUNT) > F.lit(1)))
        distinct = F.count(F.lit(1)).over(Window.partitionBy("grp", BUCKET))
        totals = totals.withColumn("dsir_ids", F.when(is_ids, distinct))
    if wanted or checked:
        ranked = totals.withColumn("rank", F.when(is_strings | is_ids, rank_in_bucket("grp")))
        limit = F.when(is_strings, F.lit(per_bucket)).otherwise(F.lit(ID_EXAMPLES))
        totals = ranked.where(F.col("rank").isNull() | (F.col("rank") <= limit)).drop("rank")
    rows = totals.toPandas()
    strings = rows[rows["grp"] == STRINGS][[BUCKET, NGRAM, COUNT]].reset_index(drop=True)
    ids = _id_check(rows[rows["grp"] == IDS]) if checked else IdCheck()
    labelled: dict[int, dict[str | None, int]] = {}
    for group, label, count in rows[rows["grp"] == LABELS][[BUCKET, NGRAM, COUNT]].itertuples(index=False):
        labelled.setdefault(int(group), {})[label] = int(count)
    lengths = rows[rows["grp"] == LENGTHS]
    lengths = {int(b): int(c) for b, c in zip(lengths[BUCKET], lengths[COUNT])}
    probed = None
    if probe is not None:
        part = rows[rows["grp"] == PROBE]
        total = part[part[BUCKET] == _PROBE_TOTAL]
        docs = part[part[BUCKET] != _PROBE_TOTAL]
        probed = (int(total[COUNT].sum()),
                  [(float(u), int(t), int(c)) for u, t, c in zip(docs[NGRAM], docs[COUNT], docs[BUCKET])])
    fetched = list({row["id"]: row for row in map(json.loads, rows[rows["grp"] == FETCHED][NGRAM])}.values())
    result = {}
    for grp, part in rows[~rows["grp"].isin([STRINGS, IDS, LABELS, LENGTHS, PROBE, FETCHED])].groupby("grp"):
        sums = dict(zip(part[BUCKET].astype(int), part[COUNT].astype(np.int64)))
        real = part[part[BUCKET] >= 0]
        result[int(grp)] = BucketCounts(
            counts=dense_counts(real[BUCKET].to_numpy(), real[COUNT].to_numpy(), config.num_buckets),
            documents=int(sums.get(_DOCS, 0)),
            tokens=int(sums.get(_TOKENS, 0)),
            null_texts=int(sums.get(_NULL_TEXTS, 0)),
            compiled_documents=int(sums.get(_COMPILED_DOCS, 0)),
        )
    return CountPass(result, strings, ids, labelled, lengths, probed, fetched)


def grouped_bucket_counts(documents: DataFrame, config: FeatureConfig, group: Column) -> dict[int, BucketCounts]:
    """Counts per value of an integer ``group`` expression, in one pass over ``documents`` (``text``)."""
    return count_pass(documents, config, group).counts


def bucket_counts(documents: DataFrame, config: FeatureConfig) -> BucketCounts:
    """Counts of every hashed n-gram of ``documents`` (a frame with a ``text`` column)."""
    counts = grouped_bucket_counts(documents, config, F.lit(0)).get(0)
    if counts is None:  # no documents at all
        return BucketCounts(np.zeros(config.num_buckets, dtype=np.int64), 0, 0, 0)
    return counts


# ---------------------------------------------------------------------------------------------- fit sample

# Characters read to estimate tokens per character before sampling.
_ESTIMATE_CHARS = 2_000_000


def _token_counter(tokenizer: str, implementation: str):
    """A featurizer used for its token counts alone: the tokenizer is the only setting they depend on
    (wordpunct_cjk makes each CJK character a token where wordpunct makes a run of them one)."""
    return make_featurizer(FeatureConfig(tokenizer=tokenizer), implementation)


def _token_totals(documents: DataFrame, tokenizer: str) -> tuple[int, int]:
    """(tokens, characters) of a frame of documents."""

    implementation = requested_implementation()

    def count(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        featurizer = _token_counter(tokenizer, implementation)
        tokens = chars = 0
        for batch in batches:
            texts = batch.column(TEXT)
            tokens += int(featurizer.token_counts(texts.to_pylist()).sum())
            chars += int(pc.sum(pc.utf8_length(texts)).as_py() or 0)
        yield pa.RecordBatch.from_arrays([pa.array([tokens]), pa.array([chars])], names=["tokens", "chars"])

    row = documents.select(TEXT).mapInArrow(count, "tokens long, chars long").agg(
        F.sum("tokens").alias("tokens"), F.sum("chars").alias("chars")
    ).first()
    return int(row["tokens"] or 0), int(row["chars"] or 0)


def _token_counts_of(featurizer, texts: pa.Array, picked: np.ndarray) -> np.ndarray:
    """The tokens of the texts a mask picks."""
    return featurizer.token_counts(texts.filter(pa.array(picked)).to_pylist())


def _characters_and_probe(documents: DataFrame, u: Column, cap: float,
                          tokenizer: str) -> tuple[int, list[tuple[float, int, int]]]:
    """One pass: the characters of every document, and (u, tokens, characters) of each document whose
    ``u`` is under ``cap`` (the only texts sent to Python)."""
    implementation = requested_implementation()

    def tally(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        featurizer = _token_counter(tokenizer, implementation)
        total = 0
        for batch in batches:
            part, (u_under, tokens, chars) = _probe_tally(
                batch.column("length").to_numpy(zero_copy_only=False), batch.column("u").to_numpy(zero_copy_only=False),
                cap, partial(_token_counts_of, featurizer, batch.column(TEXT)))
            total += part
            if len(u_under):
                yield pa.RecordBatch.from_arrays([pa.array(u_under), pa.array(tokens), pa.array(chars)],
                                                 names=["u", "tokens", "chars"])
        yield pa.RecordBatch.from_arrays([pa.array([None], pa.float64()), pa.array([0], pa.int64()),
                                          pa.array([total], pa.int64())], names=["u", "tokens", "chars"])

    # Only the texts under the cap are sent to Python; a null text counts as an empty one.
    rows = documents.select(F.coalesce(F.length(TEXT), F.lit(0)).cast("long").alias("length"), u.alias("u"),
                            F.when(u < F.lit(cap), F.coalesce(F.col(TEXT), F.lit(""))).alias(TEXT)).mapInArrow(
        tally, "u double, tokens long, chars long").collect()
    total = sum(row["chars"] for row in rows if row["u"] is None)
    return total, [(row["u"], row["tokens"], row["chars"]) for row in rows if row["u"] is not None]


HEAD_DOCUMENTS = 200


def head_tokens_per_char(documents: DataFrame, tokenizer: str, limit: int = HEAD_DOCUMENTS) -> float | None:
    """Tokens per character of a frame's first ``limit`` documents (Spark reads its first split only; None
    when they hold no text): a guess, before any pass, of how to count a dataset, never of its sample."""
    texts = [row[TEXT] or "" for row in documents.select(TEXT).limit(limit).collect()]
    chars = sum(len(text) for text in texts)
    if not chars:
        return None
    return int(_token_counter(tokenizer, requested_implementation()).token_counts(texts).sum()) / chars


def probe_cap(max_chars: int | None) -> float:
    """Documents whose uniform is under this are sent to Python for the estimate in the pass that reads
    the characters: 4x the sample's fraction at ``max_chars`` characters (0: unknown, two passes)."""
    return min(1.0, 4 * _ESTIMATE_CHARS / max_chars) if max_chars else 0.0


def fit_sample_info(num_tokens: int, chars: int, probed: list[tuple[float, int, int]], cap: float) -> dict | None:
    """The fit sample's fraction from raw's characters and the probed documents (u, tokens, characters):
    its info dict, or None when the estimate needs documents above ``cap`` (a second pass)."""
    if chars <= num_tokens:
        return {"fraction": 1.0, "reason": "fewer characters than num_tokens_to_fit"}
    probe_fraction = min(1.0, _ESTIMATE_CHARS / chars)
    if probe_fraction > cap:
        return None
    chosen = [(tokens, n) for value, tokens, n in probed if value < probe_fraction]
    return _fraction_info(num_tokens, chars, sum(t for t, _ in chosen), sum(n for _, n in chosen))


def _fraction_info(num_tokens: int, chars: int, probe_tokens: int, probe_chars: int) -> dict:
    tokens_per_char = probe_tokens / probe_chars if probe_chars else 1.0
    estimated = chars * tokens_per_char
    fraction = min(1.0, num_tokens / estimated) if estimated else 1.0
    return {"fraction": fraction, "estimated_tokens": int(estimated), "characters": int(chars)}


AUTO_TOKENS_PER_BUCKET = 100_000  # fit.num_tokens_to_fit: auto


def fit_budget_tokens(num_tokens_to_fit: int | str, num_buckets: int) -> int | None:
    """fit.num_tokens_to_fit in tokens: None for all, auto = 100,000 x num_buckets."""
    if num_tokens_to_fit == "all":
        return None
    return AUTO_TOKENS_PER_BUCKET * num_buckets if num_tokens_to_fit == "auto" else int(num_tokens_to_fit)


def fit_uniform(seed: int, id_col: Column) -> Column:
    """The fit sample's hashed uniform of each document (by id)."""
    from dsir_spark.randomness import uniform

    return uniform(seed, id_col, "fit-sample")


def sample_for_fit(documents: DataFrame, num_tokens: int, seed: int, max_chars: int | None = None, *,
                   tokenizer: str) -> tuple[Column | None, dict]:
    """A deterministic sample of about ``num_tokens`` tokens (of ``tokenizer``, features.tokenizer: the
    tokens the count pass counts): documents whose hash of (seed, ``id``) is small. Returns the condition
    that picks them (None: use every document) and how it was chosen.

    Tokens never outnumber characters, so a dataset with fewer characters than the budget is used whole:
    known without a pass when ``max_chars`` (e.g. the bytes of uncompressed JSON files) is under it.
    Otherwise tokens per character are estimated on a small hashed sample (about _ESTIMATE_CHARS) and the
    fraction set from it. With ``max_chars`` known, the characters and the sample come from one pass
    (see probe_cap), enough unless the text is under a quarter of the bytes (then a second pass).
    """
    if max_chars is not None and max_chars <= num_tokens:
        return None, {"fraction": 1.0, "reason": "fewer characters than num_tokens_to_fit"}
    u = fit_uniform(seed, F.col("id"))
    cap = probe_cap(max_chars)
    chars, probed = _characters_and_probe(documents, u, cap, tokenizer) if cap else (None, [])
    if chars is None:
        chars = documents.agg(F.sum(F.length(TEXT)).alias("c")).first()["c"] or 0
    info = fit_sample_info(num_tokens, chars, probed, cap)
    if info is None:
        probe_fraction = min(1.0, _ESTIMATE_CHARS / chars)
        info = _fraction_info(num_tokens, chars,
                              *_token_totals(documents.where(u < F.lit(probe_fraction)), tokenizer))
    return (None if info["fraction"] >= 1.0 else u < F.lit(info["fraction"])), info
