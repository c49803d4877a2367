"""spark-submit entry point: ``spark-submit jobs/dsir_job.py run --config conf/sample.yaml``.

Thin on purpose: all logic is in the ``dsir_spark`` package (ship it with --py-files or a wheel).
"""

import sys

from dsir_spark.cli import main

if __name__ == "__main__":
    sys.exit(main())
