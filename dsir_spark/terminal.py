"""What the command line shows a person: log lines, one progress line redrawn in place under them on a
terminal, and a short table at the end.

Nothing else writes into the progress line: log records clear it, print themselves and draw it again,
and Spark's own console bar is off under the command line (dsir_spark.runtime.session).
"""

from __future__ import annotations

import logging
import shutil
import threading
from typing import Any, TextIO

from dsir_spark.run.status import text_table
from dsir_spark.runtime.progress import ProgressView, Snapshot, describe

REDRAW_SECONDS = 0.5
_CLEAR = "\r\x1b[K"


class TerminalView(ProgressView):
    """The current stage's progress as one line at the bottom of the terminal, redrawn in place."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(REDRAW_SECONDS)
        self.stream = stream
        self._line = ""
        self._lock = threading.Lock()

    def configure(self, seconds: float) -> None:
        self.seconds = REDRAW_SECONDS if seconds > 0 else 0  # progress_seconds: 0 turns it off here too

    def show(self, snapshot: Snapshot) -> None:
        width = shutil.get_terminal_size((100, 20)).columns
        with self._lock:
            self._line = describe(snapshot)[: width - 1]
            self.stream.write(_CLEAR + self._line)
            self.stream.flush()

    def clear(self) -> None:
        with self._lock:
            if self._line:
                self.stream.write(_CLEAR)
                self.stream.flush()
            self._line = ""

    def write_above(self, text: str) -> None:
        """Writes ``text`` (whole lines) where the progress line was, then draws the line again below it."""
        with self._lock:
            self.stream.write((_CLEAR if self._line else "") + text + self._line)
            self.stream.flush()


class ConsoleHandler(logging.Handler):
    """Log records on the terminal, above the progress line."""

    def __init__(self, view: TerminalView) -> None:
        super().__init__()
        self.view = view

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.view.write_above(self.format(record) + "\n")
        except Exception:  # noqa: BLE001 - logging never raises
            self.handleError(record)


def summary(records: dict[str, dict[str, Any]], report_path: str) -> str:
    """The end of a run for a person: each stage (ran or skipped, seconds, documents), where the
    selection and the report are, and the headline figures."""
    rows = [("stage", "status", "seconds", "documents")]
    for name, record in records.items():
        documents = _documents(name, record)
        rows.append((name, _status(record), f"{record.get('seconds', 0):.1f}",
                     f"{documents:,}" if documents is not None else ""))
    lines = text_table(rows, left=2)
    lines.extend(_headlines(records, report_path))
    return "\n".join(line.rstrip() for line in lines)


def _status(record: dict[str, Any]) -> str:
    """skipped, ran, or for a count stage that reused some datasets' counts: which it reused."""
    if record.get("skipped"):
        return "skipped"
    reused = [name for name, how in (record.get("datasets") or {}).items() if how == "reused"]
    return f"ran ({', '.join(reused)} reused)" if reused else "ran"


def _documents(stage: str, record: dict[str, Any]) -> int | None:
    """The documents a stage handled: raw's for count and score, the selection's for resample."""
    if stage == "count":
        return (record.get("raw") or {}).get("documents")
    if stage in ("score", "resample"):
        return record.get("rows_out")
    return None


def _headlines(records: dict[str, dict[str, Any]], report_path: str) -> list[str]:
    lines = []
    resample = records.get("resample")
    report = (records.get("report") or {}).get("report")
    if resample and resample.get("out_dir"):
        size = f"{resample.get('selected', resample.get('rows_out', 0)):,} documents"
        if "model_tokens" in resample:  # tokens.tokenizer: the trainer's tokens
            size += f", {resample['tokens_selected']:,} tokens of {resample['model_tokens']['tokenizer']['path']}"
        else:
            tokens = (report or {}).get("tokens", {}).get("selected", resample.get("tokens_selected"))
            size += f", {tokens:,} tokens" if tokens is not None else ""
        lines.append(f"selection: {resample['out_dir']} ({size})")
    if report:
        kl = report.get("kl_reduction", {})
        figures = f"KL reduction {kl['selected']:.3f}, random {kl['random']:.3f}" if "selected" in kl else ""
        lines.append(f"report:    {report_path}" + (f" ({figures})" if figures else ""))
    return lines
