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
from dsir_spark.storage.io import one_listing
from dsir_spark.storage.records import read_json

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


def test_a_changed_file_among_many_copies_only_its_group_again(spark, small_files, tmp_path, monkeypatch):
    import dsir_spark.storage.compaction as compaction

    monkeypatch.setattr(compaction, "SNAPSHOT_FILE_BYTES", 50_000)  # several groups of the 120 small files
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in sorted(os.listdir(small_files)):
        (raw / name).write_text((small_files / name).read_text())
    config = config_for(tmp_path / "run", raw, "always")
    snapshot = tmp_path / "run" / "_dsir" / "compacted" / "raw"
    before = open_dataset(spark, config, config.raw).where("__dsir_bad = 0").count()
    groups = read_json(spark, str(snapshot / "_dsir" / "compaction.json"))["groups"]
    assert groups >= 4
    parts = {p.parent.name: (p.name, p.stat().st_mtime_ns) for p in snapshot.glob("__dsir_group=*/*.parquet")}
    assert len(parts) == groups

    changed = raw / "part-0003.jsonl"
    changed.write_text(changed.read_text() + json.dumps({"contents": "one more document"}) + "\n")
    os.utime(changed, (1, 1))
    # A file of another group garbled in place with its size and time kept: read again, it would show.
    other = next(raw / n for n in sorted(os.listdir(raw))
                 if compaction.group_of(f"file:{raw / n}", groups) != compaction.group_of(f"file:{changed}", groups))
    stat = os.stat(other)
    original = other.read_text()
    other.write_text("x" * stat.st_size)
    os.utime(other, ns=(stat.st_atime_ns, stat.st_mtime_ns))

    with one_listing(fresh=True):
        after = open_dataset(spark, config, config.raw, refresh=True)
        assert after.where("__dsir_bad = 0").count() == before + 1
        assert after.where("contents = 'one more document'").count() == 1
        assert after.where("__dsir_bad != 0").count() == 1  # the malformed line of part-0007 only
        kept = after.where(f"__dsir_file = 'file:{other}'").where("__dsir_bad = 0").count()
        assert kept == len([line for line in original.splitlines() if line.strip()])
    now = {p.parent.name: (p.name, p.stat().st_mtime_ns) for p in snapshot.glob("__dsir_group=*/*.parquet")}
    group = f"__dsir_group={compaction.group_of(f'file:{changed}', groups)}"
    assert {name for name in now if now[name] != parts.get(name)} == {group}  # only its group was written
    other.write_text(original)
