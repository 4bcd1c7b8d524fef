"""`harness campaign FILE.toml`: a matrix of runs, one pass/fail summary.

A campaign file has a `[campaign]` table of defaults (any `harness run` option, dashes or
underscores) and `[[matrix]]` entries, each expanding to workloads x nemeses x nodes x seeds x
bugs, each free to override any run option, with an expectation: `expect = "valid"`, or
`expect = "invalid"` with the `checker` that must say so.
Everything is validated before the first run starts.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from tabulate import tabulate

from harness.report.analysis import load_history
from harness.report.evidence import first_evidence_s
from harness.run.config import ConfigError, RunConfig

MATRIX_KEYS = {"workloads", "nemeses", "nodes", "seeds", "bugs", "expect", "checker",
               "time-limit", "name", "options"}
# Run options a matrix entry sets through its axes (plural keys), not directly.
AXES = {"workload", "nemesis", "nodes", "seed", "bugs"}


class CampaignError(ValueError):
    pass


@dataclass
class Entry:
    config: RunConfig
    expect: str
    checker: str | None
    label: str


def _line_of(text: str, key: str, after: int = 0) -> int:
    """1-based line where `key =` first appears after line `after` (0 if not found)."""
    for number, line in enumerate(text.splitlines(), 1):
        if number > after and line.strip().split("=")[0].strip().strip('"') == key:
            return number
    return 0


def _option_name(key: str) -> str:
    return key.replace("-", "_")


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def load(path: Path, seeds: list[int] | None = None) -> tuple[str, list[Entry]]:
    """Parse and validate a campaign; raises CampaignError naming the file and line.
    `seeds`, if given, replaces every entry's seeds (the same campaign on fresh schedules)."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise CampaignError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CampaignError(f"{path}: {exc}") from None

    def fail(message: str, key: str | None = None, after: int = 0) -> CampaignError:
        line = _line_of(text, key, after) if key else 0
        where = f"{path} line {line}" if line else str(path)
        return CampaignError(f"{where}: {message}")

    unknown_top = set(data) - {"campaign", "matrix"}
    if unknown_top:
        key = sorted(unknown_top)[0]
        raise fail(f"unknown table {key!r} (expected [campaign] and [[matrix]])", key)
    defaults = dict(data.get("campaign", {}))
    name = str(defaults.pop("name", Path(path).stem))
    option_names = {f.name for f in fields(RunConfig)}
    for key in defaults:
        if _option_name(key) not in option_names:
            raise fail(f"unknown key {key!r} in [campaign]", key)
    matrices = data.get("matrix", [])
    if not matrices:
        raise fail("no [[matrix]] entries")
    entries: list[Entry] = []
    matrix_line = 0
    for number, matrix in enumerate(matrices, 1):
        matrix_line = next((i for i, line in enumerate(text.splitlines(), 1)
                            if line.strip() == "[[matrix]]" and i > matrix_line), matrix_line)
        overrides = {}
        for key in matrix:
            if key in MATRIX_KEYS:
                continue
            if _option_name(key) in option_names and _option_name(key) not in AXES:
                overrides[key] = matrix[key]
                continue
            raise fail(f"unknown key {key!r} in [[matrix]] #{number}", key, matrix_line)
        expect = matrix.get("expect", "valid")
        if expect not in ("valid", "invalid"):
            raise fail(f"expect must be 'valid' or 'invalid', not {expect!r}", "expect",
                       matrix_line)
        checker = matrix.get("checker")
        if expect == "invalid" and not checker:
            raise fail("expect = 'invalid' needs the checker that must flag it", "expect",
                       matrix_line)
        options = {_option_name(k): v
                   for k, v in {**defaults, **overrides, **matrix.get("options", {})}.items()}
        for key in options:
            if key not in option_names:
                raise fail(f"unknown run option {key!r}", key.replace("_", "-"), matrix_line)
        if "time-limit" in matrix:
            options["time_limit"] = matrix["time-limit"]
        bug_sets = [_as_list(b) if b else [] for b in _as_list(matrix.get("bugs", [[]]))]
        if matrix.get("bugs") and all(isinstance(b, str) for b in matrix["bugs"]):
            bug_sets = [[b] for b in matrix["bugs"]]
        combos = itertools.product(
            _as_list(matrix.get("workloads", options.get("workload", "register"))),
            _as_list(matrix.get("nemeses", options.get("nemesis", "partition,pause,kill"))),
            _as_list(matrix.get("nodes", options.get("nodes", 3))),
            seeds or _as_list(matrix.get("seeds", options.get("seed", 1))),
            bug_sets,
        )
        for workload, nemesis, nodes, seed, bugs in combos:
            config = RunConfig(**{**options, "workload": workload, "nemesis": nemesis,
                                  "nodes": nodes, "seed": seed, "bugs": list(bugs)})
            try:
                config.validate()
            except (ConfigError, TypeError) as exc:
                key = {"workload": "workloads", "nemesis": "nemeses", "bug": "bugs",
                       "node": "nodes"}
                guess = next((v for k, v in key.items() if k in str(exc)), None)
                raise fail(str(exc), guess, matrix_line) from None
            label = matrix.get("name") or config.test_name()
            entries.append(Entry(config, expect, checker, f"{label}-s{seed}"))
    return name, entries


