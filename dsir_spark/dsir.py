"""``HashedNgramDSIR``: the reference package's class, names and shape, running on Spark.

    dsir = HashedNgramDSIR(raw_datasets, target_datasets, cache_dir, text_col="contents")
    dsir.fit_importance_estimator(num_tokens_to_fit="auto")
    dsir.compute_importance_weights()           # writes <cache_dir>/scores/
    dsir.resample(out_dir, num_to_sample=10_000)

``text_col`` / ``id_col`` replace the reference's parse functions; there is no ``num_proc``: Spark
decides the parallelism. ``cache_dir`` is the run directory (any path Spark can write).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace

import numpy as np
from pyspark.sql import SparkSession

from dsir_spark.config import DatasetConfig, FeatureConfig, FitConfig, ReportConfig, ResampleConfig, RunConfig
from dsir_spark.estimators.ngram_ratio import DSIRModel
from dsir_spark.run.directory import stage_dir
from dsir_spark.run.lease import held
from dsir_spark.runtime.session import active_session
from dsir_spark.selection.report_page import framed
from dsir_spark.stages.count import count_stage
from dsir_spark.stages.explain import explain
from dsir_spark.stages.fit import fit_from_counts, fit_stage
from dsir_spark.stages.report import read_report_page, report_stage
from dsir_spark.stages.resample import resample_stage
from dsir_spark.stages.score import score_stage
from dsir_spark.storage.failures import reading
from dsir_spark.storage.io import one_listing


def _paths(value: str | Sequence[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


class HashedNgramDSIR:
    """DSIR with hashed n-gram features (the reference's ``data_selection.HashedNgramDSIR``)."""

    def __init__(
        self,
        raw_datasets: str | Sequence[str],
        target_datasets: str | Sequence[str],
        cache_dir: str,
        *,
        text_col: str = "text",
        id_col: str | None = None,
        ngrams: int = 2,
        num_buckets: int = 10000,
        hash: str = "sha256",
        tokenizer: str = "wordpunct",
        min_example_length: int = 100,
        target_laplace_smoothing: float = 0.0,
        separate_targets: bool = False,
        target_proportions: Sequence[float] | None = None,
        spark: SparkSession | None = None,
    ) -> None:
        self.spark = spark or active_session()
        targets = _paths(target_datasets)
        # Separate targets: one dataset per path, as the reference treats each path as a target.
        target_configs = (
            tuple(DatasetConfig(paths=(p,), text_col=text_col, id_col=id_col) for p in targets)
            if separate_targets
            else (DatasetConfig(paths=targets, text_col=text_col, id_col=id_col),)
        )
        self.config = RunConfig(
            run_dir=str(cache_dir),
            raw=DatasetConfig(paths=_paths(raw_datasets), text_col=text_col, id_col=id_col),
            targets=target_configs,
            features=FeatureConfig(ngrams=ngrams, num_buckets=num_buckets, hash=hash, tokenizer=tokenizer),
            fit=FitConfig(
                target_laplace_smoothing=target_laplace_smoothing,
                separate_targets=separate_targets,
                target_proportions=tuple(target_proportions) if target_proportions is not None else None,
            ),
            resample=ResampleConfig(min_example_length=min_example_length),
        )
        self.model: DSIRModel | None = None

    # The reference's attribute names, read from the fitted model.
    @property
    def raw_probs(self) -> np.ndarray:
        return self._fitted().raw_probs

    @property
    def target_probs(self) -> np.ndarray:
        probs = self._fitted().target_probs
        return probs if self.config.fit.separate_targets else probs[0]

    @property
    def log_diff(self) -> np.ndarray:
        diff = self._fitted().log_diff
        return diff if self.config.fit.separate_targets else diff[0]

    @property
    def target_proportions(self) -> np.ndarray | None:
        props = self._fitted().target_proportions
        return None if props is None else np.asarray(props)

    @contextmanager
    def _lease(self) -> Iterator[None]:
        """The run directory's lease (see dsir_spark.run.lease) for one step, whose inputs are listed once."""
        config = self.config
        with one_listing(), reading(config.raw, *config.targets), \
                held(self.spark, config.run_dir, config.lease_timeout_seconds):
            yield

    def _fitted(self) -> DSIRModel:
        if self.model is None:
            raise RuntimeError("call fit_importance_estimator() (or load()) first")
        return self.model

    def fit_importance_estimator(self, num_tokens_to_fit: str | int = "auto") -> None:
        """Counts n-grams of raw (about num_tokens_to_fit tokens) and targets, and fits log_diff."""
        self.config = replace(self.config, fit=replace(self.config.fit, num_tokens_to_fit=num_tokens_to_fit))
        with self._lease():
            count_stage(self.spark, self.config)
            fit_stage(self.spark, self.config)
        self.model = fit_from_counts(self.spark, self.config)

    def compute_importance_weights(self) -> None:
        """Scores every raw document into ``<cache_dir>/scores/`` (id, num_tokens, log_weight[_t])."""
        self._fitted()
        with self._lease():
            score_stage(self.spark, self.config)

    def resample(self, out_dir: str, num_to_sample: int, top_k: bool = False, seed: int = 0,
                 output_format: str = "parquet", table_mode: str = "error") -> None:
        """Selects exactly num_to_sample documents into out_dir, a folder or ``table:<name>``
        (see dsir_spark.selection.resampling); ``table_mode="overwrite"`` replaces an existing table."""
        resample = replace(self.config.resample, num_to_sample=num_to_sample, top_k=top_k, seed=seed,
                           out_dir=str(out_dir), output_format=output_format, table_mode=table_mode)
        self.config = replace(self.config, resample=resample)
        with self._lease():
            resample_stage(self.spark, self.config)

    def report(self, label_col: str | None = None, example_documents: int = 5, display: bool = False) -> dict:
        """After ``resample``: KL reduction (selected, random, top_k), log weights, label shares and
        ``example_documents`` examples per group. Also written to ``<cache_dir>/report/`` (report.json,
        report.md, report.html, figures). ``display``: show report.html in the notebook (IPython's
        display, which Databricks and Jupyter notebooks render)."""
        self.config = replace(self.config, report=ReportConfig(enabled=True, label_col=label_col,
                                                               example_documents=example_documents))
        with self._lease():
            report = report_stage(self.spark, self.config)["report"]
        if display:
            try:
                from IPython.display import HTML
                from IPython.display import display as show
            except ImportError as exc:
                raise RuntimeError("report(display=True) needs a notebook (IPython); the page is "
                                   f"{stage_dir(self.config, 'report')}/report.html") from exc
            show(HTML(framed(read_report_page(self.spark, self.config))))
        return report

    def explain(self, ids, top: int = 10) -> list[dict]:
        """Why documents got their weights: for each id, its total log weight and its ``top`` n-grams
        pulling toward and away from the target (counts, log ratios); see dsir_spark.stages.explain."""
        self._fitted()
        return explain(self.spark, self.config, list(ids), top)

    def save(self, path: str | None = None) -> None:
        """Saves the fitted model (Parquet + JSON) to path, by default ``<cache_dir>/model``."""
        target = path or stage_dir(self.config, "fit")
        self._fitted().save(self.spark, target)

    def load(self, path: str | None = None) -> None:
        """Loads a model saved by ``save`` (or by the fit stage)."""
        self.model = DSIRModel.load(self.spark, path or stage_dir(self.config, "fit"))
