"""How a whole run grows: the same pipeline at several corpus sizes and file counts, with memory.

    python benchmarks/bench_scale.py --sizes 300 1000 4000 [--tiny-files 1000 20000 100000]
                                     [--target-mb 1000] [--cores 2]

The corpus generator scales real text without making it trivial: the documents of bench_scoring.py's
corpus (text that ships on this machine), copied with new ids, each copy's documents perturbed with
their own seed (lines shuffled, about 1 token in 50 replaced by another token of the same document),
so n-gram statistics stay those of real text while no copy repeats another. Written as JSON Lines in
files of about 128 MB; ``--tiny-files N`` writes N files of 2 documents each.

Each configuration is one ``dsir-spark run`` (local[cores], report on, k = 1% of the documents) from
the shell, in its own process tree, sampled every 0.5 s from /proc: the peak RSS of the driver's
Python, of the JVM (driver and local executors), and of the largest Python worker. Prints a Markdown
table per measurement: seconds and MB/s per core of each stage, the seconds before the first stage
starts (session, plan, listing), and the peaks. Timings are not tests.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from bench_run import build_target  # noqa: E402
from bench_scoring import OUT, build_corpus  # noqa: E402

STAGES = ("count", "fit", "score", "resample", "report")
FILE_BYTES = 128_000_000
_WORD = re.compile(r"\w+")


def perturbed(text: str, rng: random.Random) -> str:
    """The text's lines shuffled and about 1 token in 50 replaced by another token of the same text."""
    lines = text.splitlines(keepends=True)
    rng.shuffle(lines)
    shuffled = "".join(lines)
    words = _WORD.findall(shuffled)
    if not words:
        return shuffled
    return _WORD.sub(lambda m: rng.choice(words) if rng.random() < 0.02 else m.group(0), shuffled)


def base_documents() -> list[str]:
    with open(build_corpus(290), encoding="utf-8") as handle:
        return [json.loads(line)["text"] for line in handle]


def generate(megabytes: int, name: str, docs_per_file: int | None = None, files: int | None = None) -> Path:
    """A folder of JSON Lines files holding about ``megabytes`` MB (or ``files`` files of
    ``docs_per_file`` documents); copy 0 is the base corpus itself."""
    folder = OUT / name
    if (folder / "_done").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    base = base_documents()
    written, doc_id, part, handle, in_file = 0, 0, 0, None, 0
    wanted_docs = files * docs_per_file if files else None
    copy = 0
    while (wanted_docs is None and written < megabytes * 1_000_000) or (wanted_docs and doc_id < wanted_docs):
        for index, text in enumerate(base):
            if (wanted_docs is None and written >= megabytes * 1_000_000) or (wanted_docs and doc_id >= wanted_docs):
                break
            if copy:
                text = perturbed(text, random.Random(copy * 1_000_003 + index))
            line = json.dumps({"id": doc_id, "text": text, "copy": copy}) + "\n"
            full = in_file >= docs_per_file if docs_per_file else in_file >= FILE_BYTES
            if handle is None or full:
                if handle is not None:
                    handle.close()
                handle, in_file, part = open(folder / f"part-{part:06d}.jsonl", "w", encoding="utf-8"), 0, part + 1
            handle.write(line)
            in_file += 1 if docs_per_file else len(line)
            written += len(line)
            doc_id += 1
        copy += 1
    handle.close()
    (folder / "_done").write_text(json.dumps({"documents": doc_id, "bytes": written, "files": part}))
    return folder


# ---------------------------------------------------------------------------------------------- memory


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree.setdefault(parent, []).append(int(entry))
    return tree


def _rss_mb(pid: int) -> tuple[str, float]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmd:
            command = cmd.read().replace(b"\0", b" ").decode(errors="replace")
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return command, int(line.split()[1]) / 1024
    except OSError:
        pass
    return "", 0.0


