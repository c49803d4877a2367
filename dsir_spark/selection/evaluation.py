"""How good is the selection: KL reduction against baselines, log-weight and label distributions.

KL reduction (DSIR paper, section 4): (1/|T|) * sum over targets t of
    KL(p_t || q_raw) - KL(p_t || p_selected),
with p_t, q_raw, p_selected the normalized hashed n-gram bucket distributions of the target, the raw
dataset and the selection, and KL(p || q) = sum p * (log(p + 1e-8) - log(q + 1e-8)), the same
smoothing as the log-ratio. q_raw comes from the count stage, so with a num_tokens_to_fit sample it
is that sample's distribution. Baselines, without scoring anything again: a uniform random selection
of the same size (seeded; Gumbel top-k with all weights equal and its own noise) and top-k.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from dsir_spark.columns import ID, NUM_TOKENS, TEXT
from dsir_spark.estimators.ngram_ratio import EPS
from dsir_spark.featurizer.counts import ID_KEY, BucketCounts, count_pass
from dsir_spark.featurizer.ngrams import pulling_buckets, strings_by_bucket
from dsir_spark.randomness import uniform
from dsir_spark.selection.report_documents import (
    GROUP,
    HELD_BY_NONE,
    LABEL,
    SELECTIONS,
    TARGET_TEXTS,
    code_base,
    holder,
)

log = logging.getLogger("dsir_spark")
HISTOGRAM_BINS = 40


def kl_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p || q) with the log-ratio's smoothing: sum p * (log(p + 1e-8) - log(q + 1e-8))."""
    return float(np.sum(p * (np.log(p + EPS) - np.log(q + EPS))))


def kl_reduction(targets: Sequence[np.ndarray], raw: np.ndarray, selected: Sequence[np.ndarray]) -> float:
    """Mean over targets of KL(p_t || raw) - KL(p_t || selected_t); pass one selection per target
    (the same one repeated when the selection is shared)."""
    gains = [kl_divergence(p, raw) - kl_divergence(p, s) for p, s in zip(targets, selected)]
    return float(np.mean(gains))


@dataclass(frozen=True)
class _HistogramSpec:
    """A histogram of ``column`` over raw rows where ``population`` holds, against the selected ones where
    ``chosen`` holds (on the scores joined with the selection's ``target``)."""

    column: str
    population: Column
    chosen: Column
    population_name: str


