"""Selection quality: length corrections and chunking against the reference's selection and a random one.

    python benchmarks/bench_selection.py [--corpus pile|system|cjk|all] [--fraction 0.1] [--regularization 0.01]

Two labeled corpora of real text, one domain split in two: a held-out part is the target, the rest stays
in the raw corpus among the other domains. A good selection holds much of that domain.
- pile: the bundled 1,000 Pile documents (tests/data), labels = pile_set_name; target = half of a domain.
- system: text files of this machine, labels = their kind (Python stdlib modules, C headers from
  /usr/include, man pages, Debian copyright files); target = 100 C headers held out.
For each setting: the target domain's share of the selected documents (and tokens), the KL reduction
(the report's), and selected vs eligible raw median length in tokens. Settings: dsir-spark with
length_correction none / poisson / mean and with chunking of 128 tokens; the reference package's own
resample (data-selection 1.0.3, same data, same k); a seeded uniform random selection of eligible ones.
"""

from __future__ import annotations

import argparse
import glob
import gzip
import json
import os
import random
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = Path(__file__).parent / "out" / "selection"


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    return str(path)


def pile_corpus(domain: str) -> tuple[list[dict], list[dict]]:
    rows = [json.loads(line) for line in open(ROOT / "tests/data/toy_pile_data.jsonl", encoding="utf-8")]
    docs = [{"id": r["id"], "text": r["contents"], "label": r["metadata"]["pile_set_name"]} for r in rows]
    held = [d for d in docs if d["label"] == domain][::2]
    held_ids = {d["id"] for d in held}
    return [d for d in docs if d["id"] not in held_ids], held


def _read(path: str) -> str:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
        return handle.read()[:200_000]


def system_corpus(per_domain: int = 600, held_out: int = 100, in_raw: int = 600) -> tuple[list[dict], list[dict]]:
    """Four kinds of text file of this machine, ``per_domain`` each; ``held_out`` C headers are the target
    and ``in_raw`` others stay in raw."""
    import sysconfig

    stdlib = sysconfig.get_paths()["stdlib"]
    sources = {
        "python": sorted(glob.glob(f"{stdlib}/**/*.py", recursive=True)),
        "c_header": sorted(glob.glob("/usr/include/**/*.h", recursive=True)),
        "man_page": sorted(glob.glob("/usr/share/man/man*/*.gz")),
        "copyright": sorted(glob.glob("/usr/share/doc/*/copyright")),
    }
    rng = random.Random(0)
    docs, held = [], []
    for label, paths in sources.items():
        rng.shuffle(paths)
        texts = [t for t in (_read(p) for p in paths[: per_domain + held_out]) if t.strip()]
        keep = per_domain
        if label == "c_header":
            held += [{"id": f"{label}/{i}", "text": t, "label": label} for i, t in enumerate(texts[:held_out])]
            texts, keep = texts[held_out:], in_raw
        docs += [{"id": f"{label}/{i + held_out}", "text": t, "label": label} for i, t in enumerate(texts[:keep])]
    return docs, held


RUST_BY_EXAMPLE = "~/.rustup/toolchains/*/share/doc/rust/html/rust-by-example"


def cjk_corpus() -> tuple[list[dict], list[dict]] | None:
    """Rust by Example as rustup installs it, in English, Spanish, Japanese and Korean (about 200 pages
    each: the text of each page's <main>, tags removed); half of the Japanese pages are the target, the
    other half stay in raw. None where rustup's documentation is not installed."""
    import html
    import re

    books = sorted(glob.glob(os.path.expanduser(RUST_BY_EXAMPLE)))
    if not books:
        return None
    docs = []
    for language, folder in (("en", books[0]), ("es", f"{books[0]}/es"), ("ja", f"{books[0]}/ja"),
                             ("ko", f"{books[0]}/ko")):
        pages = sorted(glob.glob(f"{folder}/*.html") + glob.glob(f"{folder}/*/*.html"))
        if language == "en":  # the English book is the top folder: leave the translations out
            pages = [p for p in pages if not re.search(r"/(es|ja|ko|zh)/", p[len(folder):] + "/")]
        for page in pages:
            main = re.search(r"<main>(.*?)</main>", open(page, encoding="utf-8").read(), re.S)
            text = html.unescape(re.sub(r"[ \t]+", " ", re.sub(r"<[^>]+>", " ", main.group(1)))).strip() if main else ""
            if text:
                docs.append({"id": f"{language}/{os.path.relpath(page, folder)}", "text": text, "label": language})
    target = [d for d in docs if d["label"] == "ja"][::2]
    held = {d["id"] for d in target}
    return [d for d in docs if d["id"] not in held], target


