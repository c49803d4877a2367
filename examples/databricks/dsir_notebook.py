# Databricks notebook source
# MAGIC %md
# MAGIC # DSIR data selection with dsir-spark
# MAGIC
# MAGIC Selects, from a large raw corpus, the documents whose hashed n-gram distribution looks most like a
# MAGIC target corpus (Xie et al., NeurIPS 2023). Runs on this notebook's `spark`: classic clusters,
# MAGIC shared clusters and serverless (Spark Connect) alike. Install the wheel on the cluster first
# MAGIC (`%pip install /Volumes/.../dsir_spark-<version>-cp311-cp311-linux_x86_64.whl`, or a cluster library).

# COMMAND ----------

dbutils.widgets.text("raw", "table:main.corpus.pile", "Raw dataset (table:<name>, or paths)")
dbutils.widgets.text("target", "table:main.corpus.target", "Target dataset (table:<name>, or paths)")
dbutils.widgets.text("run_dir", "/Volumes/main/corpus/runs/dsir", "Run directory (a Volume)")
dbutils.widgets.text("selected", "main.corpus.dsir_selected", "Output table for the selection")
dbutils.widgets.text("num_to_sample", "100000", "Documents to select")
dbutils.widgets.text("text_col", "text", "Text column (nested: parent.child)")

# COMMAND ----------

from dsir_spark import HashedNgramDSIR

dsir = HashedNgramDSIR(
    raw_datasets=[p.strip() for p in dbutils.widgets.get("raw").split(",")],
    target_datasets=[p.strip() for p in dbutils.widgets.get("target").split(",")],
    cache_dir=dbutils.widgets.get("run_dir"),
    text_col=dbutils.widgets.get("text_col"),
    id_col=None,          # None: ids derived from table name (or file) and content; or name a unique id column
    spark=spark,
)
dsir.fit_importance_estimator(num_tokens_to_fit="auto")
dsir.compute_importance_weights()

# COMMAND ----------

selected_table = dbutils.widgets.get("selected")
# table_mode="error" never replaces an existing table; "overwrite" replaces it.
dsir.resample(out_dir=f"table:{selected_table}", num_to_sample=int(dbutils.widgets.get("num_to_sample")), seed=0,
              table_mode="overwrite")

# COMMAND ----------

# MAGIC %md The selection keeps every original column, plus `dsir_log_weight` and `dsir_target`.

# COMMAND ----------

selected = spark.table(selected_table)
display(selected.orderBy(selected.dsir_log_weight.desc()).limit(20))

# COMMAND ----------

# Scores of every raw document, for your own analysis.
display(spark.read.parquet(dbutils.widgets.get("run_dir") + "/scores").describe())