def _histograms(scores: DataFrame, selection: DataFrame, specs: Sequence[_HistogramSpec],
                also: Sequence[Column] = ()) -> tuple[list[dict[str, Any]], list[Any]]:
    """Histograms on shared bin edges that span the central 99% of each side (quantiles 0.5% to 99.5%);
    values outside are counted, not drawn. Two passes over the scores joined with the selection: the
    quantiles of both sides (with the aggregates ``also``, whose values are returned too), then every
    bin of every spec of both sides."""
    frame = scores.join(selection.select(ID, F.col("target").alias("__target")), on=ID, how="left")
    chosen = F.col("__target").isNotNull()
    sides = (("raw", lambda spec: spec.population), ("selected", lambda spec: chosen & spec.chosen))
    cells_of = [(side, i) for side in range(len(sides)) for i in range(len(specs))]  # one per (side, spec)
    quantiles = [F.percentile_approx(F.when(sides[side][1](specs[i]), F.col(specs[i].column)), [0.005, 0.995], 1000)
                 for side, i in cells_of]
    values = list(frame.agg(*[c.alias(f"c{n}") for n, c in enumerate([*quantiles, *also])]).first())
    spans, extra = values[:len(quantiles)], values[len(quantiles):]
    edges = []
    for i in range(len(specs)):
        found = [spans[n] for n, (_, spec) in enumerate(cells_of) if spec == i and spans[n]]
        lo, hi = min(span[0] for span in found), max(span[1] for span in found)
        edges.append((lo, hi, (hi - lo) / HISTOGRAM_BINS or 1.0))

    def bin_of(n: int, spec: _HistogramSpec, where: Column, lo: float, hi: float, width: float) -> Column:
        """The (side and spec n, bin) of a row as one number, n x span + bin + 1 (bins -1 and
        HISTOGRAM_BINS: below and above the axis); null outside the spec's rows."""
        value = F.col(spec.column)
        index = (F.when(value < F.lit(lo), F.lit(-1)).when(value > F.lit(hi), F.lit(HISTOGRAM_BINS))
                 .otherwise(F.least(F.floor((value - F.lit(lo)) / F.lit(width)).cast("int"),
                                    F.lit(HISTOGRAM_BINS - 1))))
        return F.when(where & value.isNotNull(), index + F.lit(n * span + 1))

    span = HISTOGRAM_BINS + 2  # [below, bins..., above]
    cells = F.array(*[bin_of(n, specs[i], sides[side][1](specs[i]), *edges[i]) for n, (side, i) in enumerate(cells_of)])
    bins = [0] * (span * len(cells_of))
    for row in frame.select(F.explode(cells).alias("cell")).where(F.col("cell").isNotNull()).groupBy(
            "cell").count().collect():
        bins[row["cell"]] = int(row["count"])
    counted = {name: [bins[(side * len(specs) + i) * span:(side * len(specs) + i + 1) * span]
                      for i in range(len(specs))] for side, (name, _) in enumerate(sides)}
    result = []
    for i, (spec, (lo, _, width)) in enumerate(zip(specs, edges)):
        raw, chosen = counted["raw"][i], counted["selected"][i]
        result.append({"column": spec.column, "edges": [lo + b * width for b in range(HISTOGRAM_BINS + 1)],
                       "raw": raw[1:-1], "selected": chosen[1:-1],
                       "outside": {"raw": {"below": raw[0], "above": raw[-1]},
                                   "selected": {"below": chosen[0], "above": chosen[-1]}},
                       "raw_documents": spec.population_name})
    return result, extra


PULLING = 30
# The n-gram strings of the buckets that pull away from the target come from about this many of the
# random baseline's documents, a seeded sample whatever the selection's size (or the tasks' number).
STRING_DOCUMENTS = 1000


def _pulling_ngrams(log_diff: np.ndarray, target_probs: np.ndarray, raw_probs: np.ndarray,
                    strings: dict[int, list[str]]) -> dict[str, list]:
    """The PULLING n-grams that pull documents toward the target most (log ratio x target probability;
    their strings from the targets' documents) and away from it most (log ratio x raw probability;
    strings from the random baseline's documents, a sample of raw)."""
    toward = pulling_buckets(log_diff, target_probs, PULLING, toward=True)
    away = pulling_buckets(log_diff, raw_probs, PULLING, toward=False)

    def rows(buckets: list[int], probs: np.ndarray, side: str) -> list[dict]:
        return [{"ngrams": strings.get(b, []), "bucket": b, "log_ratio": float(log_diff[b]),
                 f"{side}_prob": float(probs[b]), "pull": float(log_diff[b] * probs[b])} for b in buckets]

    return {"toward": rows(toward, target_probs, "target"), "away": rows(away, raw_probs, "raw")}


def _label_shares(labels: dict[int, dict[str | None, int]], base: int) -> dict[str, dict[str, float]]:
    """Share of each label in raw and in each selection, from the rows per (group, label) of the
    report's counting pass: every raw row counts for raw, and for each selection that holds it."""
    totals: dict[str, dict[str, int]] = {name: {} for name in ("raw", *SELECTIONS)}
    for code, counts in labels.items():
        if code == TARGET_TEXTS:
            continue
        names = ["raw", *[name for index, name in enumerate(SELECTIONS) if holder(code, index, base)]]
        for label, rows in counts.items():
            shown = "null" if label is None else label
            for name in names:
                totals[name][shown] = totals[name].get(shown, 0) + rows
    return {name: {k: v / max(1, sum(c.values())) for k, v in sorted(c.items())} for name, c in totals.items()}


