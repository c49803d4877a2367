"""Many small input files read once into a snapshot: the same selection, counts and output rows as
reading the files themselves, the snapshot read by every later stage, and made again when a file changes."""

from __future__ import annotations

import json
import os

import pytest
from conftest import PILE, TARGET_C, read_jsonl

from dsir_spark.config import config_from_dict
from dsir_spark.pipeline import run_pipeline
from dsir_spark.run.directory import open_dataset, read_record
from dsir_spark.storage.compaction import SMALL_FILE_BYTES, SMALL_FILES, should_compact

FILES = 120


@pytest.fixture(scope="module")
def small_files(tmp_path_factory):
    """The bundled Pile sample as FILES files (no id column: ids derive from each file and row), one
    of them with a malformed line."""
    folder = tmp_path_factory.mktemp("small_files")
    rows = read_jsonl(PILE)
    for index in range(FILES):
        lines = [json.dumps({"contents": r["contents"], "meta": r["metadata"]}) for r in rows[index::FILES]]
        if index == 7:
            lines.append('{"contents": "cut off')
        (folder / f"part-{index:04d}.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def config_for(run_dir, raw, compact: str):
    return config_from_dict({
        "run_dir": str(run_dir),
        "raw": {"paths": [str(raw)], "text_col": "contents", "on_bad_records": "skip", "compact": compact},
        "targets": [{"paths": [str(TARGET_C)], "text_col": "contents"}],
        "fit": {"num_tokens_to_fit": "all"},
        "resample": {"num_to_sample": 40, "seed": 3, "output_format": "json"},
        "report": {"enabled": False},
    })


def selected(run_dir) -> list[dict]:
    rows = [json.loads(line) for name in sorted(os.listdir(run_dir / "output")) if name.endswith(".json")
            for line in (run_dir / "output" / name).read_text().splitlines()]
    return sorted(rows, key=lambda r: r["dsir_id"])


def test_a_snapshot_of_many_small_files_selects_what_the_files_themselves_do(spark, small_files, tmp_path):
    direct, snapshot = tmp_path / "direct", tmp_path / "snapshot"
    run_pipeline(spark, config_for(direct, small_files, "never"))
    run_pipeline(spark, config_for(snapshot, small_files, "always"))

    assert not (direct / "_dsir" / "compacted").exists()
    assert (snapshot / "_dsir" / "compacted" / "raw" / "_dsir" / "compaction.json").exists()
    # The same documents, ids (derived from the original files), weights and columns, bit for bit.
    assert selected(snapshot) == selected(direct)
    assert len(selected(snapshot)) == 40
    counts = [read_record(spark, str(run / "counts")) for run in (direct, snapshot)]
    assert counts[0]["bad_records"] == counts[1]["bad_records"] == {"raw": {"malformed JSON": 1}, "target_0": {}}
    assert counts[0]["raw"] == counts[1]["raw"]

    # Every later pass reads the snapshot, not the 120 files.
    config = config_for(snapshot, small_files, "always")
    raw = open_dataset(spark, config, config.raw)
    assert raw.inputFiles() and all("/_dsir/compacted/raw/" in f for f in raw.inputFiles())


def test_a_changed_file_makes_the_snapshot_again(spark, small_files, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in sorted(os.listdir(small_files))[:20]:
        (raw / name).write_text((small_files / name).read_text())
    config = config_for(tmp_path / "run", raw, "always")
    before = open_dataset(spark, config, config.raw).where("__dsir_bad = 0").count()
    changed = raw / "part-0003.jsonl"
    changed.write_text(changed.read_text() + json.dumps({"contents": "one more document"}) + "\n")
    os.utime(changed, (os.stat(changed).st_atime, os.stat(changed).st_mtime + 5))
    after = open_dataset(spark, config, config.raw)
    assert after.where("__dsir_bad = 0").count() == before + 1
    assert after.where("contents = 'one more document'").count() == 1


def test_auto_compacts_many_small_files_only():
    small = [(f"f{i}", 10_000, 0) for i in range(SMALL_FILES)]
    assert should_compact("auto", small)
    assert not should_compact("auto", small[:-1])  # too few files to be worth a copy
    assert not should_compact("auto", [(f, SMALL_FILE_BYTES * 2, t) for f, _, t in small])  # large files
    assert not should_compact("never", small)
    assert should_compact("always", small[:3])
    assert not should_compact("always", None)  # a table
