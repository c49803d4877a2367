"""The whole run as a user sees it: ``dsir-spark run`` timed from the shell against the reference.

    python benchmarks/bench_run.py [--mb 290] [--cores 2] [--skip-reference]

On the same files, one run each, in this order:
1. the reference (data-selection 1.0.3, ``num_proc`` = cores): fit_importance_estimator('auto') +
   compute_importance_weights + resample of 10% of the documents;
2. ``dsir-spark warm-up`` (the archive of Spark's classes, in a cache of the benchmark's own), timed;
3. ``dsir-spark run`` (local[cores], report on) in sha256 and in xxhash64 mode, starting from that
   archive, and in sha256 mode without one: wall seconds of the whole command (JVM start included),
   each stage's seconds and MB/s per core, and the time outside every stage (wall - the sum of the
   stages);
4. the same command again (every stage skipped);
5. the quick start (``conf/sample.yaml``, the bundled 1,000 documents) without and with the archive:
   wall and each stage's seconds (``--no-extras`` leaves out the run without the archive and this);
6. with ``--second-target``: a second target (Python sources of this machine) added to the sha256
   run's run directory, timed as a user iterating would see it (raw's counts reused);
7. with ``--json-schema`` / ``--inferred-schema``: both hash modes again with raw's columns declared /
   inferred by Spark from every line (the runs above take them from a sample of the first lines).
The corpus is bench_scoring.py's (text that ships on this machine, ~4,000-character documents); the
target is C headers of /usr/include (about 6 MB, one document per file). Timings are not tests.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from bench_scoring import OUT, build_corpus, documents_of  # noqa: E402

from dsir_spark.storage.records import read_json  # noqa: E402

STAGES = ("count", "fit", "score", "resample", "report")
TARGET_MB = 6


def _sources_target(name: str, files) -> Path:
    """Source files of this machine as a target, one document per file, about TARGET_MB megabytes."""
    target = OUT / name
    if target.exists():
        return target
    written = 0
    with open(target.with_suffix(".tmp"), "w", encoding="utf-8") as out:
        for path in files:
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            out.write(json.dumps({"text": text}) + "\n")
            written += len(text)
            if written >= TARGET_MB * 1_000_000:
                break
    target.with_suffix(".tmp").rename(target)
    return target


def build_target() -> Path:
    """C headers of this machine."""
    return _sources_target("target_c_headers.jsonl", sorted(Path("/usr/include").rglob("*.h")))


def build_second_target() -> Path:
    """Python sources of this machine."""
    return _sources_target("target_python_sources.jsonl", sorted(Path(sys.base_prefix, "lib").rglob("*.py")))


def reference_run(corpus: Path, target: Path, cores: int, k: int) -> dict:
    code = f"""
import json, tempfile, time
from data_selection import HashedNgramDSIR
with tempfile.TemporaryDirectory() as cache:
    dsir = HashedNgramDSIR([{str(corpus)!r}], [{str(target)!r}], cache, num_proc={cores})
    started = time.time()
    dsir.fit_importance_estimator(num_tokens_to_fit="auto")
    fitted = time.time()
    dsir.compute_importance_weights()
    scored = time.time()
    dsir.resample(out_dir=cache + "/out", num_to_sample={k}, cache_dir=cache + "/rs")
    done = time.time()