def build_report(
    spark: SparkSession,
    *,
    scores: DataFrame,
    selection: DataFrame,
    selected: int,
    rows: DataFrame,
    raw_counts: BucketCounts,
    target_counts: Sequence[BucketCounts],
    target_names: Sequence[str],
    weight_cols: Sequence[str],
    features,
    min_example_length: int,
    seed: int,
    label_col: str | None = None,
    bucket_weights: np.ndarray | None = None,
    bucket_weight_name: str = "log ratio",
    target_texts: DataFrame | None = None,
    figures: Figures | None = None,
    fetch_ids: Sequence[str] = (),
) -> dict[str, Any]:
    """The report as a dict, for ``selection`` (id and target; ``selected`` documents) of ``scores``.
    ``rows`` are the documents the report reads (report_documents.report_rows: the held ones with their
    text and group, with ``label_col`` every raw row's label). With the model's ``bucket_weights`` (its
    first row: the log ratios, or a classifier's coefficients, named by ``bucket_weight_name``) it lists
    the n-grams that pull documents toward the target (their strings from ``target_texts``, the targets'
    documents or a sample of them) and away from it. ``figures`` are given the histograms as soon as
    they are known. ``fetch_ids``: rows of ``rows`` (id as a string, text, label) to return too, under
    "fetched"."""
    k = selected
    if k == 0:
        raise ValueError("the selection is empty (num_to_sample: 0): there is nothing to report on")
    separate = len(weight_cols) > 1
    eligible = F.col(NUM_TOKENS) >= F.lit(min_example_length)
    specs = [_HistogramSpec(column, eligible, (F.col("__target") == F.lit(t)) if separate else F.lit(True),
                            "eligible") for t, column in enumerate(weight_cols)]
    # The histograms' small Spark jobs run while the counting pass does.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="dsir-spark-report") as pool:
        histogram_job = pool.submit(
            _histograms, scores, selection, [*specs, _HistogramSpec(NUM_TOKENS, F.lit(True), F.lit(True), "all")],
            also=[F.count("*"), F.sum(NUM_TOKENS), F.count(F.when(F.col(NUM_TOKENS) < min_example_length, 1))])

        # One featurizing pass over the union of the three selections (at most 3k documents, each once
        # however many selections hold it), which also gathers the strings of the buckets that pull toward
        # the target (from its documents, not counted) and away from it (from the random baseline's).
        base = code_base(weight_cols)
        held = F.col(GROUP) != F.lit(HELD_BY_NONE)
        # Drawn for held documents only (with labels every raw row is read): the others give no strings.
        string_row = held & (uniform(seed, F.col(ID), "report-strings") < F.lit(min(1.0, STRING_DOCUMENTS / k)))
        key = F.col(ID).cast("string")
        documents = rows.select(TEXT, GROUP, *([LABEL] if label_col else []), string_row.alias("__strings"),
                                key.alias(ID_KEY), key.isin(list(fetch_ids)).alias("__fetch"))
        raw_probs = raw_counts.probabilities()
        target_probs = np.sum([t.counts for t in target_counts], axis=0) / sum(t.counts.sum() for t in target_counts)
        strings: dict[int, list[int]] = {}
        if bucket_weights is not None:
            away = pulling_buckets(bucket_weights, raw_probs, PULLING, toward=False)
            random_index = SELECTIONS.index("random")
            strings = {code: away for code in range(base ** len(SELECTIONS)) if holder(code, random_index, base)}
            if target_texts is not None:
                strings[TARGET_TEXTS] = pulling_buckets(bucket_weights, target_probs, PULLING, toward=True)
                documents = documents.unionByName(target_texts.select(TEXT, F.lit(TARGET_TEXTS).alias(GROUP),
                                                                      F.lit(True).alias("__strings")),
                                                  allowMissingColumns=True)
        counted = count_pass(documents, features, F.col(GROUP), strings=strings,
                             strings_only=[TARGET_TEXTS, HELD_BY_NONE], labels=F.col(LABEL) if label_col else None,
                             string_rows=F.col("__strings"), fetch_rows=F.col("__fetch") if fetch_ids else None)
        histograms, (n, tokens, short) = histogram_job.result()
    if figures is not None:
        figures.histograms(histograms)
    fetched = [{ID: row["id"], TEXT: row["text"], **({"label": row["label"]} if label_col else {})}
               for row in counted.fetched]

    def held_by(index: int, target: int | None = None) -> list[BucketCounts]:
        """Counts of the documents selection ``index`` holds (for ``target`` only, if given)."""
        holders = {code: holder(code, index, base) for code in counted.counts}
        return [c for code, c in counted.counts.items()
                if holders[code] and (target is None or holders[code] == target + 1)]

    targets = [t.probabilities() for t in target_counts]
    if not separate:  # one target distribution: all target datasets together
        total = np.sum([t.counts for t in target_counts], axis=0)
        targets = [total / total.sum()]
    empty = np.zeros(features.num_buckets)

    def probs(index: int, target: int | None = None) -> np.ndarray:
        parts = [c.counts for c in held_by(index, target)]
        total = np.sum(parts, axis=0) if parts else empty
        return total / total.sum() if total.sum() else total

    report: dict[str, Any] = {"kl_reduction": {}, "documents": {}, "tokens": {}}
    for index, name in enumerate(SELECTIONS):
        report["kl_reduction"][name] = kl_reduction(targets, raw_probs, [probs(index)] * len(targets))
    if separate:
        per_target = {}
        for t, target_name in enumerate(target_names):
            per_target[target_name] = {
                name: kl_reduction([targets[t]], raw_probs, [probs(index, t)]) for index, name in enumerate(SELECTIONS)
            }
        report["kl_reduction"]["per_target"] = per_target
    report["log_weights"], report["lengths"] = histograms[:-1], histograms[-1]
    selected_docs = held_by(0)
    report["documents"] = {"raw": int(n), "too_short": int(short), "eligible": int(n) - int(short), "selected": k}
    report["tokens"] = {"raw": int(tokens or 0), "selected": int(sum(c.tokens for c in selected_docs))}
    if bucket_weights is not None:
        report["ngrams"] = _pulling_ngrams(bucket_weights, target_probs, raw_probs,
                                           strings_by_bucket(counted.strings.to_dict("records")))
        report["ngrams"]["weight"] = bucket_weight_name
    report["min_example_length"] = min_example_length
    report["seed"] = seed
    report["targets"] = list(target_names)
    if label_col:
        report["labels"] = {"column": label_col, "shares": _label_shares(counted.labels, base)}
    if fetch_ids:
        report["fetched"] = fetched
    return report


