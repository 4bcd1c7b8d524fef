"""`harness sim-detect`: how often simulated default runs catch each catalogue bug, and when.

For every bug (and the correct node), seeds 1..N of the default run on `--backend sim`, each
with only that bug: the fraction of runs whose verdict is invalid, the median simulated time to
the first evidence, the checkers that flagged it, and the simulated-to-wall time ratio. Reports
are not rendered (`harness recheck RUN` writes one); every run directory is kept.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from tabulate import tabulate


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seeds", type=int, default=20, metavar="N",
                        help="seeds 1..N for every bug (default %(default)s)")
    parser.add_argument("--bug", dest="bugs", action="append", default=[], metavar="NAME",
                        help="only these bugs (repeatable; default the whole catalogue and the "
                        "correct node)")
    parser.add_argument("--time-limit", type=float, default=30.0,
                        help="simulated seconds per run (default %(default)s)")
    parser.add_argument("--store", default="store", help="store directory (default store)")


def run(args: argparse.Namespace) -> int:
    from harness.report.analysis import load_history
    from harness.report.evidence import first_evidence_s
    from harness.run.config import ConfigError, RunConfig
    from harness.run.controller import execute
    from node.bugs import BUGS

    bugs = args.bugs or ["(none)", *BUGS]
    unknown = [b for b in bugs if b != "(none)" and b not in BUGS]
    if unknown:
        print(f"harness sim-detect: unknown bug {unknown[0]!r}; the node knows: "
              f"{', '.join(BUGS)}", file=sys.stderr)
        return 3
    if not 1 <= args.seeds <= 100_000:
        print("harness sim-detect: --seeds must be between 1 and 100000", file=sys.stderr)
        return 3
    rows = []
    simulated = wall = 0.0
    for bug in bugs:
        caught, firsts, flagged, undecided = 0, [], set(), 0
        for seed in range(1, args.seeds + 1):
            config = RunConfig(backend="sim", seed=seed, time_limit=args.time_limit,
                               bugs=[] if bug == "(none)" else [bug], store=args.store)
            try:
                config.validate()
            except ConfigError as exc:
                print(f"harness sim-detect: {exc}", file=sys.stderr)
                return 3
            t0 = time.perf_counter()
            outcome = execute(config, progress=False, report=False)
            wall += time.perf_counter() - t0
            results = outcome.results
            history = load_history(Path(outcome.run_dir))
            simulated += (history[-1]["time"] / 1e9) if history else 0.0
            if results.get("valid") is False:
                caught += 1
                flagged |= {n for n, c in results["checkers"].items() if c.get("valid") is False}
                first = first_evidence_s(results, history)
                if first is not None:
                    firsts.append(first)
            elif results.get("valid") != True:  # noqa: E712 - True, not truthy
                undecided += 1
        rows.append([bug, f"{caught}/{args.seeds}", f"{caught / args.seeds:.2f}",
                     f"{statistics.median(firsts):.1f}" if firsts else "-",
                     ", ".join(sorted(flagged)) or "-", undecided])
        print(f"{bug}: {caught}/{args.seeds} caught", file=sys.stderr, flush=True)
    print(tabulate(rows, headers=["bug", "caught", "fraction", "median s to evidence",
                                  "checkers", "undecided"]))
    print(f"\n{len(bugs) * args.seeds} runs: {simulated:.0f} simulated s in {wall:.0f} wall s "
          f"({simulated / max(wall, 1e-9):.0f}x)")
    return 0