class Sampler(threading.Thread):
    """Peak RSS of the driver's Python, the JVM and the largest Python worker of a process tree."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root, self.stop, self.peaks = root, threading.Event(), {"driver": 0.0, "jvm": 0.0, "worker": 0.0}

    def run(self) -> None:
        while not self.stop.wait(0.5):
            tree, pending = _children(), [self.root]
            while pending:
                pid = pending.pop()
                pending += tree.get(pid, [])
                command, rss = _rss_mb(pid)
                kind = ("jvm" if "java" in command else "worker" if "pyspark" in command or "daemon" in command
                        else "driver" if pid == self.root else None)
                if kind:
                    self.peaks[kind] = max(self.peaks[kind], rss)


# ---------------------------------------------------------------------------------------------- runs


def run(raw: Path, target: Path, cores: int, label: str, driver_memory: str = "4g") -> dict:
    info = json.loads((raw / "_done").read_text())
    k = max(1, info["documents"] // 100)
    with tempfile.TemporaryDirectory(dir=OUT) as tmp:
        config = Path(tmp) / "run.yaml"
        config.write_text(json.dumps({
            "run_dir": f"{tmp}/run", "raw": {"paths": [str(raw)], "text_col": "text", "id_col": "id"},
            "targets": [{"paths": [str(target)], "text_col": "text"}],
            "resample": {"num_to_sample": k}, "report": {"enabled": True, "label_col": "copy"}}))
        env = {**os.environ,
               "PYSPARK_SUBMIT_ARGS": f"--master local[{cores}] --driver-memory {driver_memory} pyspark-shell"}
        started = time.time()
        proc = subprocess.Popen([sys.executable, "-m", "dsir_spark.cli", "run", "--config", str(config), "--json"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        sampler = Sampler(proc.pid)
        sampler.start()
        out, err = proc.communicate()
        wall = time.time() - started
        sampler.stop.set()
        if proc.returncode:
            raise SystemExit(f"{label}: run failed\n{err[-3000:]}")
        seconds = {line.split(":")[0]: json.loads(line.split(": ", 1)[1])["seconds"]
                   for line in out.splitlines() if line.split(":")[0] in STAGES}
        first = re.search(r"^(\S+ \S+),(\d+) INFO dsir_spark: stage count: started", err, re.M)
    before = (time.mktime(time.strptime(first.group(1), "%Y-%m-%d %H:%M:%S")) + int(first.group(2)) / 1000
              - started) if first else float("nan")
    return {"label": label, "mb": info["bytes"] / 1e6, "files": info["files"], "documents": info["documents"],
            "wall": wall, "seconds": seconds, "peaks": sampler.peaks, "cores": cores, "before_first_stage": before}


def print_table(results: list[dict]) -> None:
    print("| input | MB | files | wall s | "
          + " | ".join(f"{s} s (MB/s/core)" if s in ("count", "score") else f"{s} s" for s in STAGES)
          + " | before count s | outside stages s | driver Python MB | JVM MB | largest worker MB |")
    print("|" + "---|" * (9 + len(STAGES)))
    for r in results:
        cells = []
        for stage in STAGES:
            s = r["seconds"].get(stage, 0.0)
            rate = f" ({r['mb'] / s / r['cores']:.1f})" if s and stage in ("count", "score") else ""
            cells.append(f"{s:.1f}{rate}")
        outside = r["wall"] - sum(r["seconds"].values())
        p = r["peaks"]
        print(f"| {r['label']} | {r['mb']:,.0f} | {r['files']:,} | {r['wall']:.1f} | " + " | ".join(cells)
              + f" | {r['before_first_stage']:.1f} | {outside:.1f} | {p['driver']:.0f} | {p['jvm']:.0f} | "
              f"{p['worker']:.0f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="*", default=[300, 1000, 4000], help="MB of raw JSON Lines")
    parser.add_argument("--tiny-files", type=int, nargs="*", default=[], help="raw as N files of 2 documents")
    parser.add_argument("--target-mb", type=int, default=0, help="also a run with a generated target this large")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--driver-memory", default="4g", help="local mode: the JVM's heap (driver and executors)")
    args = parser.parse_args()
    target = build_target()
    results = []
    for size in args.sizes:
        label = f"{size} MB" + (f", driver {args.driver_memory}" if args.driver_memory != "4g" else "")
        results.append(run(generate(size, f"scale_{size}mb"), target, args.cores, label, args.driver_memory))
        print_table(results[-1:])
    for files in args.tiny_files:
        raw = generate(0, f"tiny_{files}", docs_per_file=2, files=files)
        results.append(run(raw, target, args.cores, f"{files:,} files x 2 docs"))
        print_table(results[-1:])
        if files >= 20_000:  # the same rows in one file, for the ratio
            single = OUT / f"tiny_{files}_one_file"
            if not (single / "_done").exists():
                single.mkdir(parents=True, exist_ok=True)
                with open(single / "part-000000.jsonl", "w") as out:
                    for part in sorted(raw.glob("part-*.jsonl")):
                        out.write(part.read_text())
                info = json.loads((raw / "_done").read_text())
                (single / "_done").write_text(json.dumps({**info, "files": 1}))
            results.append(run(single, target, args.cores, f"the same {files * 2:,} docs in 1 file"))
            print_table(results[-1:])
    if args.target_mb:
        big_target = generate(args.target_mb, f"target_{args.target_mb}mb")
        label = f"300 MB raw, {args.target_mb} MB target"
        results.append(run(generate(300, "scale_300mb"), big_target, args.cores, label))
        print_table(results[-1:])
    print("\nall:")
    print_table(results)


if __name__ == "__main__":
    main()
