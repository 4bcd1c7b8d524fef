"""`harness campaign FILE.toml`: a matrix of runs (see harness.campaign.matrix), one summary."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from harness.campaign.matrix import CampaignError, load, write_index, write_junit


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE.toml", help="campaign file")
    parser.add_argument("--store", default=None, help="store directory (overrides the file)")
    parser.add_argument("--dry-run", action="store_true", help="validate and list the runs only")
    parser.add_argument("--only", default=None, help="run only entries whose label contains this")
    parser.add_argument("--seeds", default=None, metavar="N,N,...",
                        help="run every entry with these seeds instead of the file's")
    parser.add_argument("--backend", default=None, metavar="NAME",
                        help="run every entry on this backend instead of the file's (sim: the "
                        "deterministic simulation, many schedules a minute)")
    parser.add_argument("--workers", type=int, default=1, metavar="N",
                        help="run N entries at once on this machine, each in its own process "
                        "with its own loopback addresses (default 1)")
    parser.add_argument("--cluster", default=None, metavar="tcp://HOST:PORT",
                        help="run every entry as a task on this Dask scheduler's workers "
                        "(pip install 'paxos-harness[cluster]')")


def run(args: argparse.Namespace) -> int:

    try:
        seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    except ValueError:
        print(f"harness campaign: --seeds must be integers separated by commas, not "
              f"{args.seeds!r}", file=sys.stderr)
        return 3
    try:
        name, entries = load(Path(args.file), seeds)
    except CampaignError as exc:
        print(f"harness campaign: {exc}", file=sys.stderr)
        return 3
    if args.only:
        entries = [e for e in entries if args.only in e.label]
        if not entries:
            print(f"harness campaign: no entry's label contains {args.only!r}", file=sys.stderr)
            return 3
    if args.store:
        for entry in entries:
            entry.config.store = args.store
    if args.backend:
        from harness.run.config import ConfigError

        for entry in entries:
            entry.config.backend = args.backend
            try:
                entry.config.validate()
            except ConfigError as exc:
                print(f"harness campaign: --backend {args.backend}: {entry.label}: {exc}",
                      file=sys.stderr)
                return 3
    if args.dry_run:
        for entry in entries:
            print(f"{entry.label}: expect {entry.expect}"
                  + (f" ({entry.checker})" if entry.checker else ""))
        return 0
    store = Path(entries[0].config.store) if entries else Path("store")
    out_dir = store / "campaigns" / name / time.strftime("%Y%m%dT%H%M%S")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"harness campaign: cannot write {out_dir}: {exc.strerror or exc}", file=sys.stderr)
        return 3
    if not 1 <= args.workers <= 256:
        print(f"harness campaign: --workers must be between 1 and 256, not {args.workers}",
              file=sys.stderr)
        return 3
    from harness.campaign.runner import Progress, run_cluster, run_local

    started = time.time()
    properties = {"file": str(Path(args.file).resolve()), "store": str(store),
                  "workers": args.workers, "cluster": args.cluster or "-",
                  "seeds": ",".join(sorted({str(e.config.seed) for e in entries},
                                           key=lambda x: int(x) if x.isdigit() else 0))}

    with Progress(len(entries)) as progress:
        try:
            rows = run_cluster(entries, args.cluster, progress) if args.cluster else \
                run_local(entries, args.workers, progress)
        except (RuntimeError, OSError) as exc:
            print(f"harness campaign: {exc}", file=sys.stderr)
            return 3
    (out_dir / "summary.json").write_text(json.dumps({"campaign": name, "runs": rows}, indent=1,
                                                     default=str))
    write_junit(out_dir / "junit.xml", name, rows, started, properties)
    write_index(out_dir / "index.html", name, rows, properties)
    _print_table(rows)
    held = sum(r["held"] for r in rows)
    print(f"\n{held}/{len(entries)} expectations held; summary: {out_dir}")
    if any(r.get("interrupted") for r in rows):
        return 130
    if held == len(entries) and len(rows) == len(entries):
        return 0
    # A run the harness could not start says nothing about the system: unless an expectation
    # that was checked failed, that is a harness failure, not a campaign verdict.
    checked_failures = sum(1 for r in rows if not r["held"] and r["valid"] != "refused"
                           and not str(r["why"]).startswith("harness error"))
    return 1 if checked_failures else 3


_COLOUR = {True: "green", False: "red", "unknown": "yellow"}


def _print_table(rows: list[dict]) -> None:
    """One line per run, verdicts as PASS/FAIL/UNKNOWN (coloured on a terminal)."""
    from rich.console import Console
    from rich.table import Table

    from harness.report.pages import VERDICT_TEXT

    table = Table(box=None, header_style="bold", pad_edge=False)
    for name, justify in (("run", "left"), ("expect", "left"), ("verdict", "left"),
                          ("expectation", "left"), ("evidence at s", "right"), ("s", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for r in rows:
        v = r["valid"]
        word = VERDICT_TEXT.get(v, str(v))
        table.add_row(r["label"], str(r["expect"]), f"[{_COLOUR.get(v, 'yellow')}]{word}[/]",
                      "held" if r["held"] else "[red]FAILED[/]",
                      "-" if r["evidence_s"] is None else f"{r['evidence_s']:.1f}",
                      f"{r['seconds']:.0f}")
    # never wrapped nor cut: as wide as the longest label needs, even into a pipe
    needed = max((len(r["label"]) for r in rows), default=0) + 64
    Console(width=max(needed, Console().width), highlight=False).print(table)