print(json.dumps({{"fit": fitted - started, "weights": scored - fitted, "resample": done - scored,
                   "run": done - started}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def write_config(path: Path, run_dir: Path, corpus: Path, target: Path, hash_mode: str, k: int,
                 second: Path | None = None, schema_kind: str | None = None) -> Path:
    more = f"\n  - paths: [{second}]" if second else ""
    schema = {None: "", "declared": '\n  json_schema: "id BIGINT, text STRING"',
              "inferred": "\n  json_schema: null"}[schema_kind]
    path.write_text(f"""run_dir: {run_dir}
raw:
  paths: [{corpus}]
  id_col: id{schema}
targets:
  - paths: [{target}]{more}
features:
  hash: {hash_mode}
resample:
  num_to_sample: {k}
""")
    return path


def dsir_spark_run(config: Path, cores: int, cache: Path, cwd: Path = ROOT) -> dict:
    """Wall seconds of ``dsir-spark run`` from the shell (class archive from ``cache``, if there is one
    there) and each stage's record."""
    env = {**os.environ, "PYSPARK_SUBMIT_ARGS": f"--master local[{cores}] --driver-memory 4g pyspark-shell",
           "DSIR_SPARK_CACHE": str(cache)}
    started = time.time()
    out = subprocess.run([sys.executable, "-m", "dsir_spark.cli", "run", "--config", str(config), "--json"], cwd=cwd,
                         capture_output=True, text=True, env=env)
    wall = time.time() - started
    if out.returncode != 0:
        raise RuntimeError(f"dsir-spark run failed:\n{out.stderr[-3000:]}")
    stages = {}
    for line in out.stdout.splitlines():
        found = re.match(r"^(\w+): (\{.*\})$", line)
        if found:
            stages[found.group(1)] = json.loads(found.group(2))
    return {"wall": wall, "stages": stages}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=290)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--no-extras", action="store_true")
    parser.add_argument("--second-target", action="store_true")
    parser.add_argument("--json-schema", action="store_true",
                        help="also run both hash modes with raw's JSON schema declared (no inference pass)")
    parser.add_argument("--inferred-schema", action="store_true",
                        help="also run both hash modes with json_schema: null (Spark infers raw's schema from every "
                             "line; the default samples the first lines)")
    args = parser.parse_args()
    corpus, target = build_corpus(args.mb), build_target()
    size_mb, docs = corpus.stat().st_size / 1e6, documents_of(corpus)
    k = docs // 10
    print(f"corpus: {corpus.name} ({size_mb:.0f} MB of JSON Lines, {docs:,} documents); target: {target.name} "
          f"({target.stat().st_size / 1e6:.1f} MB); k = {k:,} (10%); cores: {args.cores}\n")
    reference = None if args.skip_reference else reference_run(corpus, target, args.cores, k)

    print("| run | wall s | x reference | count s | count MB/s/core | fit s | score s | score MB/s/core | "
          "resample s | report s | report share | outside the stages s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    if reference:
        print(f"| reference (num_proc={args.cores}) | {reference['run']:.1f} | 1.00 | {reference['fit']:.1f} | "
              f"{size_mb / reference['fit'] / args.cores:.2f} | - | {reference['weights']:.1f} | "
              f"{size_mb / reference['weights'] / args.cores:.2f} | {reference['resample']:.1f} | - | - | - |")
    skipped = {}
    with tempfile.TemporaryDirectory() as work:
        archived, unarchived = Path(work) / "cache", Path(work) / "no-cache"
        started = time.time()
        subprocess.run([sys.executable, "-m", "dsir_spark.cli", "warm-up"], cwd=ROOT, capture_output=True,
                       check=True, env={**os.environ, "DSIR_SPARK_CACHE": str(archived)})
        warm_up = time.time() - started
        runs = ((("sha256", archived, None), ("xxhash64", archived, None))
                + (() if args.no_extras else (("sha256", unarchived, None),))
                + ((("sha256", archived, "declared"), ("xxhash64", archived, "declared")) if args.json_schema else ())
                + ((("sha256", archived, "inferred"), ("xxhash64", archived, "inferred")) if args.inferred_schema
                   else ()))
        for hash_mode, cache, schema_kind in runs:
            name = (hash_mode + ("" if cache == archived else "-no-archive")
                    + {None: "", "declared": "-json-schema", "inferred": "-inferred-schema"}[schema_kind])
            config = write_config(Path(work) / f"{name}.yaml", Path(work) / name, corpus, target, hash_mode, k,
                                  schema_kind=schema_kind)
            result = dsir_spark_run(config, args.cores, cache)
            seconds = {s: result["stages"].get(s, {}).get("seconds", 0.0) for s in STAGES}
            inside = sum(seconds.values())
            ratio = f"{reference['run'] / result['wall']:.2f}" if reference else "-"
            print(f"| dsir-spark {name} | {result['wall']:.1f} | {ratio} | {seconds['count']:.1f} | "
                  f"{size_mb / seconds['count'] / args.cores:.2f} | {seconds['fit']:.1f} | {seconds['score']:.1f} | "
                  f"{size_mb / seconds['score'] / args.cores:.2f} | {seconds['resample']:.1f} | "
                  f"{seconds['report']:.1f} | {seconds['report'] / result['wall']:.0%} | "
                  f"{result['wall'] - inside:.1f} |")
            skipped[name] = dsir_spark_run(config, args.cores, cache)["wall"]
            if args.second_target and name == "sha256":
                second = write_config(Path(work) / "second.yaml", Path(work) / name, corpus, target, hash_mode, k,
                                      build_second_target())
                iterated = dsir_spark_run(second, args.cores, cache)
                counted = read_json(None, str(Path(work) / name / "counts" / "_dsir" / "stage.json"))
                again = {s: iterated["stages"].get(s, {}).get("seconds", 0.0) for s in STAGES}
                print(f"| + a second target, same run directory | {iterated['wall']:.1f} | - | {again['count']:.1f} "
                      f"({again['count'] / seconds['count']:.0%} of the first; {counted['datasets']}) | - | "
                      f"{again['fit']:.1f} | {again['score']:.1f} | - | {again['resample']:.1f} | "
                      f"{again['report']:.1f} | - | {iterated['wall'] - sum(again.values()):.1f} |")
        print(f"\ndsir-spark warm-up (the class archive): {warm_up:.1f} s, once per Spark and Java installation")
        print("the same command again, every stage skipped: " +
              ", ".join(f"{mode} {wall:.1f} s wall" for mode, wall in skipped.items()))
        for cache, said in () if args.no_extras else ((unarchived, "without the class archive"),
                                                      (archived, "with the class archive")):
            sample = (ROOT / "conf" / "sample.yaml").read_text().replace("run_dir: runs/sample",
                                                                        f"run_dir: {work}/sample-{cache.name}")
            config = Path(work) / f"sample-{cache.name}.yaml"
            config.write_text(sample)
            quick = dsir_spark_run(config, args.cores, cache)
            seconds = {s: quick["stages"].get(s, {}).get("seconds", 0.0) for s in STAGES}
            print(f"quick start (conf/sample.yaml, 1,000 documents), {said}: {quick['wall']:.1f} s wall; stages: " +
                  ", ".join(f"{s} {v:.1f} s" for s, v in seconds.items()) +
                  f"; outside the stages {quick['wall'] - sum(seconds.values()):.1f} s")


if __name__ == "__main__":
    main()
