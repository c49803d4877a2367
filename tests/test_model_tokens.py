"""Selection in the trainer's tokens: a token budget counts a Hugging Face tokenizer's tokens (trained
here, on the bundled sample), exactly as a brute-force prefix over every eligible document computed on
the driver says, while tokenizing only a small part of the pool."""

from __future__ import annotations

import hashlib
import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import PILE, TARGET_C, TARGET_WIKI, read_jsonl, write_jsonl

from dsir_spark.config import ConfigError, TokensConfig, config_from_dict
from dsir_spark.featurizer.model_tokens import load_model_tokenizer
from dsir_spark.pipeline import run_pipeline
from dsir_spark.run.directory import read_record, stage_dir
from dsir_spark.run.scores import open_scores
from dsir_spark.run.status import run_status
from dsir_spark.selection.resampling import gumbel_keys
from dsir_spark.selection.shards import ShardError, read_megatron_index, verify

EOS = "<|endoftext|>"


def train_tokenizer(path, texts: list[str], vocab_size: int = 2000) -> str:
    """A byte-level BPE tokenizer trained on ``texts``, saved as tokenizer.json (no download)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(texts, trainer)
    tokenizer.save(str(path))
    return str(path)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("tokens")
    rows = read_jsonl(PILE)
    raw = write_jsonl(root / "raw.jsonl", [{"id": r["id"], "text": r["contents"],
                                            "source": r["metadata"]["pile_set_name"]} for r in rows])
    tokenizer = train_tokenizer(root / "tokenizer.json", [r["contents"] for r in rows])
    return root, raw, tokenizer, {r["id"]: r["contents"] for r in rows}


def _config(root, raw, tokenizer, run: str, **resample) -> dict:
    return {"run_dir": str(root / run), "raw": {"paths": [raw], "id_col": "id"},
            "targets": [{"paths": [str(TARGET_C)], "text_col": "contents"}],
            "tokens": {"tokenizer": tokenizer, "eos": True}, "report": {"enabled": False},
            "resample": {"num_to_sample": None, **resample}}


def brute_force(spark, config, texts: dict, budget: int, column: str = "log_weight", target: int = 0,
                exclude: set | None = None, caps: dict | None = None) -> tuple[list, int]:
    """The longest key-order prefix within ``budget`` model tokens, every eligible document tokenized
    on the driver (the same keys; with ``caps``, the greedy walk that passes over full groups)."""
    settings = config.resample
    tokenizer = load_model_tokenizer(spark, config.tokens)
    scores = open_scores(spark, config).where(f"num_tokens >= {settings.min_example_length}")
    keyed = gumbel_keys(scores, column, settings.seed, target, settings.top_k).select("id", "key").toPandas()
    keyed = keyed[~keyed["id"].isin(exclude or set())]
    keyed = keyed.sort_values(["key", "id"], ascending=[False, True])
    lengths = dict(zip(keyed["id"], (len(ids) for ids in tokenizer.encode([texts[i] for i in keyed["id"]]))))
    chosen, used, per_group = [], 0, {}
    for ident in keyed["id"]:
        group = caps["group_of"][ident] if caps else None
        if caps and per_group.get(group, 0) + lengths[ident] > caps["cap"]:
            caps["full"].add(group)
        if caps and group in caps["full"]:
            continue
        if used + lengths[ident] > budget:
            break
        chosen.append(ident)
        used += lengths[ident]
        if caps:
            per_group[group] = per_group.get(group, 0) + lengths[ident]
    return chosen, used


def _selected(root, run: str) -> pd.DataFrame:
    return pd.read_parquet(root / run / "selection" / "ids")


@pytest.mark.parametrize("top_k", [False, True])
def test_a_model_token_budget_is_the_brute_force_prefix_and_tokenizes_a_small_part(spark, corpus, top_k):
    root, raw, tokenizer, texts = corpus
    run = f"budget-{top_k}"
    config = config_from_dict(_config(root, raw, tokenizer, run, num_tokens_to_sample=6000, top_k=top_k))
    records = run_pipeline(spark, config)
    expected, used = brute_force(spark, config, texts, 6000)
    selection = _selected(root, run)
    assert sorted(selection["id"]) == sorted(expected) and len(expected) > 10
    record = records["resample"]
    assert record["tokens_selected"] == used == int(selection["num_tokens"].sum()) <= 6000
    model = record["model_tokens"]
    assert model["documents_selected"] == len(expected)
    # Far fewer documents tokenized than eligible: the selection is a small share of the pool.
    assert model["documents_tokenized"] < record["eligible"] / 2, model
    assert model["tokenizer"]["eos"] == EOS and model["tokenizer"]["vocab_size"] == 2000


def test_separate_targets_split_the_budget_in_model_tokens(spark, corpus):
    root, raw, tokenizer, texts = corpus
    data = _config(root, raw, tokenizer, "separate", num_tokens_to_sample=8000, seed=5)
    data["targets"] = [{"paths": [str(TARGET_C)], "text_col": "contents"},
                       {"paths": [str(TARGET_WIKI)], "text_col": "contents"}]
    data["fit"] = {"separate_targets": True, "target_proportions": [0.5, 0.5]}
    config = config_from_dict(data)
    run_pipeline(spark, config)
    selection = _selected(root, "separate")
    first, _ = brute_force(spark, config, texts, 4000, "log_weight_0", 0)
    second, _ = brute_force(spark, config, texts, 4000, "log_weight_1", 1, exclude=set(first))
    assert sorted(selection[selection["target"] == 0]["id"]) == sorted(first)
    assert sorted(selection[selection["target"] == 1]["id"]) == sorted(second)


def test_a_token_quota_counts_model_tokens(spark, corpus):
    root, raw, tokenizer, texts = corpus
    config = config_from_dict(_config(root, raw, tokenizer, "quota", num_tokens_to_sample=5000,
                                      group_col="source", max_share=0.3))
    records = run_pipeline(spark, config)
    rows = {r["id"]: r["metadata"]["pile_set_name"] for r in read_jsonl(PILE)}
    expected, used = brute_force(spark, config, texts, 5000,
                                 caps={"group_of": rows, "cap": int(0.3 * 5000), "full": set()})
    assert sorted(_selected(root, "quota")["id"]) == sorted(expected)
    assert records["resample"]["tokens_selected"] == used
    assert all(g["tokens"] <= 1500 for g in records["resample"]["groups"].values())


def test_a_document_count_selection_reports_model_tokens(spark, corpus):
    root, raw, tokenizer, texts = corpus
    config = config_from_dict({**_config(root, raw, tokenizer, "count"), "resample": {"num_to_sample": 30}})
    records = run_pipeline(spark, config)
    selection = _selected(root, "count")
    encoded = load_model_tokenizer(spark, config.tokens).encode([texts[i] for i in selection["id"]])
    assert list(selection["num_tokens"]) == [len(ids) for ids in encoded]
    assert records["resample"]["tokens_selected"] == sum(len(ids) for ids in encoded)


def test_a_tokenizer_replaced_in_place_selects_again_in_its_own_tokens(spark, corpus, tmp_path):
    root, raw, tokenizer, texts = corpus
    path = tmp_path / "tokenizer.json"
    shutil.copy(tokenizer, path)
    config = config_from_dict(_config(root, raw, str(path), "replaced", num_tokens_to_sample=6000))
    run_pipeline(spark, config)
    before = read_record(spark, stage_dir(config, "resample"))
    train_tokenizer(path, list(texts.values()), vocab_size=400)  # the same path, other tokens
    redo = run_status(config)["would_redo"]  # seen without Spark, before any run
    assert [item["stage"] for item in redo] == ["resample"] and "tokenizer_file" in redo[0]["why"], redo
    run_pipeline(spark, config)
    after = read_record(spark, stage_dir(config, "resample"))
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert after["model_tokens"]["tokenizer"]["sha256"] == sha != before["model_tokens"]["tokenizer"]["sha256"]
    assert after["model_tokens"]["tokenizer"]["vocab_size"] == 400
    expected, used = brute_force(spark, config, texts, 6000)  # the budget in the new tokenizer's tokens
    assert sorted(_selected(root, "replaced")["id"]) == sorted(expected)
    assert after["tokens_selected"] == used
    assert run_status(config)["would_redo"] == []


def test_a_tokenizer_setting_that_cannot_work_is_refused(corpus, tmp_path):
    root, raw, tokenizer, _ = corpus
    with pytest.raises(ConfigError, match="is not a token of"):
        load_model_tokenizer(None, TokensConfig(tokenizer=tokenizer, eos="<nope>"))
    (tmp_path / "bad.json").write_text('{"not": "a tokenizer"}')
    with pytest.raises(ConfigError, match="is not a Hugging Face tokenizer.json"):
        load_model_tokenizer(None, TokensConfig(tokenizer=str(tmp_path / "bad.json")))
    with pytest.raises(ConfigError, match="cannot read"):
        load_model_tokenizer(None, TokensConfig(tokenizer=str(tmp_path / "missing.json")))
    with pytest.raises(ConfigError, match="tokens.eos needs tokens.tokenizer"):
        TokensConfig(eos=True)
    with pytest.raises(ConfigError, match="megatron writes token ids"):
        config_from_dict({"run_dir": "r", "raw": {"paths": [raw]}, "targets": [{"paths": [raw]}],
                          "resample": {"num_to_sample": 5, "shards": {"format": "megatron", "max_tokens": 1000}}})


@pytest.fixture(scope="module")
def megatron(spark, corpus):
    root, raw, tokenizer, texts = corpus
    config = config_from_dict(_config(root, raw, tokenizer, "megatron", num_tokens_to_sample=20000, seed=2,
                                      shards={"format": "megatron", "max_tokens": 6000}))
    records = run_pipeline(spark, config)
    return root / "megatron" / "output", records["resample"], tokenizer, texts


def _read_tokens(folder, entry) -> list[np.ndarray]:
    """A shard's documents as token arrays, read back with numpy through its index."""
    index = read_megatron_index((folder / entry["index"]["name"]).read_bytes())
    dtype = {8: np.uint16, 4: np.int32}[int(index["dtype_code"])]
    tokens = np.fromfile(folder / entry["name"], dtype=dtype)
    return [tokens[p // tokens.itemsize:p // tokens.itemsize + n] for p, n in zip(index["pointers"], index["sizes"])]


def test_token_shards_read_back_and_decode_to_the_selected_texts_in_the_manifests_order(megatron):
    folder, record, tokenizer_path, texts = megatron
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["format"] == "megatron" and len(manifest["files"]) >= 3
    assert manifest["tokenizer"]["sha256"] == hashlib.sha256(open(tokenizer_path, "rb").read()).hexdigest()
    assert manifest["totals"]["tokens"] == record["tokens_selected"] <= 20000
    assert verify(str(folder)) == {"files": len(manifest["files"]), "rows": record["selected"]}
    from tokenizers import Tokenizer

    decoder = Tokenizer.from_file(tokenizer_path)
    eos = decoder.token_to_id(EOS)
    seen = []
    for entry in manifest["files"]:
        ids = [json.loads(line) for line in (folder / entry["ids"]["name"]).read_text().splitlines()]
        documents = _read_tokens(folder, entry)
        assert len(ids) == len(documents) == entry["rows"] and sum(len(d) for d in documents) == entry["tokens"]
        assert entry["tokens"] <= 6000 or entry["rows"] == 1
        for ident, tokens in zip(ids, documents):
            assert tokens[-1] == eos and decoder.decode(tokens[:-1].tolist()) == texts[ident]
        seen += ids
    assert sorted(seen) == sorted(pd.read_parquet(folder.parent / "selection" / "ids")["id"])


def test_token_shards_are_byte_identical_to_datatroves_megatron_writer(megatron, tmp_path):
    from datatrove.data import Document
    from datatrove.pipeline.tokens.megatron_tokenizer import MegatronDocumentTokenizer

    folder, _, tokenizer_path, texts = megatron
    manifest = json.loads((folder / "manifest.json").read_text())
    for entry in manifest["files"]:
        ids = [json.loads(line) for line in (folder / entry["ids"]["name"]).read_text().splitlines()]
        theirs = tmp_path / entry["name"]
        writer = MegatronDocumentTokenizer(str(theirs), tokenizer_name_or_path=tokenizer_path, eos_token=EOS)
        writer.run((Document(text=texts[i], id=str(i)) for i in ids), rank=0)
        assert (theirs / "00000_tokens.bin").read_bytes() == (folder / entry["name"]).read_bytes()
        assert (theirs / "00000_tokens.idx").read_bytes() == (folder / entry["index"]["name"]).read_bytes()


def test_verify_names_a_changed_missing_or_extra_token_file_and_wrong_totals(megatron, tmp_path):
    folder, _, _, _ = megatron
    manifest = json.loads((folder / "manifest.json").read_text())
    entry = manifest["files"][1]
    cases = {
        "changed bin": (lambda d: _flip(d / entry["name"]), f"{entry['name']}: "),
        "missing idx": (lambda d: (d / entry["index"]["name"]).unlink(),
                        f"{entry['index']['name']}: listed in the manifest but missing"),
        "extra file": (lambda d: (d / "00099.bin").write_bytes(b"\0\0"),
                       "00099.bin: a file the manifest does not list"),
        "totals": (lambda d: _edit_manifest(d, lambda m: m["totals"].update(tokens=m["totals"]["tokens"] + 1)),
                   "totals.tokens says"),
    }
    for name, (damage, message) in cases.items():
        copy = tmp_path / name.replace(" ", "_")
        shutil.copytree(folder, copy)
        damage(copy)
        with pytest.raises(ShardError, match=re.escape(message)):
            verify(str(copy))


def _flip(path) -> None:
    data = bytearray(path.read_bytes())
    data[0] ^= 1
    path.write_bytes(bytes(data))


def _edit_manifest(folder, change) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    change(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))
