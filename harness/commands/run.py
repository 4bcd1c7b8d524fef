"""`harness run`: deploy a cluster, drive clients under faults, check the history."""

from __future__ import annotations

import argparse
import sys

from harness.run.config import ConfigError, add_run_arguments, config_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser)
    parser.add_argument("--quiet", action="store_true", help="no live progress line")


def run(args: argparse.Namespace) -> int:
    from harness.report.summary import print_summary
    from harness.run.controller import RunRefused, execute

    config = config_from_args(args)
    try:
        config.validate()
    except ConfigError as exc:
        print(f"harness run: {exc}", file=sys.stderr)
        return 3
    config.with_seed()
    try:
        outcome = execute(config, progress=not args.quiet)
    except RunRefused as exc:
        print(f"harness run: {exc}", file=sys.stderr)
        return 3
    print_summary(outcome)
    return outcome.exit_code
