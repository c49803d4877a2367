"""Count, score and whole-run throughput: the reference (data-selection) vs dsir-spark, same corpus, one run.

    python benchmarks/bench_scoring.py [--mb 200] [--cores 2]

Builds (once) a corpus of real text that ships on this machine: Python source, docs and licence files
of the installed Python and its packages, and Debian's /usr/share/doc. Documents are ~4,000-character
chunks cut at line ends, written as JSON Lines and (the same rows) as Parquet. Then, each measurement
in its own process:
1. the featurizer alone (no Spark), compiled vs pure Python, one core, both hash modes;
2. the reference ``HashedNgramDSIR`` (num_proc = cores): fit_importance_estimator('all') = count,
   compute_importance_weights = score;
3. dsir-spark's count and score stages, both hash modes, JSON Lines and Parquet input, local[cores]
   and local[1];
4. where the score stage's time goes (local[cores], JSON Lines): read and parse, Arrow transfer to
   Python, featurize, write + id check;
5. the whole run: the reference's fit + weights + resample vs ``run_pipeline`` (report off and on),
   selecting 10% of the documents.
Spark timings start once the session is up (JVM start-up is not counted; the reference's imports are
not counted either). Needs the test extras.
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


def parquet_copy(corpus: Path) -> Path:
    """The same rows as Parquet (a folder with a few files, as Spark would write it)."""
    import pyarrow.json as pj
    import pyarrow.parquet as pq

    folder = corpus.with_suffix(".parquet")
    if not folder.exists():
        table = pj.read_json(corpus, read_options=pj.ReadOptions(block_size=64 << 20))
        folder.mkdir()
        rows = table.num_rows
        for part, start in enumerate(range(0, rows, rows // 4 + 1)):
            pq.write_table(table.slice(start, rows // 4 + 1), folder / f"part-{part}.parquet")
    return folder


def texts_of(corpus: Path, megabytes: int) -> list[str]:
    texts, size = [], 0
    with open(corpus, encoding="utf-8") as lines:
        for line in lines:
            text = json.loads(line)["text"]
            texts.append(text)
            size += len(text.encode("utf-8"))
            if size >= megabytes * 1_000_000:
                break
    return texts


# ---------------------------------------------------------------------------------------------- children


def featurizer_alone(corpus: Path) -> dict:
    """MB/s on one core of the featurizer's score path (the work of the score stage's Python worker)."""
    import numpy as np

    from dsir_spark.config import FeatureConfig
    from dsir_spark.featurizer.features import CompiledFeaturizer, Featurizer

    texts = texts_of(corpus, 30)
    size_mb = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    log_diff = np.random.default_rng(0).normal(size=(1, 10000))
    results = {}
    for mode in ("sha256", "xxhash64"):
        for implementation in (CompiledFeaturizer, Featurizer):
            featurizer = implementation(FeatureConfig(hash=mode))
            started = time.process_time()
            for start in range(0, len(texts), 2000):  # Arrow-batch-sized calls
                featurizer.score(texts[start:start + 2000], log_diff)
            results[f"{implementation.name} {mode}"] = size_mb / (time.process_time() - started)
    return results


def reference_stages(corpus: Path, target: Path, cores: int) -> dict:
    from data_selection import HashedNgramDSIR

    with tempfile.TemporaryDirectory() as cache:
        dsir = HashedNgramDSIR([str(corpus)], [str(target)], cache, num_proc=cores)
        started = time.time()
        dsir.fit_importance_estimator(num_tokens_to_fit="all")
        fitted = time.time()
        dsir.compute_importance_weights()
        scored = time.time()
        dsir.resample(out_dir=f"{cache}/out", num_to_sample=documents_of(corpus) // 10, cache_dir=f"{cache}/rs")
        resampled = time.time()
    return {"count": fitted - started, "score": scored - fitted, "resample": resampled - scored,
            "run": resampled - started}


def session(master: str):
    from pyspark.sql import SparkSession

    return (SparkSession.builder.master(master).config("spark.ui.enabled", "false")
            .config("spark.driver.memory", "4g").getOrCreate())


def run_config(run_dir: str, data: Path, target: Path, hash_mode: str, report: bool, k: int = 0):
    from dsir_spark.config import DatasetConfig, FeatureConfig, FitConfig, ReportConfig, ResampleConfig, RunConfig

    return RunConfig(
        run_dir=run_dir,
        raw=DatasetConfig(paths=(str(data),), id_col="id"),
        targets=(DatasetConfig(paths=(str(target),)),),
        features=FeatureConfig(hash=hash_mode),
        fit=FitConfig(num_tokens_to_fit="all"),
        resample=ResampleConfig(num_to_sample=k),
        report=ReportConfig(enabled=report),
    )


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all processes: the JVM and the Python workers):
    user, nice, system, irq and softirq time from /proc/stat."""
    with open("/proc/stat") as stat:
        user, nice, system, _idle, _iowait, irq, softirq = (float(x) for x in stat.readline().split()[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def spark_stages(data: Path, target: Path, master: str, hash_mode: str) -> dict:
    from dsir_spark.pipeline import run_pipeline

    spark = session(master)
    with tempfile.TemporaryDirectory() as run_dir:
        config = run_config(run_dir, data, target, hash_mode, False)
        records = run_pipeline(spark, config, stages=("count", "fit"))
        busy, started = busy_cpu_seconds(), time.time()
        records.update(run_pipeline(spark, config, stages=("score",)))
        busy, wall = busy_cpu_seconds() - busy, time.time() - started
    spark.stop()
    return {"count": records["count"]["seconds"], "score": records["score"]["seconds"],
            "score_cores_busy": busy / wall, "featurizer": records["count"]["featurizer"]}


def spark_run(data: Path, target: Path, master: str, hash_mode: str, report: bool) -> dict:
    from dsir_spark.pipeline import run_pipeline

    spark = session(master)
    with tempfile.TemporaryDirectory() as run_dir:
        started = time.time()
        records = run_pipeline(spark, run_config(run_dir, data, target, hash_mode, report,
                                                 k=documents_of(data) // 10))
        seconds = time.time() - started
    spark.stop()
    return {"run": seconds, **{stage: r.get("seconds", 0.0) for stage, r in records.items()}}


def score_breakdown(data: Path, target: Path, master: str, hash_mode: str) -> dict:
    """Cumulative seconds of ever longer prefixes of the score stage's work, each written to Spark's
    no-op sink, then the stage itself."""
    import pyarrow as pa

    from dsir_spark.estimators.ngram_ratio import DSIRModel
    from dsir_spark.pipeline import run_pipeline
    from dsir_spark.run.directory import open_dataset, stage_dir
    from dsir_spark.storage.io import documents

    spark = session(master)
    results = {}
    with tempfile.TemporaryDirectory() as run_dir:
        config = run_config(run_dir, data, target, hash_mode, False)
        run_pipeline(spark, config, stages=("count", "fit"))
        docs = documents(open_dataset(spark, config, config.raw))
        model = DSIRModel.load(spark, stage_dir(config, "fit"))

        def lengths(batches):  # moves every batch to Python and back, featurizes nothing
            for batch in batches:
                yield pa.RecordBatch.from_arrays([batch.column(0)], names=["id"])

        frames = {
            "read + parse": docs.selectExpr("id", "length(text) AS n"),
            "+ Arrow transfer": docs.mapInArrow(lengths, "id long"),
            "+ featurize": model.transform(docs),
        }
        for name, frame in frames.items():
            started = time.time()
            frame.write.format("noop").mode("overwrite").save()
            results[name] = time.time() - started
        results["+ write Parquet, check ids (the score stage)"] = run_pipeline(
            spark, config, stages=("score",))["score"]["seconds"]
    spark.stop()
    return results


def documents_of(path: Path) -> int:
    if path.is_dir():
        import pyarrow.parquet as pq

        return sum(pq.ParquetFile(p).metadata.num_rows for p in path.glob("*.parquet"))
    return sum(1 for _ in open(path, encoding="utf-8"))


# ---------------------------------------------------------------------------------------------- main


def child(*args: str) -> dict:
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(args)], capture_output=True, text=True,
                         env=env)
    if out.returncode != 0:
        raise RuntimeError(f"benchmark child {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    corpus = build_corpus(args.mb)
    parquet = parquet_copy(corpus)
    # The target: the reference's toy target (a C source file), with its text under "text".
    toy = Path(__file__).parent.parent / "tests" / "data" / "toy_target_data.jsonl"
    target = OUT / "target.jsonl"
    target.write_text("".join(json.dumps({"text": json.loads(line)["contents"]}) + "\n"
                              for line in toy.read_text().splitlines() if line.strip()))
    inputs = {"jsonl": corpus, "parquet": parquet}
    if args.child:
        kind, *rest = json.loads(args.child)
        if kind == "featurizer":
            result = featurizer_alone(corpus)
        elif kind == "reference":
            result = reference_stages(corpus, target, args.cores)
        elif kind == "stages":
            result = spark_stages(inputs[rest[2]], target, rest[0], rest[1])
        elif kind == "run":
            result = spark_run(corpus, target, rest[0], rest[1], rest[2] == "report")
        else:
            result = score_breakdown(corpus, target, rest[0], rest[1])
        print(json.dumps(result))
        return

    cores, master = args.cores, f"local[{args.cores}]"
    size_mb = corpus.stat().st_size / 1e6
    docs = documents_of(corpus)
    print(f"corpus: {corpus.name} ({size_mb:.0f} MB of JSON Lines, {docs:,} documents; the same rows as "
          f"Parquet); cores: {cores}\n")

    alone = child("featurizer")
    print("featurizer alone (no Spark), one core, 30 MB of the corpus:\n")
    print("| hash | compiled MB/s | pure Python MB/s | compiled / Python |\n|---|---|---|---|")
    for mode in ("sha256", "xxhash64"):
        fast, slow = alone[f"compiled {mode}"], alone[f"python {mode}"]
        print(f"| {mode} | {fast:.1f} | {slow:.1f} | {fast / slow:.1f}x |")

    reference = child("reference")
    stages = {}
    for hash_mode in ("sha256", "xxhash64"):
        for fmt in ("jsonl", "parquet"):
            for n in sorted({cores, 1}, reverse=True):
                if fmt == "parquet" and n != cores:
                    continue
                stages[(hash_mode, fmt, n)] = child("stages", f"local[{n}]", hash_mode, fmt)
    print("\ncount and score stages (MB of the JSON Lines corpus per second per core):\n")
    print("| stage | implementation | input | cores | seconds | MB/s per core | x reference (per core) |")
    print("|---|---|---|---|---|---|---|")
    for stage in ("count", "score"):
        ref_rate = size_mb / reference[stage] / cores
        print(f"| {stage} | reference (num_proc={cores}) | jsonl | {cores} | {reference[stage]:.1f} | "
              f"{ref_rate:.2f} | 1.00 |")
        for (hash_mode, fmt, n), timings in stages.items():
            rate = size_mb / timings[stage] / n
            print(f"| {stage} | dsir-spark {hash_mode} | {fmt} | {n} | {timings[stage]:.1f} | {rate:.2f} | "
                  f"{rate / ref_rate:.2f} |")
    print(f"\nscore stage, local[1] -> local[{cores}] (JSON Lines); cores busy = the machine's busy CPU seconds "
          "while the score stage ran / the wall seconds it took (JVM and Python workers together):\n")
    print("| hash | local[1] s | cores busy | local[2] s | cores busy | speed-up |\n|---|---|---|---|---|---|")
    for hash_mode in ("sha256", "xxhash64"):
        one, many = stages[(hash_mode, "jsonl", 1)], stages[(hash_mode, "jsonl", cores)]
        print(f"| {hash_mode} | {one['score']:.1f} | {one['score_cores_busy']:.2f} | {many['score']:.1f} | "
              f"{many['score_cores_busy']:.2f} | {one['score'] / many['score']:.2f}x |")

    print(f"\nwhere the score stage's time goes ({master}, JSON Lines; cumulative seconds):\n")
    print("| step | sha256 s | xxhash64 s |\n|---|---|---|")
    parts = {mode: child("breakdown", master, mode) for mode in ("sha256", "xxhash64")}
    for step in parts["sha256"]:
        print(f"| {step} | {parts['sha256'][step]:.1f} | {parts['xxhash64'][step]:.1f} |")

    print(f"\nthe whole run, selecting {docs // 10:,} documents ({master}; reference num_proc={cores}):\n")
    print("| implementation | report | seconds | count | fit | score | resample | report s | x reference |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| reference | - | {reference['run']:.1f} | {reference['count']:.1f} | - | {reference['score']:.1f} | "
          f"{reference['resample']:.1f} | - | 1.00 |")
    for hash_mode in ("sha256", "xxhash64"):
        for report in ("off", "report"):
            r = child("run", master, hash_mode, report)
            print(f"| dsir-spark {hash_mode} | {'on' if report == 'report' else 'off'} | {r['run']:.1f} | "
                  f"{r['count']:.1f} | {r['fit']:.1f} | {r['score']:.1f} | {r['resample']:.1f} | "
                  f"{r.get('report', 0.0):.1f} | {reference['run'] / r['run']:.2f} |")


if __name__ == "__main__":
    main()