# ---------------------------------------------------------------------------------------------- writing


def _cell(text: str) -> str:
    """An n-gram as a Markdown table cell: code, with pipes and backticks that would break it escaped."""
    return "`" + text.replace("|", "\\|").replace("`", "'") + "`"


def to_markdown(report: dict[str, Any], figures: Sequence[str]) -> str:
    kl = report["kl_reduction"]
    docs = report["documents"]
    lines = [
        "# DSIR selection report",
        "",
        f"Selected {docs['selected']:,} of {docs['raw']:,} documents ({docs['too_short']:,} too short, "
        f"under {report['min_example_length']} tokens); {report['tokens']['selected']:,} of "
        f"{report['tokens']['raw']:,} tokens. Seed {report['seed']}.",
        "",
        *[f"**Warning:** {warning}\n" for warning in report.get("warnings", [])],
        "## KL reduction (higher is closer to the target)",
        "",
        "| selection | KL reduction |",
        "|---|---|",
    ]
    lines += [f"| {name} | {kl[name]:.4f} |" for name in SELECTIONS]
    skipped = {name: bad for name, bad in report.get("bad_records", {}).items() if bad}
    if skipped:
        lines += ["", "Lines left out because the reader could not parse them: " + "; ".join(
            f"{name}: " + ", ".join(f"{n:,} {reason}" for reason, n in bad.items()) for name, bad in skipped.items())]
    for target, values in kl.get("per_target", {}).items():
        lines += ["", f"Target {target}: " + ", ".join(f"{n} {values[n]:.4f}" for n in SELECTIONS)]
    if "labels" in report:
        shares = report["labels"]["shares"]
        lines += ["", f"## Share of each `{report['labels']['column']}`", "",
                  "| label | raw | selected | random |", "|---|---|---|---|"]
        for label in shares["raw"]:
            lines.append(f"| {label} | {shares['raw'][label]:.3f} | {shares['selected'].get(label, 0):.3f} | "
                         f"{shares['random'].get(label, 0):.3f} |")
    weight = report.get("ngrams", {}).get("weight", "log ratio")
    for side, title, prob in (("toward", "pull documents toward the target", "target_prob"),
                              ("away", "pull documents away from the target", "raw_prob")):
        rows = report.get("ngrams", {}).get(side)
        if rows:
            lines += ["", f"## N-grams that {title}", "",
                      f"| n-grams (most frequent in the bucket first) | bucket | {weight} | {prob} |",
                      "|---|---|---|---|"]
            lines += [f"| {', '.join(_cell(g) for g in row['ngrams']) or '(not seen)'} | {row['bucket']} | "
                      f"{row['log_ratio']:.2f} | {row[prob]:.2e} |" for row in rows]
    lines += [""] + [f"![{os.path.basename(f)}]({os.path.basename(f)})" for f in figures]
    return "\n".join(lines) + "\n"


