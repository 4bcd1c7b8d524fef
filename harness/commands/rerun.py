"""`harness rerun RUN`: the same configuration and seed again, as a new run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.run.config import ConfigError, RunConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN", help="a run directory (store/<test>/<time>)")
    parser.add_argument("--store", default=None, help="store the new run here instead")
    parser.add_argument("--quiet", action="store_true", help="no live progress line")


def run(args: argparse.Namespace) -> int:
    from harness.commands.run import execute_and_summarize

    path = Path(args.run_dir) / "config.json"
    try:
        config = RunConfig.load(path)
        if args.store:
            config.store = args.store
        config.validate()
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else exc
        print(f"harness rerun: {path}: {reason}", file=sys.stderr)
        return 3
    except ConfigError as exc:
        print(f"harness rerun: {path}: {exc}", file=sys.stderr)
        return 3
    return execute_and_summarize(config, "rerun", progress=not args.quiet)
