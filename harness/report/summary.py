"""The terminal summary printed at the end of a run."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.text import Text
from tabulate import tabulate

from harness.report.analysis import load_history

VERDICT = {True: "valid", False: "INVALID", "unknown": "unknown", "n/a": "n/a"}
COLOUR = {True: "green", False: "red", "n/a": "blue"}


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


def coloured(text: str, colour: str, terminal: bool) -> str:
    """`text` in bold `colour` on a terminal (rich renders the escape codes), plain elsewhere."""
    if not terminal:
        return text
    console = Console(force_terminal=True, color_system="standard", highlight=False)
    with console.capture() as out:
        console.print(Text(text, style=f"bold {colour}"), end="")
    return out.get()


def checker_table(results: dict, terminal: bool | None = None) -> str:
    """Each checker's verdict (coloured on a terminal) and its whole reason, wrapped: the
    reason is what a person reads first, so it is never cut."""
    if terminal is None:
        terminal = Console().is_terminal
    rows = []
    for name, result in (results.get("checkers") or {}).items():
        valid = result.get("valid")
        reason = result.get("reason") or result.get("error") or ""
        rows.append([name, coloured(VERDICT.get(valid, str(valid)),
                                    COLOUR.get(valid, "yellow"), terminal), str(reason)])
    if not rows:
        return ""
    return tabulate(rows, headers=["checker", "verdict", "reason"],
                    maxcolwidths=[None, None, 90])


def print_summary(outcome) -> None:
    run_dir = outcome.run_dir
    results = outcome.results
    print(tabulate(phase_table(run_dir), headers=["phase", "s", "ok", "fail", "info"]))
    print()
    table = checker_table(results)
    if table:
        print(table)
        print()
    if outcome.harness_error:
        print(f"harness error: {outcome.harness_error}")
    if outcome.interrupted:
        print("interrupted: the history so far is kept; the run is marked incomplete")
    config = json.loads((run_dir / "config.json").read_text())
    verdict = VERDICT.get(results.get("valid"), results.get("valid"))
    colour = COLOUR.get(results.get("valid"), "yellow")
    # rich colours the verdict on a terminal and prints it plain elsewhere
    Console(soft_wrap=True, highlight=False).print(
        f"verdict: [bold {colour}]{verdict}[/]   seed: {config.get('seed')}   system: "
        f"{config.get('system', 'paxos')} on {config.get('backend', 'local')}")
    report = run_dir / "report.html"
    print(f"run: {run_dir}" + (f"\nreport: {report}" if report.exists() else ""))
