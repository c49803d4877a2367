"""Count and score throughput: the reference (data-selection) vs dsir-spark, on the same corpus, in one run.

    python benchmarks/bench_scoring.py [--mb 200] [--cores 2]

Builds (once) a corpus of real text that ships on this machine: Python source, docs and licence files
of the installed Python and its packages, and Debian's /usr/share/doc. Documents are ~4,000-character
chunks cut at line ends. Then it runs, each on the same JSON Lines file:
- the reference ``HashedNgramDSIR`` (num_proc = cores): fit_importance_estimator('all') and
  compute_importance_weights;
- dsir-spark in local[cores] and local[1], both hash modes: the count and score stages
  (each in its own process, as spark-submit would run it).
It prints documents/s, MB/s per core and dsir-spark / reference ratios per stage. Needs the test extras.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

OUT = Path(__file__).parent / "out"
SUFFIXES = (".py", ".txt", ".rst", ".md", ".html")


def source_files():
    roots = [Path(sysconfig.get_paths()["stdlib"]), Path(sysconfig.get_paths()["purelib"]), Path("/usr/share/doc")]
    for root in roots:
        if root.exists():
            for path in sorted(root.rglob("*")):
                if path.is_file() and (path.suffix in SUFFIXES or path.name.endswith(".gz")):
                    yield path


def read_text(path: Path) -> str:
    try:
        data = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
        return data.decode("utf-8")
    except (OSError, UnicodeDecodeError, EOFError, gzip.BadGzipFile):
        return ""


def build_corpus(megabytes: int) -> Path:
    corpus = OUT / f"corpus_{megabytes}mb.jsonl"
    if corpus.exists():
        return corpus
    OUT.mkdir(parents=True, exist_ok=True)
    written, doc_id = 0, 0
    with open(corpus.with_suffix(".tmp"), "w", encoding="utf-8") as out:
        while written < megabytes * 1_000_000:  # repeat the sources if one pass is not enough
            for path in source_files():
                text = read_text(path)
                chunk = []
                size = 0
                for line in text.splitlines(keepends=True):
                    chunk.append(line)
                    size += len(line)
                    if size >= 4000:
                        out.write(json.dumps({"id": doc_id, "text": "".join(chunk)}) + "\n")
                        written += size
                        doc_id += 1
                        chunk, size = [], 0
                if written >= megabytes * 1_000_000:
                    break
    corpus.with_suffix(".tmp").rename(corpus)
    return corpus


def run_reference(corpus: Path, target: Path, cores: int) -> dict:
    from data_selection import HashedNgramDSIR

    with tempfile.TemporaryDirectory() as cache:
        dsir = HashedNgramDSIR([str(corpus)], [str(target)], cache, num_proc=cores)
        started = time.time()
        dsir.fit_importance_estimator(num_tokens_to_fit="all")
        fitted = time.time()
        dsir.compute_importance_weights()
        scored = time.time()
    return {"count": fitted - started, "score": scored - fitted}


def run_spark(corpus: Path, target: Path, master: str, hash_mode: str) -> dict:
    """Runs in a child process: one SparkSession per master."""
    from pyspark.sql import SparkSession

    from dsir_spark.config import DatasetConfig, FeatureConfig, FitConfig, RunConfig
    from dsir_spark.stages.count import count_stage
    from dsir_spark.stages.fit import fit_stage
    from dsir_spark.stages.score import score_stage

    spark = (SparkSession.builder.master(master).config("spark.ui.enabled", "false")
             .config("spark.driver.memory", "4g").getOrCreate())
    with tempfile.TemporaryDirectory() as run_dir:
        config = RunConfig(
            run_dir=run_dir,
            raw=DatasetConfig(paths=(str(corpus),), id_col="id"),
            targets=(DatasetConfig(paths=(str(target),)),),
            features=FeatureConfig(hash=hash_mode),
            fit=FitConfig(num_tokens_to_fit="all"),
        )
        count = count_stage(spark, config)["seconds"]
        fit_stage(spark, config)
        score = score_stage(spark, config)["seconds"]
    spark.stop()
    return {"count": count, "score": score}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--child", nargs=2, metavar=("MASTER", "HASH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    corpus = build_corpus(args.mb)
    # The target: the reference's toy target (a C source file), with its text under "text".
    toy = Path(__file__).parent.parent / "tests" / "data" / "toy_target_data.jsonl"
    target = OUT / "target.jsonl"
    target.write_text("".join(json.dumps({"text": json.loads(line)["contents"]}) + "\n"
                              for line in toy.read_text().splitlines() if line.strip()))
    if args.child:
        print(json.dumps(run_spark(corpus, target, *args.child)))
        return

    size_mb = corpus.stat().st_size / 1e6
    docs = sum(1 for _ in open(corpus, encoding="utf-8"))
    print(f"corpus: {corpus} ({size_mb:.0f} MB of JSON Lines, {docs:,} documents); cores: {args.cores}")
    results = {("reference", args.cores): run_reference(corpus, target, args.cores)}
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    for hash_mode in ("sha256", "xxhash64"):
        for cores in sorted({args.cores, 1}, reverse=True):
            out = subprocess.run([sys.executable, __file__, "--mb", str(args.mb), "--child", f"local[{cores}]",
                                  hash_mode], capture_output=True, text=True, env=env, check=True)
            results[(f"dsir-spark {hash_mode}", cores)] = json.loads(out.stdout.strip().splitlines()[-1])

    reference = results[("reference", args.cores)]
    print("\n| stage | implementation | cores | seconds | docs/s | MB/s per core | x reference (per core) |")
    print("|---|---|---|---|---|---|---|")
    for stage in ("count", "score"):
        ref_rate = size_mb / reference[stage] / args.cores
        for (name, cores), timings in results.items():
            seconds = timings[stage]
            rate = size_mb / seconds / cores
            print(f"| {stage} | {name} | {cores} | {seconds:.1f} | {docs / seconds:,.0f} | {rate:.2f} | "
                  f"{rate / ref_rate:.2f} |")
    print(f"\nscaling local[1] -> local[{args.cores}] (speed-up):")
    for hash_mode in ("sha256", "xxhash64"):
        one, many = results[(f"dsir-spark {hash_mode}", 1)], results[(f"dsir-spark {hash_mode}", args.cores)]
        print(f"  {hash_mode}: count {one['count'] / many['count']:.2f}x, score {one['score'] / many['score']:.2f}x")


if __name__ == "__main__":
    main()
