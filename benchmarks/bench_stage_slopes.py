"""The count stage against the score stage per byte: each stage's seconds as a line in raw's size.

    python benchmarks/bench_stage_slopes.py [--mb 290 1200 3500] [--hashes xxhash64 sha256]

For each hash mode and corpus size, one fresh Python process (a fresh JVM, ``local[2]``) runs the count,
fit and score stages, then count and score again, on the same files (raw's schema declared, the fit on
all of raw: both stages featurize every document). Each stage's seconds and, on Linux, the CPU seconds
of the JVM's JIT compiler threads during it. Then, per hash mode, a least-squares line through the sizes
for each pass: its slope is the stage's cost per byte, its intercept what the stage costs whatever the
size (its small jobs; for the first pass, a fresh JVM compiling its hot paths). The corpus and target are
bench_run.py's. Timings are not tests.
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from bench_run import build_target  # noqa: E402
from bench_scoring import build_corpus  # noqa: E402

PASSES = ("count", "fit", "score", "count", "score")
NAMES = ("count (first pass)", "score", "count again", "score again")


def _jvm_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of each kind of thread of process ``pid`` (digits stripped from thread names)."""
    tick, found = os.sysconf("SC_CLK_TCK"), collections.Counter()
    for task in glob.glob(f"/proc/{pid}/task/*"):
        try:
            name = Path(task, "comm").read_text().strip().rstrip("0123456789 #")
            fields = Path(task, "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        found[name] += (int(fields[11]) + int(fields[12])) / tick
    return found


def _session(config_path: str) -> None:
    """The child process: the passes in turn, one JSON line each."""
    import time

    from pyspark.sql import SparkSession

    from dsir_spark.config import load_config
    from dsir_spark.stages.count import count_stage
    from dsir_spark.stages.fit import fit_stage
    from dsir_spark.stages.score import score_stage

    spark = (SparkSession.builder.master("local[2]").config("spark.driver.memory", "4g")
             .config("spark.ui.showConsoleProgress", "false").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    pid = int(spark.sparkContext._jvm.ProcessHandle.current().pid())
    config = load_config(config_path)
    run = {"count": lambda: count_stage(spark, config, force=True, reuse=False),
           "fit": lambda: fit_stage(spark, config, force=True), "score": lambda: score_stage(spark, config, force=True)}
    before = _jvm_cpu(pid)
    for name in PASSES:
        start = time.time()
        run[name]()
        seconds, now = time.time() - start, _jvm_cpu(pid)
        jit = sum(now[k] - before.get(k, 0) for k in now if "CompilerThre" in k)
        before = now
        print(json.dumps({"pass": name, "seconds": round(seconds, 2), "jit_cpu": round(jit, 1)}), flush=True)


def _config(folder: Path, corpus: Path, target: Path, hash_mode: str) -> str:
    config = {"run_dir": str(folder / "run"),
              "raw": {"paths": [str(corpus)], "id_col": "id", "json_schema": "id BIGINT, text STRING"},
              "targets": [{"paths": [str(target)]}], "features": {"hash": hash_mode},
              "fit": {"num_tokens_to_fit": "all"}, "report": {"enabled": False}}
    path = folder / "config.json"
    path.write_text(json.dumps(config))
    return str(path)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, nargs="+", default=[290, 1200, 3500])
    parser.add_argument("--hashes", nargs="+", default=["xxhash64", "sha256"])
    parser.add_argument("--session", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.session:
        return _session(args.session)
    target = build_target()
    corpora = {mb: build_corpus(mb) for mb in args.mb}
    sizes = {mb: corpus.stat().st_size / 1e6 for mb, corpus in corpora.items()}
    print("| hash | raw MB | " + " | ".join(NAMES) + " | JIT compiler CPU in the first pass |")
    print("|---|---|" + "---|" * (len(NAMES) + 1))
    lines: dict[str, dict[str, list[float]]] = {}
    for hash_mode in args.hashes:
        for mb, corpus in corpora.items():
            with tempfile.TemporaryDirectory(prefix="dsir-bench-slopes-") as folder:
                config = _config(Path(folder), corpus, target, hash_mode)
                env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
                out = subprocess.run([sys.executable, __file__, "--session", config], check=True,
                                     capture_output=True, text=True, env=env)
            passes = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
            timed = [p for p in passes if p["pass"] != "fit"]
            for name, p in zip(NAMES, timed):
                lines.setdefault(hash_mode, {}).setdefault(name, []).append(p["seconds"])
            print(f"| {hash_mode} | {sizes[mb]:,.0f} | " + " | ".join(f"{p['seconds']:.1f} s" for p in timed)
                  + f" | {timed[0]['jit_cpu']:.1f} s |", flush=True)
    if len(corpora) < 2:
        return
    print("\n| hash | pass | seconds per GB (slope) | seconds at any size (intercept) |")
    print("|---|---|---|---|")
    megabytes = np.array(list(sizes.values()))
    for hash_mode, passes in lines.items():
        slopes = {}
        for name, seconds in passes.items():
            slope, intercept = np.polyfit(megabytes, np.array(seconds), 1)
            slopes[name] = slope * 1000
            print(f"| {hash_mode} | {name} | {slope * 1000:.2f} | {intercept:.1f} |")
        print(f"| {hash_mode} | count again / score again, per byte | "
              f"{slopes['count again'] / slopes['score again']:.2f}x | |")


if __name__ == "__main__":
    main()
