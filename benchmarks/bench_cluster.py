"""Scoring on a real standalone cluster with one worker and with two: does it scale out?

    python benchmarks/bench_cluster.py [--mb 1000]

A master and workers of one core each (tests/cluster.py, as the slow tests start them) on this
machine. The count and fit stages run once in local mode; then the score stage runs through
spark-submit on the cluster, with one worker and with two (each run --force'd), on bench_scale.py's
corpus. Prints the score stage's seconds and MB/s, and the speed-up. Timings are not tests.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests"))
from bench_run import build_target  # noqa: E402
from bench_scale import generate  # noqa: E402
from bench_scoring import OUT  # noqa: E402
from cluster import StandaloneCluster, package_library, spark_submit  # noqa: E402


def score_on(workers: int, config: Path, tmp: Path) -> float:
    cluster = StandaloneCluster(tmp / f"cluster{workers}", workers=workers).start()
    try:
        log = tmp / f"score{workers}.log"
        job = spark_submit(cluster.url, package_library(tmp), ["score", "--config", str(config)], log,
                           **{"spark.executor.cores": "1", "spark.executor.memory": "1500m"})
        if job.wait(timeout=3600):
            raise SystemExit(f"the score stage failed on {workers} worker(s):\n{log.read_text()[-3000:]}")
        found = re.search(r'^score: (\{.*\})$', log.read_text(), re.M)
        return json.loads(found.group(1))["seconds"]
    finally:
        cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=1000)
    args = parser.parse_args()
    raw = generate(args.mb, f"scale_{args.mb}mb")
    megabytes = json.loads((raw / "_done").read_text())["bytes"] / 1e6
    with tempfile.TemporaryDirectory(dir=OUT) as name:
        tmp = Path(name)
        config = tmp / "run.yaml"
        config.write_text(json.dumps({
            "run_dir": str(tmp / "run"), "raw": {"paths": [str(raw)], "text_col": "text", "id_col": "id"},
            "targets": [{"paths": [str(build_target())], "text_col": "text"}],
            "resample": {"num_to_sample": 1000}, "report": {"enabled": False}}))
        for stage in ("count", "fit"):
            subprocess.run([sys.executable, "-m", "dsir_spark.cli", stage, "--config", str(config)], check=True,
                           cwd=ROOT, capture_output=True)
        seconds = {}
        for workers in (1, 2):
            started = time.time()
            seconds[workers] = score_on(workers, config, tmp)
            print(f"{workers} worker(s): score {seconds[workers]:.1f} s ({megabytes / seconds[workers]:.1f} MB/s), "
                  f"{time.time() - started:.0f} s with the cluster's start", flush=True)
    print("\n| workers (1 core each) | score s | MB/s |\n|---|---|---|")
    for workers, s in seconds.items():
        print(f"| {workers} | {s:.1f} | {megabytes / s:.1f} |")
    print(f"\nspeed-up with two workers: {seconds[1] / seconds[2]:.2f}x ({megabytes:,.0f} MB)")


if __name__ == "__main__":
    main()
