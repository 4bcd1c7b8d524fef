"""`harness compare RUN_A RUN_B`: two runs' fast-path windows side by side, with deltas."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from checkers.history import HistoryError
from harness.report.compare import (
    RunNotFound,
    differences,
    html_page,
    load_run,
    resolve_run,
    terminal,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_a", metavar="RUN_A", help="run directory (or test dir, or store)")
    parser.add_argument("run_b", metavar="RUN_B", help="run directory (or test dir, or store)")
    parser.add_argument("--html", metavar="OUT", default=None,
                        help="also write the comparison as a self-contained HTML page")


def run(args: argparse.Namespace) -> int:
    try:
        a = load_run(resolve_run(args.run_a))
        b = load_run(resolve_run(args.run_b))
    except (RunNotFound, HistoryError) as exc:
        print(f"harness compare: {exc}", file=sys.stderr)
        return 3
    differ = differences(a, b)
    if differ:
        print(f"note: the runs differ in more than their timing: {'; '.join(differ)}")
    print(terminal(a, b))
    if args.html:
        out = Path(args.html)
        out.write_text(html_page(a, b), encoding="utf-8")
        print(f"html: {out}")
    return 0
