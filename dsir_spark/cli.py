"""``dsir-spark count|fit|score|resample|report|run --config FILE [--set section.key=value ...]``, and
``dsir-spark explain --config FILE --id ID [--id ID ...]``, ``dsir-spark verify --config FILE``,
``dsir-spark status --config FILE`` and ``dsir-spark warm-up`` (see dsir_spark.runtime.class_archive).

The same ``main`` serves the console script, ``jobs/dsir_job.py`` under spark-submit and a Databricks
wheel task. It returns a process exit code and prints every error as one line on stderr (``--debug``, or the
environment variable DSIR_SPARK_DEBUG=1, adds the full trace):

    0  done
    1  run error: the run directory, its lease, a stage out of order, Spark itself failed
    2  config error: a setting is missing, unknown or invalid
    3  input error: a dataset, file, column or table cannot give what the config asks
    4  status: the run is not complete (a stage is missing, running or stale)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Sequence

from dsir_spark.config import ConfigError, load_config, require_sample_size
from dsir_spark.featurizer.features import requested_implementation

COMMANDS = ("count", "fit", "score", "resample", "report", "run", "explain", "verify", "status", "warm-up")
RUN_ERROR, CONFIG_ERROR, INPUT_ERROR, INCOMPLETE = 1, 2, 3, 4


class Interrupted(BaseException):
    """SIGTERM (a scheduler stopping the job), raised in the main thread like Ctrl-C's KeyboardInterrupt."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _stop_spark_jobs() -> None:
    """Cancels this session's running Spark jobs (the JVM would go on with them while we unwind)."""
    from pyspark.sql import SparkSession

    session = SparkSession.getActiveSession()
    if session is not None:
        try:
            session.interruptAll()
        except Exception:  # noqa: BLE001 - a session already stopping has nothing left to cancel
            pass


# The signal that stopped this run and the stage it stopped in, whatever error the unwinding then meets.
_signalled: list[tuple[int, str | None]] = []


def _on_signal(signum: int, frame) -> None:
    from dsir_spark.stages.runner import current_stage

    _signalled.append((signum, current_stage()))
    _stop_spark_jobs()
    raise KeyboardInterrupt if signum == signal.SIGINT else Interrupted(signum)


def _handle_signals() -> None:
    """Ctrl-C and a scheduler's SIGTERM cancel Spark's jobs at once, then unwind (the lease is released);
    installed again once the session exists, as PySpark's context sets a SIGINT handler of its own."""
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, _on_signal)


def _interrupted(signum: int) -> int:
    """Says where the run stopped (the lease was released while unwinding); exit code 128 + signal."""
    _stop_spark_jobs()
    stage = next((stage for number, stage in _signalled if number == signum), None)
    where = f" during the {stage} stage" if stage else ""
    print(f"dsir-spark: interrupted{where}; nothing it did looks complete: run again to resume", file=sys.stderr)
    return 128 + signum


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dsir-spark", description="DSIR data selection on Apache Spark.")
    parser.add_argument("command", choices=COMMANDS,
                        help="a single stage, run = all stages in order, explain = why documents got their weight, "
                             "verify = check the output in out_dir (shards against their manifest, a folder against "
                             "the resample stage's record), status = the run "
                             "directory at a glance (no Spark), or warm-up = write the archive of Spark's classes "
                             "that local runs start from (no --config)")
    parser.add_argument("--config", help="YAML config (see conf/default.yaml); every command but warm-up")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a setting, e.g. --set resample.seed=7 (repeatable)")
    parser.add_argument("--force", action="store_true", help="run: recompute stages that are already complete")
    parser.add_argument("--take-over", action="store_true",
                        help="take the run directory's lease from a run that stopped refreshing it")
    parser.add_argument("--id", dest="ids", action="append", default=[], metavar="ID",
                        help="explain: a document's id (repeatable)")
    parser.add_argument("--top", type=int, default=10, help="explain: n-grams shown per side (default 10)")
    parser.add_argument("--json", action="store_true",
                        help="end with one JSON line per stage (for scripts) instead of the table")
    parser.add_argument("--log-level", default="INFO", help="driver log level (default INFO)")
    parser.add_argument("--debug", action="store_true",
                        help="on failure, print the full trace (Python and Java); also DSIR_SPARK_DEBUG=1")
    return parser


def _exit_code(exc: BaseException) -> int:
    from dsir_spark.config import ConfigError
    from dsir_spark.estimators.base import FitError
    from dsir_spark.run.verification import OutputError
    from dsir_spark.selection.resampling import ResampleError
    from dsir_spark.selection.shards import ShardError
    from dsir_spark.storage.io import InputError

    if isinstance(exc, ConfigError):
        return CONFIG_ERROR
    if isinstance(exc, (InputError, FitError, ResampleError, ShardError, OutputError)):
        return INPUT_ERROR
    return RUN_ERROR


