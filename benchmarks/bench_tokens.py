"""Selection in the trainer's tokens, and token shards, against a wordpunct budget of the same size.

    python benchmarks/bench_tokens.py [--mb 290] [--cores 2] [--vocab 32000]

On the whole-run benchmark's corpus (bench_scoring.py's text) and target (bench_run.py's C headers):
1. a byte-level BPE tokenizer trained here on the first 20 MB of the corpus (no download);
2. the tokenizer alone, one core (RAYON_RS_NUM_CPUS=1), MB/s of text encoded;
3. ``dsir-spark run`` (report off) with a wordpunct budget of 10% of the corpus's tokens;
4. the resample stage again (``dsir-spark resample``), each on the same scores:
   a. the same number of tokens, counted in the model's tokens;
   b. with JSON Lines shards (zstd), wordpunct budget;
   c. with Megatron token shards, model-token budget;
   each: seconds, documents selected, documents the model tokenizer encoded.
Timings are not tests; compare within one run.
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
from bench_run import build_target  # noqa: E402
from bench_scoring import build_corpus, documents_of  # noqa: E402

EOS = "<|endoftext|>"


def train(corpus: Path, path: Path, vocab: int) -> float:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    def texts():
        read = 0
        with open(corpus, encoding="utf-8") as handle:
            for line in handle:
                text = json.loads(line)["text"]
                read += len(text)
                yield text
                if read > 20_000_000:
                    return

    started = time.time()
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(texts(), trainers.BpeTrainer(
        vocab_size=vocab, special_tokens=[EOS], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer.save(str(path))
    return time.time() - started


_ENCODE_ONE_CORE = """
import json, sys, time
from tokenizers import Tokenizer
tokenizer = Tokenizer.from_file(sys.argv[1])
texts, size = [], 0
with open(sys.argv[2], encoding="utf-8") as handle:
    for line in handle:
        text = json.loads(line)["text"]
        texts.append(text)
        size += len(text.encode("utf-8"))
        if size > 30_000_000:
            break
started = time.time()
tokens = sum(len(e.ids) for e in tokenizer.encode_batch(texts))
print(json.dumps({"mb": size / 1e6, "seconds": time.time() - started, "tokens": tokens}))
"""


def command(args: list[str], cores: int) -> tuple[float, dict]:
    env = {**os.environ, "PYSPARK_SUBMIT_ARGS": f"--master local[{cores}] --driver-memory 4g pyspark-shell"}
    started = time.time()
    out = subprocess.run([sys.executable, "-m", "dsir_spark.cli", *args, "--json"], cwd=ROOT, capture_output=True,
                         text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    lines = [re.match(r"^(\w+): (\{.*\})$", line) for line in out.stdout.splitlines()]
    return time.time() - started, {m.group(1): json.loads(m.group(2)) for m in lines if m}


def record(run_dir: Path, folder: str) -> dict:
    return json.loads(next((run_dir / folder / "_dsir" / "stage.json").glob("part-*")).read_text())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=290)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--vocab", type=int, default=32000)
    args = parser.parse_args()
    corpus, target = build_corpus(args.mb), build_target()
    with tempfile.TemporaryDirectory() as work:
        tokenizer = Path(work) / "tokenizer.json"
        trained = train(corpus, tokenizer, args.vocab)
        alone = json.loads(subprocess.run([sys.executable, "-c", _ENCODE_ONE_CORE, str(tokenizer), str(corpus)],
                                          capture_output=True, text=True, check=True,
                                          env={**os.environ, "RAYON_RS_NUM_CPUS": "1"}).stdout)
        print(f"corpus: {corpus.name} ({corpus.stat().st_size / 1e6:.0f} MB, {documents_of(corpus):,} documents); "
              f"cores: {args.cores}; tokenizer: byte-level BPE, {args.vocab:,} tokens, trained in {trained:.0f} s")
        print(f"tokenizer alone, one core: {alone['mb'] / alone['seconds']:.1f} MB/s "
              f"({alone['tokens'] / alone['seconds'] / 1e6:.2f} M tokens/s)\n")
        run_dir = Path(work) / "run"
        base = {"run_dir": str(run_dir), "raw": {"paths": [str(corpus)]}, "targets": [{"paths": [str(target)]}],
                "report": {"enabled": False}}
        config = Path(work) / "c.yaml"
        config.write_text(json.dumps(base))
        wall, _ = command(["run", "--config", str(config), "--set", "resample.num_to_sample=1"], args.cores)
        raw_tokens = record(run_dir, "counts")["raw"]["tokens"]
        budget = raw_tokens // 10
        print(f"count + fit + score (and a 1-document resample): {wall:.1f} s wall; raw: {raw_tokens:,} wordpunct "
              f"tokens; budget: 10%\n")
        print("| resample | budget (tokens) | seconds (stage) | documents selected | documents tokenized | "
              "tokens selected |")
        print("|---|---|---|---|---|---|")
        tokens = ["--set", f"tokens.tokenizer={tokenizer}", "--set", f"tokens.eos={EOS}"]
        runs = [("wordpunct budget", [], "wordpunct"), ("model-token budget", tokens, "model"),
                ("wordpunct budget, JSON Lines shards", ["--set", "resample.shards.max_file_bytes=268435456",
                                                         "--set", "resample.output_format=json"], "wordpunct"),
                ("model-token budget, Megatron shards", [*tokens, "--set", "resample.shards.format=megatron",
                                                         "--set", "resample.shards.max_tokens=100000000"], "model")]
        for name, extra, unit in runs:  # the same number of tokens, counted by wordpunct or by the model
            _, records = command(["resample", "--config", str(config), "--set", "resample.num_to_sample=null",
                                  "--set", f"resample.num_tokens_to_sample={budget}", *extra], args.cores)
            done = record(run_dir, "selection")
            model = done.get("model_tokens", {})
            print(f"| {name} | {budget:,} {unit} | {records['resample']['seconds']:.1f} | {done['selected']:,} | "
                  f"{model.get('documents_tokenized', 0):,} | {done['tokens_selected']:,} |")


if __name__ == "__main__":
    main()
