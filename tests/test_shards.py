"""Shards a trainer reads: sized files in a seeded order whose union is the selection, a manifest that
matches the files, `verify`, and Hugging Face `datasets` reading them as they are."""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import zstandard
from conftest import PILE, TARGET_C

from dsir_spark.cli import main
from dsir_spark.config import DatasetConfig, FitConfig, ReportConfig, ResampleConfig, RunConfig, ShardConfig
from dsir_spark.pipeline import run_pipeline
from dsir_spark.selection.shards import ShardError, verify


def base_config(run_dir: Path, **resample) -> RunConfig:
    return RunConfig(
        run_dir=str(run_dir),
        raw=DatasetConfig(paths=(str(PILE),), text_col="contents", id_col="id"),
        targets=(DatasetConfig(paths=(str(TARGET_C),), text_col="contents"),),
        fit=FitConfig(num_tokens_to_fit="all"),
        resample=ResampleConfig(**{"num_to_sample": 300, "min_example_length": 20, **resample}),
        report=ReportConfig(enabled=False),
    )


@pytest.fixture(scope="module")
def scored(spark, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("shards") / "run"
    run_pipeline(spark, base_config(run_dir), stages=("count", "fit", "score"))
    return run_dir


def resample(spark, run_dir: Path, out: str, **settings) -> RunConfig:
    config = base_config(run_dir, out_dir=str(run_dir.parent / out), **settings)
    run_pipeline(spark, config, stages=("resample",))
    return config


def rows_of(path: Path) -> list[dict]:
    if path.name.endswith(".parquet"):
        return pq.read_table(path).to_pylist()
    data = path.read_bytes()
    if path.name.endswith(".zst"):
        data = zstandard.ZstdDecompressor().stream_reader(data).read()
    elif path.name.endswith(".gz"):
        data = gzip.decompress(data)
    return [json.loads(line) for line in data.decode("utf-8").splitlines()]


def check_against_manifest(spark, config: RunConfig) -> tuple[dict, list[list[dict]]]:
    """The manifest's entries recomputed from the files themselves; returns it and each shard's rows."""
    out = Path(config.resample.out_dir)
    manifest = json.loads((out / "manifest.json").read_text())
    tokens = {r["id"]: r["num_tokens"] for r in spark.read.parquet(f"{config.run_dir}/scores").collect()}
    shards = []
    assert sorted(p.name for p in out.iterdir()) == sorted([e["name"] for e in manifest["files"]] + ["manifest.json"])
    assert manifest["run_dir"] == str(Path(config.run_dir).resolve())
    for index, entry in enumerate(manifest["files"]):
        path = out / entry["name"]
        rows = rows_of(path)
        assert entry["name"].startswith(f"{index:05d}.")
        assert entry["bytes"] == path.stat().st_size
        assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert entry["rows"] == len(rows) and entry["tokens"] == sum(tokens[r["id"]] for r in rows)
        shards.append(rows)
    totals = manifest["totals"]
    assert totals["rows"] == sum(len(s) for s in shards) and totals["files"] == len(shards)
    return manifest, shards


def test_parquet_shards_within_max_file_bytes_hold_the_selection_in_a_seeded_order(spark, scored):
    config = resample(spark, scored, "parquet_out", seed=3,
                      shards=ShardConfig(max_file_bytes=60_000, compression="zstd"))
    manifest, shards = check_against_manifest(spark, config)
    assert len(shards) >= 3 and all(e["bytes"] <= 60_000 for e in manifest["files"])
    assert all(e["json_bytes"] <= 60_000 for e in manifest["files"]) and manifest["plan"]["oversized_documents"] == 0
    ids = [r["id"] for shard in shards for r in shard]
    selected = {r["id"] for r in spark.read.parquet(f"{scored}/selection/ids").collect()}
    assert len(ids) == len(set(ids)) == 300 and set(ids) == selected
    assert manifest["selection"]["seed"] == 3 and manifest["selection"]["documents"] == 300
    # The same settings write the same files; another seed the same documents in another order.
    again = resample(spark, scored, "parquet_again", seed=3, shards=ShardConfig(max_file_bytes=60_000))
    assert [e["sha256"] for e in check_against_manifest(spark, again)[0]["files"]] == \
        [e["sha256"] for e in manifest["files"]]
    other = resample(spark, scored, "parquet_other", seed=4, shards=ShardConfig(max_file_bytes=60_000))
    reordered = [r["id"] for shard in check_against_manifest(spark, other)[1] for r in shard]
    assert reordered != ids
    assert verify(config.resample.out_dir) == {"files": len(shards), "rows": 300}


def test_json_lines_shards_in_key_order_and_a_number_of_files(spark, scored):
    config = resample(spark, scored, "json_out", output_format="json",
                      shards=ShardConfig(num_files=3, order="key", compression="gzip"))
    manifest, shards = check_against_manifest(spark, config)
    assert [e["name"] for e in manifest["files"]] == ["00000.jsonl.gz", "00001.jsonl.gz", "00002.jsonl.gz"]
    keys = {r["id"]: r["key"] for r in spark.read.parquet(f"{scored}/selection/ids").collect()}
    written = [keys[r["id"]] for shard in shards for r in shard]
    assert written == sorted(written, reverse=True)  # highest keys first, across and within files
    sizes = [e["json_bytes"] for e in manifest["files"]]
    assert max(sizes) < 1.5 * min(sizes)  # about equal parts


def test_a_token_budget_written_as_shards_and_a_damaged_shard_fails_verify(spark, scored, tmp_path, capsys):
    config = resample(spark, scored, "budget_out", num_to_sample=None, num_tokens_to_sample=40_000,
                      output_format="json", shards=ShardConfig(max_file_bytes=30_000))
    manifest, _ = check_against_manifest(spark, config)
    assert manifest["selection"]["num_tokens_to_sample"] == 40_000
    assert manifest["totals"]["tokens"] == manifest["selection"]["tokens"] <= 40_000
    config_file = tmp_path / "run.yaml"
    config_file.write_text(json.dumps(config.to_dict()))
    assert main(["verify", "--config", str(config_file)]) == 0
    said = capsys.readouterr().out
    assert said.startswith(f"verified {len(manifest['files'])} files")
    assert said.rstrip().endswith("; the selection of this config as it stands")
    # intact shards, but another config's selection: the run directory's record says so
    assert main(["verify", "--config", str(config_file), "--set", "resample.seed=9"]) == 3
    assert f"{config.resample.out_dir} is not the selection of this config as it stands (resample: a setting " \
        "changed: resample.seed: 0 -> 9)" in capsys.readouterr().err
    # shards checked where the run directory is not (copied elsewhere): against their manifest only, said
    assert main(["verify", "--config", str(config_file), "--set", f"run_dir={tmp_path / 'elsewhere'}"]) == 0
    assert capsys.readouterr().out.rstrip().endswith(
        f"; not compared with the config: no complete resample record in {tmp_path / 'elsewhere' / 'selection'}")
    damaged = Path(config.resample.out_dir) / manifest["files"][1]["name"]
    damaged.write_bytes(damaged.read_bytes()[:-10])
    with pytest.raises(ShardError, match=f"{damaged}: .* the file changed or is damaged"):
        verify(config.resample.out_dir)
    assert main(["verify", "--config", str(config_file)]) == 3
    assert capsys.readouterr().err.startswith(f"dsir-spark: {damaged}: ")


def test_shards_a_report_annotated_are_kept_and_a_missing_shard_is_written_again(spark, scored):
    config = replace(base_config(scored, out_dir=str(scored.parent / "kept_out"), output_format="json",
                                 shards=ShardConfig(num_files=3, compression="none")), report=ReportConfig())
    run_pipeline(spark, config)
    manifest, shards = check_against_manifest(spark, config)
    assert "kl_reduction" in manifest["report"]  # the report wrote into the manifest after the selection
    again = run_pipeline(spark, config)
    assert again["resample"]["skipped"] and again["report"]["skipped"]
    (Path(config.resample.out_dir) / manifest["files"][1]["name"]).unlink()
    redone = run_pipeline(spark, config)
    assert not redone["resample"]["skipped"] and not redone["report"]["skipped"]
    assert check_against_manifest(spark, config)[1] == shards


@pytest.mark.parametrize("change", ["last shard and entry", "middle shard and entry", "totals", "extra shard",
                                    "selection documents"])
def test_verify_fails_on_an_incomplete_set_or_a_manifest_that_does_not_add_up(spark, scored, tmp_path, capsys,
                                                                             change):
    config = resample(spark, scored, f"verify_{change.replace(' ', '_')}", output_format="json",
                      shards=ShardConfig(num_files=4, compression="none"))
    out = Path(config.resample.out_dir)
    manifest = json.loads((out / "manifest.json").read_text())
    files = manifest["files"]
    assert verify(str(out)) == {"files": 4, "rows": 300}
    if change == "last shard and entry":
        (out / files[-1]["name"]).unlink()
        manifest["files"] = files[:-1]
        message = "totals.files says 4, its files add up to 3"
    elif change == "middle shard and entry":
        (out / files[1]["name"]).unlink()
        manifest["files"] = [files[0], *files[2:]]
        message = "lists 00002.jsonl where 00001.jsonl belongs: a shard and its entry were removed or renamed"
    elif change == "totals":
        manifest["totals"]["rows"] += 1
        message = "totals.rows says 301, its files add up to 300"
    elif change == "extra shard":
        (out / "00004.jsonl").write_text((out / files[0]["name"]).read_text())
        message = "00004.jsonl: a file the manifest does not list"
    else:
        manifest["selection"]["documents"] = 299
        message = "selection.documents says 299, its files add up to 300"
    (out / "manifest.json").write_text(json.dumps(manifest))
    config_file = tmp_path / "run.yaml"
    config_file.write_text(json.dumps(config.to_dict()))
    assert main(["verify", "--config", str(config_file)]) == 3
    assert message in capsys.readouterr().err


def test_hugging_face_datasets_reads_the_shards_as_they_are(spark, scored):
    from datasets import load_dataset

    for fmt, compression in (("parquet", "zstd"), ("json", "gzip"), ("json", "zstd")):
        config = resample(spark, scored, f"hf_{fmt}_{compression}", output_format=fmt,
                          shards=ShardConfig(max_file_bytes=80_000, compression=compression))
        manifest, shards = check_against_manifest(spark, config)
        files = [str(Path(config.resample.out_dir) / e["name"]) for e in manifest["files"]]
        loaded = load_dataset(fmt, data_files=files, split="train")
        assert loaded.num_rows == 300
        assert loaded["id"] == [r["id"] for shard in shards for r in shard]
        assert loaded[0]["contents"] == shards[0][0]["contents"]


def test_shards_need_a_folder_and_one_size_setting():
    from dsir_spark.config import ConfigError

    with pytest.raises(ConfigError, match="resample.shards: set one of max_file_bytes"):
        ShardConfig()
    with pytest.raises(ConfigError, match="resample.shards writes files, and resample.out_dir is a table"):
        replace(ResampleConfig(num_to_sample=1, out_dir="table:a.b"), shards=ShardConfig(num_files=2))
