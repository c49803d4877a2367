"""What a Python worker imports when it unpickles the count and score functions: pandas costs each
worker 1-2 s of CPU at the start of a run's first Python job, and those functions do not need it."""

import subprocess
import sys


def test_the_count_and_score_modules_do_not_import_pandas():
    probe = ("import sys, dsir_spark.counts, dsir_spark.estimator; "
             "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pandas'))")
    found = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert found.strip() == "[]"