def judged(entry: Entry, results: dict[str, Any]) -> tuple[bool, str]:
    """Did the run meet its expectation? (held, why)"""
    valid = results.get("valid")
    if results.get("harness_error"):
        return False, f"harness error: {results['harness_error']}"
    if entry.expect == "valid":
        return valid is True, f"verdict {valid}"
    flagged = results.get("checkers", {}).get(entry.checker or "", {}).get("valid")
    if valid is False and flagged is False:
        return True, f"{entry.checker} flagged it"
    return False, f"expected {entry.checker} to flag it; verdict {valid}, {entry.checker} {flagged}"


def _bar(done: int, total: int, started: float) -> str:
    width = 24
    filled = width * done // max(1, total)
    elapsed = time.monotonic() - started
    eta = elapsed / done * (total - done) if done else 0.0
    return f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total}  eta {eta:4.0f}s"


def write_junit(path: Path, name: str, rows: list[dict]) -> None:
    failures = sum(1 for r in rows if not r["held"])
    cases = []
    for r in rows:
        body = "" if r["held"] else f"<failure message={quoteattr(r['why'])}>" \
            f"{escape('rerun: ' + r['rerun'])}</failure>"
        cases.append(f"  <testcase classname={quoteattr(name)} name={quoteattr(r['label'])} "
                     f"time=\"{r['seconds']:.1f}\">{body}</testcase>")
    path.write_text(f"<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<testsuite name={quoteattr(name)}"
                    f" tests=\"{len(rows)}\" failures=\"{failures}\">\n" + "\n".join(cases)
                    + "\n</testsuite>\n")


def write_index(path: Path, name: str, rows: list[dict]) -> None:
    import html
    import os

    items = []
    for r in rows:
        report = Path(r["run_dir"]) / "report.html"
        href = os.path.relpath(report, path.parent)
        colour = "#c8f7c5" if r["held"] else "#f7c5c5"
        items.append(f"<tr style='background:{colour}'><td><a href='{html.escape(href)}'>"
                     f"{html.escape(r['label'])}</a></td><td>{html.escape(r['expect'])}</td>"
                     f"<td>{html.escape(str(r['valid']))}</td>"
                     f"<td>{'held' if r['held'] else 'FAILED'}</td>"
                     f"<td>{html.escape(r['why'])}</td></tr>")
    path.write_text(f"<!doctype html><meta charset='utf-8'><title>{html.escape(name)}</title>"
                    f"<h1>Campaign {html.escape(name)}</h1><table border=1 cellpadding=4>"
                    "<tr><th>run</th><th>expect</th><th>verdict</th><th>expectation</th>"
                    "<th>why</th></tr>" + "".join(items) + "</table>")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE.toml", help="campaign file")
    parser.add_argument("--store", default=None, help="store directory (overrides the file)")
    parser.add_argument("--dry-run", action="store_true", help="validate and list the runs only")
    parser.add_argument("--only", default=None, help="run only entries whose label contains this")
    parser.add_argument("--seeds", default=None, metavar="N,N,...",
                        help="run every entry with these seeds instead of the file's")


def run(args: argparse.Namespace) -> int:
    from harness.run.controller import execute

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
    if args.dry_run:
        for entry in entries:
            print(f"{entry.label}: expect {entry.expect}"
                  + (f" ({entry.checker})" if entry.checker else ""))
        return 0
    store = Path(entries[0].config.store) if entries else Path("store")
    out_dir = store / "campaigns" / name / time.strftime("%Y%m%dT%H%M%S")
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    started = time.monotonic()
    for i, entry in enumerate(entries):
        print(f"{_bar(i, len(entries), started)}  {entry.label}", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        outcome = execute(entry.config, progress=False)
        held, why = judged(entry, outcome.results)
        evidence = None
        if outcome.results.get("valid") is False:
            evidence = first_evidence_s(outcome.results, load_history(outcome.run_dir))
        rows.append({"evidence_s": evidence, "label": entry.label, "run_dir": str(outcome.run_dir),
                     "expect": entry.expect + (f" ({entry.checker})" if entry.checker else ""),
                     "valid": outcome.results.get("valid"), "held": held, "why": why,
                     "seconds": time.monotonic() - t0,
                     "rerun": f"harness rerun {outcome.run_dir}"})
        if outcome.interrupted:
            break
        if not held:
            print(f"  expectation failed: {entry.label}: {why}\n  rerun: harness rerun "
                  f"{outcome.run_dir}", file=sys.stderr)
    print(f"{_bar(len(rows), len(entries), started)}", file=sys.stderr)
    (out_dir / "summary.json").write_text(json.dumps({"campaign": name, "runs": rows}, indent=1,
                                                     default=str))
    write_junit(out_dir / "junit.xml", name, rows)
    write_index(out_dir / "index.html", name, rows)
    print(tabulate([[r["label"], r["expect"], r["valid"], "held" if r["held"] else "FAILED",
                     "-" if r["evidence_s"] is None else f"{r['evidence_s']:.1f}",
                     f"{r['seconds']:.0f}"] for r in rows],
                   headers=["run", "expect", "verdict", "expectation", "evidence at s", "s"]))
    held = sum(r["held"] for r in rows)
    print(f"\n{held}/{len(entries)} expectations held; summary: {out_dir}")
    return 0 if held == len(entries) and len(rows) == len(entries) else 1
