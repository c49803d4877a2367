"""The run directory at a glance, read without starting Spark: each stage done, running, stale (its
settings or inputs changed since) or missing, what ``dsir-spark run`` would redo and why, and who holds
the lease."""

from __future__ import annotations

import socket
import time
from typing import Any

from dsir_spark.config import RunConfig
from dsir_spark.run.directory import (
    RECORD,
    describe_difference,
    files_problem,
    fingerprint,
    input_fingerprint,
    run_stages,
    stage_dir,
    stage_settings,
)
from dsir_spark.run.lease import LEASE, owner_exited
from dsir_spark.storage.io import one_listing
from dsir_spark.storage.records import NeedsSession, read_json


class StatusError(RuntimeError):
    """The run directory cannot be read without Spark."""


def _read(path: str) -> dict[str, Any] | None:
    try:
        return read_json(None, path)
    except NeedsSession as exc:
        raise StatusError(f"status reads the run directory without Spark, and {path} is not a local or mounted "
                          "path; run it where the run directory is mounted (e.g. /dbfs/..., /Volumes/...)") from exc


def _lease(config: RunConfig) -> dict[str, Any] | None:
    lease = _read(f"{config.run_dir.rstrip('/')}/{LEASE}")
    if lease is None:
        return None
    age = time.time() - float(lease.get("refreshed_at", 0))
    held = lease.get("status") == "held"
    alive = held and age < config.lease_timeout_seconds and not owner_exited(lease)
    return {"status": lease.get("status"), "host": lease.get("host"), "pid": lease.get("pid"),
            "started_at": lease.get("started_at"), "refreshed_seconds_ago": round(age, 1), "alive": alive}


def _why_stale(record: dict[str, Any], settings: dict[str, Any]) -> str:
    old = record.get("settings")
    if not isinstance(old, dict):
        return "its record has no settings to compare (written by an older version)"
    if old.get("inputs") != settings.get("inputs") and settings.get("inputs") is not None:
        return "the input files changed since it ran"
    return f"a setting changed: {describe_difference(old, settings)}"


def _files_problem(config: RunConfig, stage: str, record: dict[str, Any]) -> str | None:
    try:
        return files_problem(None, config, stage, record)
    except NeedsSession:  # a remote folder: only a run lists it
        return None


def run_status(config: RunConfig) -> dict[str, Any]:
    """Each stage's state, what a run would redo, and the lease; ``complete`` when nothing is left to do."""
    try:
        with one_listing():
            inputs = input_fingerprint(None, config)
    except NeedsSession:
        inputs = None  # remote inputs or tables: the settings are compared, the input files are not
    lease = _lease(config)
    stages, redo, earlier_redone, selected = [], [], False, None
    for stage in run_stages(config):
        raw = _read(f"{stage_dir(config, stage)}/{RECORD}")
        entry: dict[str, Any] = {"stage": stage}
        if stage == "report" and not config.report.enabled:
            entry["state"] = "off"  # report.enabled is false: run stops after resample
            stages.append(entry)
            continue
        if stage == "report" and not earlier_redone and not selected:
            entry["state"] = "empty"  # the selection is empty: run writes no report (see stages.report)
            stages.append(entry)
            continue
        if raw is None:
            entry["state"], why = "missing", "it never ran"
        elif raw.get("status") == "stale":  # an earlier stage ran again since (see invalidate_outputs)
            entry["state"], why = "stale", "an earlier stage ran again since it did"
        elif raw.get("status") != "done":
            entry["state"] = "running" if lease and lease["alive"] else "interrupted"
            why = "it did not finish" if entry["state"] == "interrupted" else "it is running now"
        else:
            entry.update({key: raw.get(key) for key in ("finished_at", "seconds", "rows_in", "rows_out")})
            settings = stage_settings(config, stage, inputs if inputs is not None else raw["settings"]["inputs"],
                                      recorded=raw["settings"]) if isinstance(raw.get("settings"), dict) else None
            current = settings is not None and raw.get("fingerprint") == fingerprint(settings)
            entry["state"], why = ("done", "") if current else ("stale", _why_stale(raw, settings or {}))
            problem = _files_problem(config, stage, raw) if current else None
            if problem:
                entry["state"], why = "stale", problem
        if stage == "resample" and entry["state"] == "done":
            selected = raw.get("selected")
        if entry["state"] != "done" or earlier_redone:
            redo.append({"stage": stage, "why": why or "an earlier stage runs again"})
            earlier_redone = True
        stages.append(entry)
    return {"run_dir": config.run_dir, "complete": not redo, "inputs_checked": inputs is not None,
            "stages": stages, "would_redo": redo, "lease": lease}


def text_table(rows: list[tuple[str, ...]], left: int) -> list[str]:
    """Rows of cells as aligned lines: the first ``left`` columns flush left, the others (figures) right."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) if i < left else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
            .rstrip() for row in rows]


def describe_status(status: dict[str, Any]) -> str:
    """``status`` for a person: a table of the stages, what a run would redo, the lease."""
    rows = [("stage", "state", "finished", "seconds", "rows out")]
    for entry in status["stages"]:
        seconds, rows_out = entry.get("seconds"), entry.get("rows_out")
        rows.append((entry["stage"], entry["state"], (entry.get("finished_at") or "").replace("T", " "),
                     f"{seconds:.1f}" if seconds is not None else "", f"{rows_out:,}" if rows_out is not None else ""))
    lines = [f"run_dir {status['run_dir']}: {'complete' if status['complete'] else 'not complete'}"]
    lines += text_table(rows, left=3)
    if status["would_redo"]:
        lines.append("dsir-spark run would redo:")
        lines += [f"  {item['stage']}: {item['why']}" for item in status["would_redo"]]
    else:
        lines.append("dsir-spark run would redo nothing")
    if not status["inputs_checked"]:
        lines.append("(the input files were not compared: they are not local paths; settings were)")
    lease = status["lease"]
    if lease is None:
        lines.append("lease: none (no run has started here)")
    else:
        owner = f"process {lease['pid']} on {lease['host']}" + (" (this machine)" if lease["host"] ==
                                                                 socket.gethostname() else "")
        if lease["status"] == "held":
            state = "alive" if lease["alive"] else "stale: its run stopped; the next run takes it over"
            lines.append(f"lease: held by {owner}, refreshed {lease['refreshed_seconds_ago']:.0f} s ago ({state})")
        else:
            lines.append(f"lease: {lease['status']} by {owner}")
    return "\n".join(lines)
