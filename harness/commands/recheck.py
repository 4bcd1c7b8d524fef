"""`harness recheck RUN`: check a stored run again, rewrite results.json and the report.

Harness trouble recorded by the original run (a harness error, an interrupted run) is carried
over: a recheck can find a violation in such a run, never turn it into a pass.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN",
                        help="run directory (or a test directory: its newest run; or a store: "
                             "its latest run)")
    parser.add_argument("--quiet", action="store_true", help="print the verdict line only")


def run(args: argparse.Namespace) -> int:
    from checkers.history import HistoryError
    from harness.report.analysis import load_history
    from harness.report.compare import RunNotFound, resolve_run
    from harness.report.summary import VERDICT, checker_table
    from harness.run.store import analyze_and_write

    try:
        run_dir = resolve_run(args.run)
    except RunNotFound as exc:
        print(f"harness recheck: {exc}", file=sys.stderr)
        return 3
    if not (run_dir / "history.jsonl").exists():
        print(f"harness recheck: {run_dir}: no history.jsonl", file=sys.stderr)
        return 3
    try:
        load_history(run_dir)
    except HistoryError as exc:
        print(f"harness recheck: {exc}", file=sys.stderr)
        return 3
    try:
        previous = json.loads((run_dir / "results.json").read_text())
    except (OSError, ValueError):
        previous = {}
    results = analyze_and_write(run_dir, harness_error=previous.get("harness_error"),
                                incomplete=bool(previous.get("incomplete")))
    if not args.quiet:
        print(checker_table(results))
        if results.get("report_error"):
            print(f"report error: {results['report_error']}")
        report = Path(run_dir) / "report.html"
        if report.exists():
            print(f"report: {report}")
    old = previous.get("valid", "not checked") if previous else "not checked"
    new = results.get("valid")
    changed = "" if old == new else f" (was {VERDICT.get(old, old)})"
    print(f"verdict: {VERDICT.get(new, new)}{changed}   run: {run_dir}")
    return {True: 0, False: 1}.get(new, 2)
