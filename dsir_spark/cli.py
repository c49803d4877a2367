"""``dsir-spark count|fit|score|resample|report|run --config FILE [--set section.key=value ...]``, and
``dsir-spark explain --config FILE --id ID [--id ID ...]``.

The same ``main`` serves the console script, ``jobs/dsir_job.py`` under spark-submit and a Databricks
wheel task. It returns a process exit code; errors in the input or the config print one clear line.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from dsir_spark.config import ConfigError, load_config
from dsir_spark.features import requested_implementation

COMMANDS = ("count", "fit", "score", "resample", "report", "run", "explain")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dsir-spark", description="DSIR data selection on Apache Spark.")
    parser.add_argument("command", choices=COMMANDS,
                        help="a single stage, run = all stages in order, or explain = why documents got their weight")
    parser.add_argument("--config", required=True, help="YAML config (see conf/default.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a setting, e.g. --set resample.seed=7 (repeatable)")
    parser.add_argument("--force", action="store_true", help="run: recompute stages that are already complete")
    parser.add_argument("--take-over", action="store_true",
                        help="take the run directory's lease from a run that stopped refreshing it")
    parser.add_argument("--id", dest="ids", action="append", default=[], metavar="ID",
                        help="explain: a document's id (repeatable)")
    parser.add_argument("--top", type=int, default=10, help="explain: n-grams shown per side (default 10)")
    parser.add_argument("--log-level", default="INFO", help="driver log level (default INFO)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("py4j").setLevel(logging.WARNING)
    try:
        config = load_config(args.config, args.overrides)
        requested_implementation()  # a wrong DSIR_SPARK_FEATURIZER fails here, not in a Spark task
    except (ConfigError, ValueError) as exc:
        print(f"dsir-spark: config error: {exc}", file=sys.stderr)
        return 2

    from dsir_spark.io import InputError
    from dsir_spark.lease import LeaseError
    from dsir_spark.model import FitError
    from dsir_spark.pipeline import complete_without_session, run_pipeline
    from dsir_spark.resampling import ResampleError
    from dsir_spark.rundir import RunDirError, StageOrderError
    from dsir_spark.session import SessionError, session_for_job

    if args.command == "run" and not args.force:
        # Nothing to do (every stage complete, all of it readable here): answer without starting Spark.
        records = complete_without_session(config)
        if records is not None:
            _print_records(records)
            return 0
    try:
        spark = session_for_job(f"dsir-spark {args.command}")
    except SessionError as exc:
        print(f"dsir-spark: {exc}", file=sys.stderr)
        return 1
    if args.command == "explain":
        return _explain(spark, config, args.ids, args.top)
    try:
        stages = None if args.command == "run" else (args.command,)
        force = args.force or args.command != "run"
        records = run_pipeline(spark, config, force=force, stages=stages, take_over=args.take_over)
    except (InputError, FitError, ResampleError, StageOrderError, RunDirError, ConfigError, LeaseError) as exc:
        print(f"dsir-spark: {exc}", file=sys.stderr)
        return 1
    _print_records(records)
    return 0


def _print_records(records: dict) -> None:
    for name, record in records.items():
        shown = {k: record[k] for k in ("seconds", "rows_in", "rows_out", "skipped") if k in record}
        print(f"{name}: {json.dumps(shown)}")


def _explain(spark, config, ids: list[str], top: int) -> int:
    from dsir_spark.io import InputError
    from dsir_spark.model import FitError
    from dsir_spark.stages.explain import explain, format_explanation

    if not ids:
        print("dsir-spark: explain needs at least one --id", file=sys.stderr)
        return 2
    try:
        explanations = explain(spark, config, ids, top)
    except (InputError, FitError, FileNotFoundError) as exc:
        print(f"dsir-spark: {exc}", file=sys.stderr)
        return 1
    print("\n\n".join(format_explanation(e) for e in explanations))
    return 0


if __name__ == "__main__":
    sys.exit(main())
