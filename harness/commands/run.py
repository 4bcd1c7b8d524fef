"""`harness run`: deploy a cluster, drive clients under faults, check the history."""

from __future__ import annotations

import argparse
import sys

from harness.run.config import ConfigError, RunConfig, add_run_arguments, config_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser)
    parser.add_argument("--quiet", action="store_true", help="no live progress line")


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    try:
        config.validate()
    except ConfigError as exc:
        print(f"harness run: {exc}", file=sys.stderr)
        return 3
    config.with_seed()
    return execute_and_summarize(config, "run", progress=not args.quiet)


def execute_and_summarize(config: RunConfig, command: str, progress: bool) -> int:
    """Run a validated configuration, print the summary; the exit status (a refusal: 3)."""
    from harness.report.summary import print_summary
    from harness.run.controller import RunRefused, execute

    try:
        outcome = execute(config, progress=progress)
    except RunRefused as exc:
        print(f"harness {command}: {exc}", file=sys.stderr)
        return 3
    print_summary(outcome)
    return outcome.exit_code
