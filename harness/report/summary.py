"""The terminal summary printed at the end of a run."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from tabulate import tabulate

from harness.report.analysis import load_history

VERDICT = {True: "valid", False: "INVALID", "unknown": "unknown"}


def phase_table(run_dir: Path) -> list[list]:
    try:
        phases = json.loads((run_dir / "phases.json").read_text())
    except (OSError, ValueError):
        phases = []
    history = load_history(run_dir)
    rows = []
    for phase in phases:
        end = phase["end"] if phase["end"] is not None else float("inf")
        counts: Counter = Counter()
        for op in history:
            if op.get("process") != "nemesis" and op["type"] != "invoke" \
                    and phase["start"] <= op["time"] < end:
                counts[op["type"]] += 1
        seconds = ((phase["end"] or phase["start"]) - phase["start"]) / 1e9
        rows.append([phase["name"], f"{seconds:.1f}", counts["ok"], counts["fail"],
                     counts["info"]])
    return rows


def print_summary(outcome) -> None:
    run_dir = outcome.run_dir
    results = outcome.results
    print(tabulate(phase_table(run_dir), headers=["phase", "s", "ok", "fail", "info"]))
    print()
    rows = []
    for name, result in results.get("checkers", {}).items():
        reason = result.get("reason") or result.get("error") or ""
        rows.append([name, VERDICT.get(result.get("valid"), str(result.get("valid"))),
                     str(reason)[:100]])
    if rows:
        print(tabulate(rows, headers=["checker", "verdict", "reason"]))
        print()
    if outcome.harness_error:
        print(f"harness error: {outcome.harness_error}")
    if outcome.interrupted:
        print("interrupted: the history so far is kept; the run is marked incomplete")
    config = json.loads((run_dir / "config.json").read_text())
    print(f"verdict: {VERDICT.get(results.get('valid'), results.get('valid'))}   seed: "
          f"{config.get('seed')}   system: {config.get('system', 'paxos')} on "
          f"{config.get('backend', 'local')}")
    report = run_dir / "report.html"
    print(f"run: {run_dir}" + (f"\nreport: {report}" if report.exists() else ""))
