# Databricks notebook source
# MAGIC %md
# MAGIC # DSIR data selection with dsir-spark
# MAGIC
# MAGIC Selects, from a large raw corpus, the documents whose hashed n-gram distribution looks most like a
# MAGIC target corpus (Xie et al., NeurIPS 2023). Runs on this notebook's `spark`: classic clusters,
# MAGIC shared clusters and serverless (Spark Connect) alike. Install the wheel on the cluster first
# MAGIC (`%pip install /Volumes/.../dsir_spark-0.1.0-py3-none-any.whl`, or a cluster library).

# COMMAND ----------

dbutils.widgets.text("raw", "/Volumes/main/default/corpus/pile/*.jsonl.gz", "Raw dataset (paths or table:<name>)")
dbutils.widgets.text("target", "/Volumes/main/default/corpus/target.jsonl", "Target dataset")
dbutils.widgets.text("run_dir", "/Volumes/main/default/runs/dsir", "Run directory")
dbutils.widgets.text("num_to_sample", "100000", "Documents to select")

# COMMAND ----------

from dsir_spark import HashedNgramDSIR

dsir = HashedNgramDSIR(
    raw_datasets=[p.strip() for p in dbutils.widgets.get("raw").split(",")],
    target_datasets=[p.strip() for p in dbutils.widgets.get("target").split(",")],
    cache_dir=dbutils.widgets.get("run_dir"),
    text_col="text",      # nested fields work too: "metadata.text"
    id_col=None,          # None: ids derived from file and content; or name a unique id column
    spark=spark,
)
dsir.fit_importance_estimator(num_tokens_to_fit="auto")
dsir.compute_importance_weights()

# COMMAND ----------

out_dir = dbutils.widgets.get("run_dir") + "/output"
dsir.resample(out_dir=out_dir, num_to_sample=int(dbutils.widgets.get("num_to_sample")), seed=0)

# COMMAND ----------

# MAGIC %md The selection keeps every original column, plus `dsir_log_weight` and `dsir_target`.

# COMMAND ----------

selected = spark.read.parquet(out_dir)
display(selected.orderBy(selected.dsir_log_weight.desc()).limit(20))

# COMMAND ----------

# Scores of every raw document, for your own analysis.
display(spark.read.parquet(dbutils.widgets.get("run_dir") + "/scores").describe())
