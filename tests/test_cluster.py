"""Real clusters: spark-submit on a standalone cluster (with a lost worker), and a Spark Connect client."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from cluster import REPO, ConnectServer, StandaloneCluster, package_library, spark_env, spark_submit, wait_for
from conftest import PILE, TARGET_C, read_jsonl

from dsir_spark.config import config_from_dict
from dsir_spark.pipeline import run_pipeline

pytestmark = pytest.mark.slow  # real clusters: run by `pytest -m slow` (and by CI)

COPIES = 5  # 5,000 documents, 4 MB: long enough to lose a worker in the middle of scoring


@pytest.fixture(scope="module")
def cluster_inputs(spark, tmp_path_factory):
    """Raw data as several Parquet files, a config for it, and the local-mode selection to compare with."""
    root = tmp_path_factory.mktemp("cluster")
    rows = read_jsonl(PILE)
    frame = spark.createDataFrame(
        [(copy * 10_000 + r["id"], r["contents"], r["metadata"]["pile_set_name"])
         for copy in range(COPIES) for r in rows],
        "id long, contents string, source string",
    )
    frame.repartition(6).write.parquet(str(root / "raw"))

    def config_for(run_dir: Path) -> dict:
        return {
            "run_dir": str(run_dir),
            "raw": {"paths": [str(root / "raw")], "text_col": "contents", "id_col": "id"},
            "targets": [{"paths": [str(TARGET_C)], "text_col": "contents"}],
            "fit": {"num_tokens_to_fit": "all"},
            "resample": {"num_to_sample": 300, "seed": 11},
            "report": {"enabled": False},
        }

    local = config_for(root / "local_run")
    run_pipeline(spark, config_from_dict(local))
    expected = selected_ids(spark, root / "local_run")
    assert len(expected) == 300
    return root, config_for, expected


def selected_ids(spark, run_dir: Path) -> list:
    return sorted(r.id for r in spark.read.parquet(str(run_dir / "selection" / "ids")).select("id").collect())


def write_config(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_spark_submit_on_a_standalone_cluster_and_losing_a_worker(spark, cluster_inputs, tmp_path):
    root, config_for, expected = cluster_inputs
    cluster = StandaloneCluster(tmp_path / "cluster").start()
    try:
        library = package_library(tmp_path)
        # 1. An undisturbed run: both workers take tasks, the selection equals local mode's.
        config = write_config(tmp_path / "run1.yaml", config_for(tmp_path / "run1"))
        job = spark_submit(cluster.url, library, ["run", "--config", str(config)], tmp_path / "submit1.log",
                           **{"spark.sql.shuffle.partitions": "4", "spark.default.parallelism": "4"})
        assert job.wait(timeout=600) == 0, (tmp_path / "submit1.log").read_text()[-3000:]
        assert all(count > 0 for count in cluster.tasks_run_by_worker()), cluster.tasks_run_by_worker()
        assert selected_ids(spark, tmp_path / "run1") == expected

        # 2. Lose a worker (and its executor) while the score stage runs: Spark reruns the lost tasks.
        config = write_config(tmp_path / "run2.yaml", config_for(tmp_path / "run2"))
        job = spark_submit(cluster.url, library, ["run", "--config", str(config)], tmp_path / "submit2.log",
                           **{"spark.sql.shuffle.partitions": "4", "spark.default.parallelism": "4",
                              "spark.sql.files.maxPartitionBytes": "400000"})
        scoring = tmp_path / "run2" / "scores" / "_temporary"
        wait_for(lambda: scoring.exists() or job.poll() is not None, 300, "the score stage to start", 0.05)
        assert job.poll() is None, "the job ended before the score stage could be interrupted"
        cluster.kill_worker(1)
        assert job.wait(timeout=600) == 0, (tmp_path / "submit2.log").read_text()[-3000:]
        log = (tmp_path / "submit2.log").read_text()
        assert "Lost executor" in log or "lost executor" in log.lower() or "ExecutorLost" in log, log[-3000:]
        assert selected_ids(spark, tmp_path / "run2") == expected
    finally:
        cluster.stop()


CONNECT_CLIENT = textwrap.dedent(
    """
    import json, logging, re, sys
    from pyspark.sql import SparkSession
    from dsir_spark.config import config_from_dict
    from dsir_spark.pipeline import run_pipeline

    class Progress(logging.Handler):  # the progress lines the run logs, from the server's reports
        lines = []
        def emit(self, record):
            if re.match(r"stage \\w+: \\d+/\\d+ tasks", record.getMessage()):
                self.lines.append(record.getMessage())
    logging.getLogger("dsir_spark").addHandler(Progress())
    logging.getLogger("dsir_spark").setLevel(logging.INFO)
    spark = SparkSession.builder.remote(sys.argv[1]).getOrCreate()
    assert type(spark).__module__.startswith("pyspark.sql.connect"), type(spark)
    config = config_from_dict({**json.loads(sys.argv[2]), "progress_seconds": 0.2})
    records = run_pipeline(spark, config)
    ids = sorted(r.id for r in spark.read.parquet(config.run_dir + "/selection/ids").select("id").collect())
    print(json.dumps({"ids": ids, "stages": sorted(records), "progress": Progress.lines}))
    """
)


def run_connect_client(script: str, config: dict, tmp_path: Path) -> dict:
    """Runs a client script against a fresh Spark Connect server; returns the JSON it prints last."""
    server = ConnectServer(tmp_path / "connect").start()
    try:
        result = subprocess.run([sys.executable, "-c", script, server.url, json.dumps(config)],
                                capture_output=True, text=True, timeout=900, env=spark_env(), cwd=REPO)
        assert result.returncode == 0, result.stderr[-4000:]
        return json.loads(result.stdout.strip().splitlines()[-1])
    finally:
        server.stop()


def test_the_whole_pipeline_from_a_spark_connect_client(spark, cluster_inputs, tmp_path):
    root, config_for, expected = cluster_inputs
    config = config_for(tmp_path / "run")
    # the target's columns declared (parsed by the server): its counts, and so the selection, as inferred ones
    config["targets"][0]["json_schema"] = "contents STRING, id BIGINT"
    # raw as JSON Lines, its columns sampled (the default): lines read whole, the output typed by the server
    spark.read.parquet(str(root / "raw")).write.json(str(tmp_path / "raw_json"))
    config["raw"]["paths"] = [str(tmp_path / "raw_json")]
    output = run_connect_client(CONNECT_CLIENT, config, tmp_path)
    assert output["stages"] == sorted(["count", "fit", "score", "resample", "report"])
    assert output["ids"] == expected
    written = pq.read_table(tmp_path / "run" / "output")
    assert written.num_rows == len(expected) and sorted(written.column("id").to_pylist()) == expected
    assert written.column_names == ["contents", "id", "source", "dsir_log_weight", "dsir_target"]
    # Progress reached the client from the server's own reports: tasks, and the input read so far.
    stages = {line.split(":")[0] for line in output["progress"]}
    assert {"stage count", "stage score"} <= stages, output["progress"]
    assert any(" read (" in line for line in output["progress"] if line.startswith("stage score")), output["progress"]


def test_the_classifier_trains_through_spark_connect_as_in_local_mode(spark, cluster_inputs, tmp_path):
    """fit.estimator: logistic through Connect: MLlib's LogisticRegression runs on the server, and the
    coefficients (one partition, fixed order) and so the selection equal local mode's."""
    _, config_for, _ = cluster_inputs

    def logistic(run_dir: Path) -> dict:
        config = config_for(run_dir)
        config["features"] = {"num_buckets": 1000}
        config["fit"].update({"estimator": "logistic", "held_out": 0.0})
        return config

    run_pipeline(spark, config_from_dict(logistic(tmp_path / "local")))
    expected = selected_ids(spark, tmp_path / "local")
    output = run_connect_client(CONNECT_CLIENT, logistic(tmp_path / "connect"), tmp_path)
    assert output["ids"] == expected and len(expected) == 300
    local, remote = (json.loads(next((tmp_path / name / "model" / "model.json").glob("part-*")).read_text())
                     for name in ("local", "connect"))
    assert local["intercepts"] == remote["intercepts"] and local["estimator"] == "logistic"