def _plotting():
    """matplotlib's pyplot on the file-only backend; None (said once) when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.info("matplotlib not installed (pip install 'dsir-spark[report]'): report without figures")
        return None
    return plt


def _save(plt, fig, path: str) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _draw_histogram(plt, hist: dict[str, Any], folder: str) -> str:
    edges = np.array(hist["edges"])
    fig, ax = plt.subplots(figsize=(7, 4))
    raw_label = f"{hist.get('raw_documents', 'eligible')} raw"
    for name, label, color in (("raw", raw_label, "tab:gray"), ("selected", "selected", "tab:blue")):
        counts = np.array(hist[name], dtype=float)
        total = counts.sum() + sum(hist["outside"][name].values())
        ax.stairs(counts / max(1.0, total), edges, label=label, color=color, fill=name == "raw", alpha=0.6)
    ax.set_xlabel(hist["column"])
    ax.set_ylabel("share of documents")
    what = "Document length (tokens)" if hist["column"] == NUM_TOKENS else "Log importance weights"
    ax.set_title(f"{what}: {raw_label} vs selected ({hist['column']})")
    outside = hist["outside"]
    fig.text(0.01, 0.01, f"Axis: the central 99% of each. Outside it: {raw_label} {outside['raw']['below']:,} "
                         f"below, {outside['raw']['above']:,} above; selected {outside['selected']['below']:,} "
                         f"below, {outside['selected']['above']:,} above.", fontsize=7)
    ax.legend()
    return _save(plt, fig, os.path.join(folder, f"{hist['column']}_histogram.png"))


def _draw_label_shares(plt, labels: dict[str, Any], folder: str) -> str:
    shares = labels["shares"]
    names = list(shares["raw"])
    y = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(names) + 1.5))
    for offset, name in zip((-0.27, 0, 0.27), ("raw", "selected", "random")):
        ax.barh(y + offset, [shares[name].get(label, 0) for label in names], height=0.27, label=name)
    ax.set_yticks(y, names)
    ax.set_xlabel("share of documents")
    ax.set_title(f"Share of each {labels['column']}")
    ax.legend()
    return _save(plt, fig, os.path.join(folder, "label_shares.png"))


class Figures:
    """The report's PNG figures in ``folder``, drawn on one background thread (matplotlib's import
    first) while Spark computes the rest of the report; none when matplotlib (the ``report`` extra) is
    not installed."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dsir-spark-figures")
        self._plotting = self._pool.submit(_plotting)
        self._drawn: list[Future] = []

    def _draw(self, draw, *args) -> None:
        def run() -> list[str]:
            plt = self._plotting.result()
            return [] if plt is None else [draw(plt, *args, self.folder)]

        self._drawn.append(self._pool.submit(run))

    def histograms(self, histograms: Sequence[dict[str, Any]]) -> None:
        for hist in histograms:
            self._draw(_draw_histogram, hist)

    def finish(self, report: dict[str, Any]) -> list[str]:
        """Draws what needs the whole report, waits for every figure; their paths."""
        if "labels" in report:
            self._draw(_draw_label_shares, report["labels"])
        self._pool.shutdown(wait=True)
        return [path for drawn in self._drawn for path in drawn.result()]
