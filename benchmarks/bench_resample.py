"""Resampling at scale: dsir-spark's exact distributed top-k vs the reference's resample, same weights.

    python benchmarks/bench_resample.py [--docs 2000000] [--cores 2]

Synthetic scores (log weights ~ N(0, 3), lengths 50..400 tokens; 1-line raw documents) for N documents;
k = 1% and 20% of N. Reports seconds and peak memory: the reference runs in this process's child
(RSS of the whole process: it holds every weight in numpy); dsir-spark in local mode, where the
driver is the Python process plus the JVM, whose executors share that JVM (so its RSS includes the
executors' work). Each run is a separate process so peaks do not mix.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).parent / "out"


def make_data(docs: int) -> Path:
    root = OUT / f"resample_{docs}"
    if (root / "done").exists():
        return root
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    weights = rng.normal(0, 3, docs)
    lengths = rng.integers(50, 400, docs)
    # Reference layout: one shard (num_proc=1) of weights and lengths, raw JSON Lines.
    (root / "ref" / "log_importance_weights").mkdir(parents=True, exist_ok=True)
    (root / "ref" / "perexample_metadata").mkdir(parents=True, exist_ok=True)
    np.save(root / "ref" / "log_importance_weights" / "0.npy", weights)
    np.save(root / "ref" / "perexample_metadata" / "0.npy", lengths)
    with open(root / "raw.jsonl", "w") as out:
        for i in range(docs):
            out.write(f'{{"id": {i}, "text": "document {i}"}}\n')
    import pandas as pd

    pd.DataFrame({"id": np.arange(docs), "num_tokens": lengths.astype(np.int32), "log_weight": weights}).to_parquet(
        root / "scores.parquet"
    )
    (root / "done").write_text("ok")
    return root


def own_peak_mb() -> float:
    """This process's peak resident memory (VmHWM). Not ru_maxrss: Linux carries that over from the
    parent at fork, and the parent may have just built the data."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_of(pid: int, stop: threading.Event, peaks: list) -> None:
    peak = 0
    while not stop.is_set():
        try:
            with open(f"/proc/{pid}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        peak = max(peak, int(line.split()[1]))
        except OSError:
            break
        time.sleep(0.05)
    peaks.append(peak)


def run_reference(root: Path, k: int) -> dict:
    from data_selection import HashedNgramDSIR

    with tempfile.TemporaryDirectory() as tmp:
        dsir = HashedNgramDSIR([str(root / "raw.jsonl")], [str(root / "raw.jsonl")], str(root / "ref"), num_proc=1)
        started = time.time()
        dsir.resample(out_dir=f"{tmp}/out", num_to_sample=k, cache_dir=f"{tmp}/cache")
        seconds = time.time() - started
    return {"seconds": seconds, "python_peak_mb": own_peak_mb()}


def run_spark(root: Path, k: int, cores: int) -> dict:
    from pyspark.sql import SparkSession

    from dsir_spark.config import DatasetConfig
    from dsir_spark.selection.resampling import select
    from dsir_spark.stages.resample import write_ids, write_selection
    from dsir_spark.storage.io import json_schemas, read_dataset

    spark = SparkSession.builder.master(f"local[{cores}]").config("spark.ui.enabled", "false").getOrCreate()
    jvm_pid = int(spark.sparkContext._jvm.ProcessHandle.current().pid())  # benchmark only, not the library
    stop, peaks = threading.Event(), []
    watcher = threading.Thread(target=peak_rss_of, args=(jvm_pid, stop, peaks))
    watcher.start()
    raw_config = DatasetConfig(paths=(str(root / "raw.jsonl"),), id_col="id", name="raw")
    # The count stage infers the raw data's JSON schema once per run and stores it; the resample stage
    # reads with it (and trusts the ids, which the score stage checked), so neither is timed here.
    schemas = json_schemas(spark, raw_config)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.time()
        scores = spark.read.parquet(str(root / "scores.parquet"))
        selection, _ = select(scores, ["log_weight"], k, seed=0)
        raw = read_dataset(spark, raw_config, schemas)
        chosen = write_ids(selection, f"{tmp}/selection")
        written = write_selection(chosen, raw, f"{tmp}/selection", f"{tmp}/out", expected=k)
        seconds = time.time() - started
    stop.set()
    watcher.join()
    assert written == k, (written, k)
    return {"seconds": seconds, "python_peak_mb": own_peak_mb(),
            "jvm_peak_mb": peaks[0] / 1024}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=2_000_000)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    root = make_data(args.docs)
    if args.child:
        which, k = args.child[0], int(args.child[1])
        result = run_reference(root, k) if which == "reference" else run_spark(root, k, args.cores)
        print(json.dumps(result))
        return
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    print(f"N = {args.docs:,} scored documents; local[{args.cores}]")
    print("| k | implementation | seconds | driver Python peak MB | JVM peak MB (driver + local executors) |")
    print("|---|---|---|---|---|")
    for fraction in (0.01, 0.20):
        k = int(args.docs * fraction)
        for which in ("reference", "dsir-spark"):
            out = subprocess.run([sys.executable, __file__, "--docs", str(args.docs), "--cores", str(args.cores),
                                  "--child", which, str(k)], capture_output=True, text=True, env=env, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            jvm = f"{r['jvm_peak_mb']:.0f}" if "jvm_peak_mb" in r else "-"
            print(f"| {k:,} ({fraction:.0%}) | {which} | {r['seconds']:.1f} | {r['python_peak_mb']:.0f} | {jvm} |")


if __name__ == "__main__":
    main()