CONNECT_TABLES_CLIENT = textwrap.dedent(
    """
    import json, sys
    from pyspark.sql import SparkSession
    from dsir_spark.config import config_from_dict
    from dsir_spark.pipeline import run_pipeline
    spark = SparkSession.builder.remote(sys.argv[1]).getOrCreate()
    data = json.loads(sys.argv[2])
    spark.sql("CREATE SCHEMA IF NOT EXISTS corpus")
    spark.read.parquet(*data["raw"]["paths"]).write.mode("overwrite").saveAsTable("corpus.pile")
    data["raw"]["paths"] = ["table:corpus.pile"]
    data["resample"]["out_dir"] = "table:corpus.selected"
    run_pipeline(spark, config_from_dict(data))
    output = spark.table("corpus.selected")
    print(json.dumps({"ids": sorted(r.id for r in output.select("id").collect()), "columns": sorted(output.columns)}))
    """
)


def test_a_table_in_and_a_table_out_through_spark_connect(cluster_inputs, tmp_path):
    _, config_for, expected = cluster_inputs
    output = run_connect_client(CONNECT_TABLES_CLIENT, config_for(tmp_path / "run"), tmp_path)
    assert output["ids"] == expected
    assert output["columns"] == ["contents", "dsir_log_weight", "dsir_target", "id", "source"]


