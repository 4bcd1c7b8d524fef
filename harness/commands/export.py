"""`harness export RUN --format edn`: a run's history in another format, for other tools.

EDN is Jepsen's `history.edn`, one op map per line, which Knossos and Elle read. The ops map one
to one (our `fail` and Jepsen's both mean "did not happen"; a cas's `compare_failed` becomes
`:compare-failed true`). Knossos reads some things its own way (a nil read is "value unknown";
every `:fail` did not happen): `harness check` of the export applies those rules, which are
weaker than ours on the same ops, never stronger. Exit status: 0 written, 3 bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from checkers import formats
from checkers.history import HistoryError

EXIT_BAD_INPUT = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN",
                        help="run directory (or a test directory: its newest run; a store: its "
                             "latest run; or a history file)")
    parser.add_argument("--format", choices=("edn", "jsonl"), default="edn",
                        help="what to write (default edn)")
    parser.add_argument("--output", "-o", metavar="FILE",
                        help="write there instead of to standard output")


def run(args: argparse.Namespace) -> int:
    from harness.report.compare import RunNotFound, resolve_run

    source = Path(args.run)
    if not source.is_file():
        try:
            source = resolve_run(args.run) / "history.jsonl"
        except RunNotFound as exc:
            print(f"harness export: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
    try:
        hist = formats.read(source)
    except HistoryError as exc:
        if exc.path is None:
            exc.path = str(source)
        print(f"harness export: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    write = formats.write_edn if args.format == "edn" else formats.write_jsonl
    if args.output is None:
        write(hist.ops, sys.stdout)
        return 0
    target = Path(args.output)
    tmp = target.with_name(target.name + ".part")
    try:
        with tmp.open("w", encoding="utf-8") as out:
            write(hist.ops, out)
        tmp.replace(target)  # never a half-written file under the name asked for
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        print(f"harness export: cannot write {target}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0