def reference_selection(raw: str, target: str, k: int, work: Path, min_length: int = 100) -> list[dict]:
    from data_selection import HashedNgramDSIR

    parse = lambda ex: ex["text"]  # noqa: E731
    dsir = HashedNgramDSIR([raw], [target], str(work / "cache"), raw_parse_example_fn=parse,
                           target_parse_example_fn=parse, num_proc=1, min_example_length=min_length)
    dsir.fit_importance_estimator(num_tokens_to_fit="all")
    dsir.compute_importance_weights()
    dsir.resample(out_dir=str(work / "out"), num_to_sample=k)
    return [json.loads(line) for path in sorted((work / "out").glob("*.jsonl")) for line in open(path)]


SETTINGS = ("none", "poisson", "mean", "chunks128", "logistic", "logistic poisson")


def measure(corpus: str, docs: list[dict], held: list[dict], domain: str, fraction: float,
            tokenizer: str = "wordpunct", regularization: float = 1e-2, wanted=SETTINGS,
            reference: bool = True, min_length: int = 100) -> list[dict]:
    from pyspark.sql import SparkSession

    from dsir_spark.config import (
        ChunkingConfig,
        DatasetConfig,
        FitConfig,
        ReportConfig,
        ResampleConfig,
        RunConfig,
        ScoreConfig,
    )
    from dsir_spark.featurizer.features import FeatureConfig, make_featurizer, tokenize
    from dsir_spark.pipeline import run_pipeline
    from dsir_spark.run.directory import counts_path
    from dsir_spark.selection.evaluation import kl_reduction

    spark = SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false").getOrCreate()
    work = Path(tempfile.mkdtemp(dir=OUT))
    raw_path = write_jsonl(work / "raw.jsonl", docs)
    target_path = write_jsonl(work / "target.jsonl", held)
    lengths = {d["id"]: len(tokenize(d["text"], tokenizer)) for d in docs}
    eligible = [d for d in docs if lengths[d["id"]] >= min_length]
    k = int(fraction * len(eligible))
    label_of = {d["id"]: d["label"] for d in docs}
    featurizer = make_featurizer(FeatureConfig(tokenizer=tokenizer))

    def kl_of(texts: list[str], config: RunConfig) -> float:
        from dsir_spark.run.directory import load_counts
        counts = np.zeros((1, 10000), dtype=np.int64)
        featurizer.count(texts, np.zeros(len(texts), dtype=np.int64), counts)
        raw_counts = load_counts(spark, counts_path(config, config.raw), 10000)
        target = load_counts(spark, counts_path(config, config.targets[0]), 10000)
        return kl_reduction([target.probabilities()], raw_counts.probabilities(), [counts[0] / counts[0].sum()])

    def row(name: str, selected: list[dict], config: RunConfig, text_key: str = "text") -> dict:
        texts = [s[text_key] for s in selected]
        tokens = [len(tokenize(t, tokenizer)) for t in texts]
        in_domain = [label_of[s.get("dsir_doc_id", s["id"])] == domain for s in selected]
        domain_tokens = sum(t for t, d in zip(tokens, in_domain) if d)
        return {"corpus": corpus, "setting": name, "k": len(selected), "domain_share": float(np.mean(in_domain)),
                "domain_token_share": domain_tokens / max(1, sum(tokens)), "kl_reduction": kl_of(texts, config),
                "median_tokens": float(np.median(tokens)),
                "eligible_median_tokens": float(np.median([lengths[d["id"]] for d in eligible]))}

    def config_for(name: str, **sections) -> RunConfig:
        sections.setdefault("fit", FitConfig(num_tokens_to_fit="all"))
        return RunConfig(run_dir=str(work / name), raw=DatasetConfig(paths=(raw_path,), id_col="id"),
                         targets=(DatasetConfig(paths=(target_path,)),),
                         resample=ResampleConfig(num_to_sample=k, seed=0, output_format="json",
                                                 min_example_length=min_length),
                         report=ReportConfig(enabled=False), **sections)

    def ranking(config: RunConfig) -> dict:
        """ROC AUC of the selection's weight column for the target domain over the eligible raw documents,
        and the domain's share of the k highest weights (precision at k)."""
        from dsir_spark.columns import LOG_WEIGHT
        from dsir_spark.estimators.classifier import roc_auc
        from dsir_spark.run.directory import stage_dir

        correction = config.score.length_correction
        column = LOG_WEIGHT if correction == "none" else f"{LOG_WEIGHT}_{correction}"
        scores = spark.read.parquet(stage_dir(config, "score")).where(f"num_tokens >= {min_length}").toPandas()
        if "dsir_doc_id" in scores:  # chunks: a document ranks by its best chunk
            scores = scores.groupby("dsir_doc_id", as_index=False)[column].max().rename(columns={"dsir_doc_id": "id"})
        labels = np.array([label_of[i] == domain for i in scores["id"]], dtype=float)
        weights = scores[column].to_numpy()
        top = np.argsort(-weights, kind="stable")[:k]
        return {"auc": roc_auc(labels, weights), "precision_at_k": float(labels[top].mean())}

    results = []
    features = FeatureConfig(tokenizer=tokenizer)
    logistic = FitConfig(num_tokens_to_fit="all", estimator="logistic", regularization=regularization)
    settings = {"none": {}, "poisson": {"score": ScoreConfig(length_correction="poisson")},
                "mean": {"score": ScoreConfig(length_correction="mean")},
                "chunks128": {"chunking": ChunkingConfig(tokens=128)},
                "logistic": {"fit": logistic},
                "logistic poisson": {"fit": logistic, "score": ScoreConfig(length_correction="poisson")}}
    base = None
    for name, sections in settings.items():
        if name not in wanted:
            continue
        config = config_for(name.replace(" ", "_"), features=features, **sections)
        run_pipeline(spark, config)
        selected = [json.loads(line) for path in sorted((Path(config.run_dir) / "output").glob("*.json"))
                    for line in open(path)]
        label = f"dsir-spark {name}" + ("" if tokenizer == "wordpunct" else f" ({tokenizer})")
        results.append({**row(label, selected, config), **ranking(config)})
        base = base or config
    if reference:
        results.append(row("reference (data-selection)",
                           reference_selection(raw_path, target_path, k, work / "ref", min_length), base))
    rng = random.Random(0)
    results.append(row("random", rng.sample(eligible, k), base))
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--corpus", choices=["pile", "system", "cjk", "all"], default="all")
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--regularization", type=float, default=1e-2, help="fit.regularization of the logistic rows")
    parser.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated, of {SETTINGS}")
    args = parser.parse_args()
    wanted = args.settings.split(",")
    options = {"regularization": args.regularization, "wanted": wanted}
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    OUT.mkdir(parents=True, exist_ok=True)
    results = []
    if args.corpus in ("pile", "all"):
        for domain in ("Github", "PubMed Central"):
            raw, held = pile_corpus(domain)
            results += measure(f"pile/{domain}", raw, held, domain, args.fraction, **options)
    if args.corpus in ("system", "all"):
        raw, held = system_corpus()
        results += measure("system/c_header", raw, held, "c_header", args.fraction, **options)
        raw, held = system_corpus(in_raw=50)  # the target's domain 2% of raw: a harder ranking
        results += measure("system/c_header 2%", raw, held, "c_header", args.fraction, **options)
    corpus = cjk_corpus() if args.corpus in ("cjk", "all") else None
    if corpus:  # Japanese pages among English, Spanish and Korean ones: what each tokenizer selects
        raw, held = corpus
        cjk = {**options, "min_length": 20, "wanted": [w for w in wanted if w in ("none", "logistic")]}
        results += measure("rust-by-example/ja", raw, held, "ja", args.fraction, **cjk)
        results += measure("rust-by-example/ja", raw, held, "ja", args.fraction, tokenizer="wordpunct_cjk",
                           reference=False, **cjk)
    elif args.corpus == "cjk":
        print(f"no CJK corpus: rustup's Rust by Example ({RUST_BY_EXAMPLE}) is not installed")
    print("| corpus (target domain) | setting | k | domain share (docs) | domain share (tokens) | KL reduction | "
          "median tokens selected / eligible | ROC AUC | precision at k |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        ranked = f"{r['auc']:.3f} | {r['precision_at_k']:.3f}" if "auc" in r else "- | -"
        print(f"| {r['corpus']} | {r['setting']} | {r['k']} | {r['domain_share']:.3f} | {r['domain_token_share']:.3f} "
              f"| {r['kl_reduction']:.3f} | {r['median_tokens']:.0f} / {r['eligible_median_tokens']:.0f} | {ranked} |")
    (OUT / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
