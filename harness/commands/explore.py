"""`harness explore --budget DURATION`: search drawn runs for a violation, then shrink it."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from harness.campaign.explore import duration, runner
from harness.run.config import ConfigError, add_run_arguments, config_from_args


def _duration(text: str) -> float:
    try:
        return duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser)
    parser.add_argument("--budget", type=_duration, default=600.0, metavar="DURATION",
                        help="search time: 90s, 5m, 1h (default 10m)")
    parser.add_argument("--shrink-budget", type=_duration, default=600.0, metavar="DURATION",
                        help="time for shrinking a failing run (default 10m)")
    parser.add_argument("--max-time-limit", type=float, default=20.0, metavar="S",
                        help="longest run drawn (default %(default)s)")
    parser.add_argument("--attempts", type=int, default=2,
                        help="tries before a shrunk run counts as passing (default %(default)s)")
    parser.add_argument("--no-shrink", action="store_true", help="stop at the first violation")
    parser.add_argument("--workers", type=int, default=1, metavar="N",
                        help="runs at once on this machine, each in its own process with its "
                        "own loopback addresses (default 1)")


def run(args: argparse.Namespace) -> int:
    from harness.backends import BackendError
    from harness.campaign.explore import explore, search_space

    base = config_from_args(args)
    if args.attempts < 1 or args.max_time_limit < 6 or not 1 <= args.workers <= 256:
        print("harness explore: --attempts must be at least 1, --max-time-limit at least 6 and "
              "--workers between 1 and 256", file=sys.stderr)
        return 3
    try:
        base.validate()
    except ConfigError as exc:
        print(f"harness explore: {exc}", file=sys.stderr)
        return 3
    base.with_seed()
    try:
        shapes, workloads = search_space(base)
    except BackendError as exc:
        print(f"harness explore: {exc}", file=sys.stderr)
        return 3
    out_dir = Path(base.store) / "explorations" / time.strftime("%Y%m%dT%H%M%S")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"harness explore: cannot write {out_dir}: {exc.strerror or exc}", file=sys.stderr)
        return 3
    print(f"exploring for {args.budget:g} s from seed {base.seed}: {base.system} on "
          f"{base.backend}, kinds {', '.join(sorted(shapes))}", file=sys.stderr)
    try:
        result = explore(base, runner, args.budget, base.seed, shapes, workloads,
                         args.max_time_limit, args.shrink_budget, args.attempts,
                         not args.no_shrink, report=lambda line: print(line, file=sys.stderr,
                                                                       flush=True),
                         workers=args.workers)
    except ValueError as exc:
        print(f"harness explore: {exc}", file=sys.stderr)
        return 3
    summary = {"seed": base.seed, "budget_s": args.budget, "system": base.system,
               "backend": base.backend, "bugs": base.bugs, **result.to_json()}
    (out_dir / "exploration.json").write_text(json.dumps(summary, indent=1, default=str))
    print(f"exploration: {out_dir / 'exploration.json'}")
    if result.interrupted:
        print("interrupted", file=sys.stderr)
        return 130
    if result.found is not None:
        print(f"violation: {result.found.why}")
        print(f"smallest failing run: harness rerun {result.smallest.run_dir}")
        return 1
    verdicts = [t.valid for t in result.runs]
    print(f"no violation in {len(verdicts)} run(s): "
          f"{sum(v is True for v in verdicts)} valid, "
          f"{sum(v not in (True, False) for v in verdicts)} not decided")
    if any(v is True for v in verdicts):
        return 0
    return 2 if any(v == "unknown" for v in verdicts) else 3
