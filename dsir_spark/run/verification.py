"""``dsir-spark verify``: the published output checked without Spark. Shards against their manifest
(``selection.shards.verify``) and, where the run directory is here, against the config; a plain output
folder against the resample stage's record: made with the config's settings from its inputs as they are
(see run.status), the files it published (names and sizes) and the rows they hold."""

from __future__ import annotations

from dsir_spark.config import TABLE_PREFIX, RunConfig
from dsir_spark.run.directory import default_out_dir, read_record, stage_dir
from dsir_spark.run.status import run_status
from dsir_spark.selection.shards import MANIFEST, filesystem, rows_in, verify
from dsir_spark.storage.records import NeedsSession


class OutputError(ValueError):
    """A published output folder that is not what the resample stage's record says it wrote."""


def verify_output(config: RunConfig) -> str:
    """What was verified, as one line; raises ShardError (shards) or OutputError (a folder) naming what
    differs."""
    out_dir = default_out_dir(config)
    if config.resample.shards is not None:
        checked = verify(out_dir)
        said = f"verified {checked['files']} files, {checked['rows']:,} rows against {out_dir}/{MANIFEST}"
        return said + _shards_against_config(config, out_dir)
    if out_dir.startswith(TABLE_PREFIX):
        raise OutputError(f"resample.out_dir is the table {out_dir[len(TABLE_PREFIX):]}: verify checks shards and "
                          "output folders; read the table to check it")
    folder = stage_dir(config, "resample")
    try:
        return _verify_folder(config, out_dir, folder)
    except NeedsSession as exc:
        raise OutputError(f"verify reads an output folder and its record without Spark, and {exc}; run it where "
                          "run_dir and out_dir are mounted (e.g. /dbfs/..., /Volumes/...)") from exc


def _done_record(folder: str) -> dict | None:
    """The resample stage's record in ``folder`` if it finished, else None (read without Spark)."""
    record = read_record(None, folder)
    return record if record is not None and record.get("status") == "done" else None


def _verify_folder(config: RunConfig, out_dir: str, folder: str) -> str:
    record = _done_record(folder)
    if record is None:
        raise OutputError(f"{folder} holds no complete selection to check {out_dir} against: run dsir-spark run")
    if record.get("files") is None:
        raise OutputError(f"{folder}: its record, written by an older version, does not list the output's files: "
                          "run dsir-spark run --force to write them again with their list")
    _require_current(config, out_dir)
    fs, root = filesystem(out_dir)
    rows = sum(rows_in(fs, f"{root}/{name}", name) for name, _ in record["files"])
    if rows != record["rows_out"]:
        raise OutputError(f"{out_dir} holds {rows:,} rows, the resample stage wrote {record['rows_out']:,}: a file "
                          "changed in place; run dsir-spark run --force to write it again")
    return (f"verified {len(record['files'])} files, {rows:,} rows against the resample stage's record "
            f"({folder})")


def _shards_against_config(config: RunConfig, out_dir: str) -> str:
    """Shards are often checked where they were copied to, without the run directory: compared with the
    config when its resample record is here, said otherwise."""
    folder = stage_dir(config, "resample")
    try:
        if _done_record(folder) is None:
            return f"; not compared with the config: no complete resample record in {folder}"
        _require_current(config, out_dir)
    except NeedsSession:
        return f"; not compared with the config: {folder} is read through Spark (not mounted here)"
    return "; the selection of this config as it stands"


def _require_current(config: RunConfig, out_dir: str) -> None:
    """Fails when the resample stage would run again: the selection these settings and inputs make, and
    its files as written (what status says of it)."""
    redo = next((item for item in run_status(config)["would_redo"] if item["stage"] == "resample"), None)
    if redo is not None:
        raise OutputError(f"{out_dir} is not the selection of this config as it stands (resample: {redo['why']}); "
                          "run dsir-spark run to write it")
