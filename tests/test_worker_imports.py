"""What a Python worker imports when it unpickles the count and score functions: pandas costs each
worker 1-2 s of CPU at the start of a run's first Python job, and those functions do not need it."""

import os
import subprocess
import sys


def test_the_count_and_score_modules_do_not_import_pandas():
    probe = ("import sys, dsir_spark.featurizer.counts, dsir_spark.estimators.base; "
             "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pandas'))")
    found = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert found.strip() == "[]"


# A Python worker of a command-line local session reports where it imported pyspark and py4j from.
_WHERE_WORKERS_IMPORT = """
import os
os.environ.pop("PYSPARK_PYTHON", None)
os.environ["PYSPARK_SUBMIT_ARGS"] = "--master local[1] --conf spark.ui.enabled=false pyspark-shell"
from dsir_spark.runtime.session import session_for_job

def where(batches):
    import pyarrow as pa, py4j, pyspark
    for _ in batches:
        pass
    yield pa.RecordBatch.from_arrays([pa.array([pyspark.__file__]), pa.array([py4j.__file__])], names=["a", "b"])

row = session_for_job("probe").range(1, numPartitions=1).mapInArrow(where, "a string, b string").first()
print(row["a"]); print(row["b"])
"""


def test_local_command_line_workers_import_the_installed_pyspark_not_its_zip():
    import py4j
    import pyspark

    found = subprocess.run([sys.executable, "-c", _WHERE_WORKERS_IMPORT], capture_output=True, text=True, check=True)
    assert found.stdout.split() == [pyspark.__file__, py4j.__file__]


def test_only_the_zips_inside_the_installed_pyspark_are_moved_last(tmp_path):
    import pyspark

    from dsir_spark.runtime.worker_daemon import prefer_installed_pyspark

    lib = os.path.join(os.path.dirname(pyspark.__file__), "python", "lib")
    zips = [os.path.join(lib, name) for name in sorted(os.listdir(lib))]
    rest = [p for p in sys.path if p not in zips]
    assert prefer_installed_pyspark([*zips, *rest]) == [*rest, *zips]
    # A Spark distribution's zip (no package around it) stays first.
    spark_home = tmp_path / "spark-4" / "python" / "lib"
    spark_home.mkdir(parents=True)
    distribution = [str(spark_home / "pyspark.zip"), *rest]
    assert prefer_installed_pyspark(distribution) == distribution
    # So does a packaged pyspark that is not the one the path would then import.
    other = tmp_path / "other-site" / "pyspark"
    (other / "python" / "lib").mkdir(parents=True)
    (other / "__init__.py").write_text("")
    shadowed = [str(other / "python" / "lib" / "pyspark.zip"), *rest]
    assert prefer_installed_pyspark(shadowed) == shadowed