def _fail(exc: BaseException, debug: bool) -> int:
    """Prints a failure as one line (with the trace before it under --debug); returns its exit code."""
    from dsir_spark.storage.failures import one_line

    known = _exit_code(exc) != RUN_ERROR or type(exc).__module__.startswith("dsir_spark")
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    message = str(exc) if known else f"run failed: {one_line(exc)}"
    if _exit_code(exc) == CONFIG_ERROR:
        message = f"config error: {message}"
    hint = "" if debug or known else " (rerun with --debug for the full trace)"
    print(f"dsir-spark: {message}{hint}", file=sys.stderr)
    return _exit_code(exc)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = args.debug or os.environ.get("DSIR_SPARK_DEBUG", "") not in ("", "0")
    _set_up_output(args.log_level.upper(), debug)
    if args.command == "warm-up":
        return _warm_up(debug)
    if args.config is None:
        parser.error(f"{args.command} needs --config FILE")
    try:
        config = load_config(args.config, args.overrides)
        requested_implementation()  # a wrong DSIR_SPARK_FEATURIZER fails here, not in a Spark task
        if args.command in ("run", "resample"):
            require_sample_size(config.resample)  # before a JVM starts
        if args.command == "explain" and not args.ids:
            raise ConfigError("explain needs at least one --id (a raw document's id)")
        if args.command == "explain" and args.top < 1:
            raise ConfigError(f"explain --top {args.top}: give how many n-grams to show per side, at least 1")
    except (ConfigError, ValueError) as exc:
        print(f"dsir-spark: config error: {exc}", file=sys.stderr)
        return CONFIG_ERROR
    _handle_signals()
    try:
        return _command(args, config, debug)
    except KeyboardInterrupt:
        return _interrupted(signal.SIGINT)
    except Interrupted as exc:
        return _interrupted(exc.signum)
    except Exception as exc:  # noqa: BLE001 - every failure ends as one line and an exit code
        if _signalled:  # a job cancelled by the signal fails as it unwinds: the signal is the cause
            return _interrupted(_signalled[-1][0])
        return _fail(exc, debug)


def _command(args: argparse.Namespace, config, debug: bool) -> int:
    from dsir_spark.pipeline import complete_without_session, run_pipeline
    from dsir_spark.runtime.class_archive import use_in_launched_jvm
    from dsir_spark.runtime.session import apply_big_input_defaults, quiet_spark_logging, session_for_job

    if args.command == "status":  # the records and the lease, read without Spark
        from dsir_spark.run.status import describe_status, run_status

        status = run_status(config)
        print(json.dumps(status, indent=2) if args.json else describe_status(status))
        return 0 if status["complete"] else INCOMPLETE
    if args.command == "verify":  # pyarrow only: no Spark session
        from dsir_spark.run.verification import verify_output

        print(verify_output(config))
        return 0

    if args.command == "run" and not args.force:
        # Nothing to do (every stage complete, all of it readable here): answer without starting Spark.
        records = complete_without_session(config)
        if records is not None:
            _print_records(records, config, args.json)
            return 0
    if not debug:  # the failure is told in one line; executors' stack traces only under --debug
        quiet_spark_logging()
    use_in_launched_jvm()
    spark = session_for_job(f"dsir-spark {args.command}", quiet=not debug)
    _handle_signals()
    apply_big_input_defaults(spark, config)
    if args.command == "explain":
        return _explain(spark, config, args.ids, args.top)
    stages = None if args.command == "run" else (args.command,)
    force = args.force or args.command != "run"
    _print_records(run_pipeline(spark, config, force=force, stages=stages, take_over=args.take_over,
                                reuse_counts=not args.force), config,
                   args.json)
    return 0


def _warm_up(debug: bool) -> int:
    from dsir_spark.runtime.class_archive import build

    try:
        path, seconds = build()
    except Exception as exc:  # noqa: BLE001 - told in one line, as every failure
        return _fail(exc, debug)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.0f} MB, {seconds:.0f} s): local dsir-spark runs with this "
          "Spark and Java start from it (delete it to go back)")
    return 0


def _interrupted_call(record: logging.LogRecord) -> bool:
    """False for py4j's trace of the call a Ctrl-C or SIGTERM cut short (it logs them on the root logger):
    the command line says in one line where it was interrupted."""
    message = record.getMessage()
    return not (message.startswith("KeyboardInterrupt while sending command")
                or (_signalled and message.startswith("Exception while sending command")))


def _set_up_output(level: str, debug: bool = False) -> None:
    """Log lines on stderr; on a terminal, short ones with the current stage's progress line redrawn below
    them (elsewhere a plain progress line every progress_seconds)."""
    logging.getLogger("py4j").setLevel(logging.WARNING)
    if not sys.stderr.isatty():
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        if not debug:
            for handler in logging.getLogger().handlers:
                handler.addFilter(_interrupted_call)
        return
    from dsir_spark.runtime.progress import use_view
    from dsir_spark.terminal import ConsoleHandler, TerminalView

    view = TerminalView(sys.stderr)
    handler = ConsoleHandler(view)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    if not debug:
        handler.addFilter(_interrupted_call)
    logging.basicConfig(level=level, handlers=[handler])
    use_view(view)


def _print_records(records: dict, config, as_json: bool) -> None:
    if as_json:
        for name, record in records.items():
            shown = {k: record[k] for k in ("seconds", "rows_in", "rows_out", "skipped") if k in record}
            print(f"{name}: {json.dumps(shown)}")
        return
    from dsir_spark.run.directory import stage_dir
    from dsir_spark.terminal import summary

    print(summary(records, f"{stage_dir(config, 'report')}/report.html"))


def _explain(spark, config, ids: list[str], top: int) -> int:
    from dsir_spark.stages.explain import explain, format_explanation

    print("\n\n".join(format_explanation(e) for e in explain(spark, config, ids, top)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