def test_the_stage_records_say_what_ran(cluster_inputs):
    root, _, _ = cluster_inputs
    record = json.loads(next((root / "local_run" / "scores" / "_dsir" / "stage.json").glob("part-*")).read_text())
    assert record["status"] == "done" and record["rows_out"] == COPIES * 1000
    assert record["versions"]["spark"] and record["seconds"] > 0 and time.time() > 0


def test_an_unreachable_master_gives_a_clear_error(tmp_path):
    from cluster import free_port

    config = write_config(tmp_path / "run.yaml", {
        "run_dir": str(tmp_path / "run"),
        "raw": {"paths": [str(PILE)], "text_col": "contents", "id_col": "id"},
        "targets": [{"paths": [str(TARGET_C)], "text_col": "contents"}],
        "resample": {"num_to_sample": 10},  # without it the run is refused before it asks for a session
    })
    master = f"spark://127.0.0.1:{free_port()}"
    job = spark_submit(master, package_library(tmp_path), ["run", "--config", str(config)], tmp_path / "submit.log")
    assert job.wait(timeout=300) == 1
    log = (tmp_path / "submit.log").read_text()
    assert f"dsir-spark: cannot reach the Spark master {master}" in log, log[-3000:]
    assert not (tmp_path / "run").exists()


CONNECT_ML = textwrap.dedent(
    """
    import json, sys
    from pyspark.sql import SparkSession
    from pyspark.ml import Pipeline, PipelineModel
    from dsir_spark.estimators.spark_ml import ImportanceWeighting
    spark = SparkSession.builder.remote(sys.argv[1]).getOrCreate()
    paths = json.loads(sys.argv[2])
    raw = spark.read.json(paths["raw"]).selectExpr("id", "contents as text", "false as is_target")
    target = spark.read.json(paths["target"]).selectExpr("-1 - id as id", "contents as text", "true as is_target")
    fitted = Pipeline(stages=[ImportanceWeighting(labelCol="is_target")]).fit(raw.unionByName(target))
    fitted.write().overwrite().save(paths["saved"])
    loaded = PipelineModel.load(paths["saved"])
    weights = {str(r["id"]): r["dsir_log_weight"] for r in loaded.transform(raw).collect()}
    print(json.dumps({"weights": weights, "columns": loaded.transform(raw).columns}))
    """
)


def test_the_spark_ml_model_fits_transforms_and_round_trips_through_spark_connect(spark, tmp_path):
    """Spark Connect's ML support for Python stages: a Pipeline with ImportanceWeighting is fitted, saved
    and loaded by a Connect client, and gives local mode's weights bit for bit."""
    from conftest import write_jsonl

    from dsir_spark.estimators.spark_ml import ImportanceWeighting

    rows = read_jsonl(PILE)
    targets = [{"id": i, "contents": r["contents"]} for i, r in enumerate(read_jsonl(TARGET_C))]
    paths = {"raw": write_jsonl(tmp_path / "raw.jsonl", [{"id": r["id"], "contents": r["contents"]} for r in rows]),
             "target": write_jsonl(tmp_path / "target.jsonl", targets), "saved": str(tmp_path / "pipeline")}
    output = run_connect_client(CONNECT_ML, paths, tmp_path)
    raw = spark.read.json(paths["raw"]).selectExpr("id", "contents as text", "false as is_target")
    target = spark.read.json(paths["target"]).selectExpr("-1 - id as id", "contents as text", "true as is_target")
    local = ImportanceWeighting(labelCol="is_target").fit(raw.unionByName(target)).transform(raw)
    assert output["weights"] == {str(r["id"]): r["dsir_log_weight"] for r in local.collect()}
    assert output["columns"] == ["id", "text", "is_target", "dsir_num_tokens", "dsir_log_weight"]
