"""A campaign file: its matrix of runs, each with an expectation, and how a run is judged.

A campaign file has a `[campaign]` table of defaults (any `harness run` option, dashes or
underscores) and `[[matrix]]` entries, each expanding to workloads x nemeses x nodes x seeds x
bugs, each free to override any run option, with an expectation: `expect = "valid"`, or
`expect = "invalid"` with the `checker` that must say so. An entry with `explore = "5m"` is an
exploration (harness explore) per seed instead of one run: `expect = "invalid"` then means the
exploration must find a run that the checker flags within that budget, `expect = "valid"` that
it finds none.
An entry may also expect performance, as Chaos Toolkit's steady-state tolerances do, in a
`perf` table judged like the verdict (see PERF_KEYS): `recovery-s = 2` (the latency back to
normal within 2 s of the heal), `first-ok-s`, `<window>-<p50|p95|p99|max>-ms` for the warmup,
faults and recovery windows, `throughput-ratio` (recovery against warmup, at least) and
`faults-throughput-ratio` (faults against warmup, at least). A bound that could not be
measured (no faults window, latency never recovered) does not hold.
Everything is validated before the first run starts.
"""

from __future__ import annotations

import itertools
import time
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from harness.run.config import ConfigError, RunConfig, check_name

MATRIX_KEYS = {"workloads", "nemeses", "nodes", "seeds", "bugs", "expect", "checker",
               "time-limit", "name", "options", "explore", "perf"}
# A perf expectation's key -> (where in results["perf"], "max" or "min" bound, what it is).
PERF_KEYS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "recovery-s": (("recovery", "time_to_latency_recovered_s"), "max",
                   "latency back to normal after the heal, s"),
    "first-ok-s": (("recovery", "time_to_first_ok_s"), "max", "first ok after the heal, s"),
    "throughput-ratio": (("fast_path", "throughput_ratio"), "min",
                         "recovery throughput / warmup throughput"),
    "faults-throughput-ratio": (("windows", "faults", "throughput"), "min",
                                "faults throughput / warmup throughput"),
    **{f"{w}-{q}-ms": (("windows", w, "latency_ms", "all", q), "max", f"{w} {q} latency, ms")
       for w in ("warmup", "faults", "recovery") for q in ("p50", "p95", "p99", "max")},
}
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
    explore_s: float | None = None   # an exploration with this budget, not one run
    perf: dict[str, float] | None = None  # performance bounds (PERF_KEYS), judged too


def _line_of(text: str, key: str, after: int = 0) -> int:
    """1-based line where `key =` first appears in the table that starts after line `after`,
    else anywhere before the first [[matrix]] (the defaults); 0 if not found."""
    lines = text.splitlines()

    def find(first: int, stop_at_table: bool) -> int:
        for number, line in enumerate(lines[first:], first + 1):
            stripped = line.strip()
            if stop_at_table and number > first + 1 and stripped.startswith("["):
                return 0
            if stripped.split("=")[0].strip().strip('"') == key:
                return number
        return 0

    return (find(after - 1, True) if after else 0) or find(0, True) or find(after, False)


def _option_name(key: str) -> str:
    return key.replace("-", "_")


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


# Which campaign key an option's error is about (the axes are plural in a campaign file).
_AXIS_KEYS = {"--workload": "workloads", "--nemesis": "nemeses", "--nodes": "nodes",
              "--seed": "seeds", "--bug": "bugs", "--bug-node": "bug-nodes"}


def _key_of(message: str) -> str | None:
    words = [w.strip("(),:'") for w in message.split() if w.startswith(("--", "(--"))]
    if words:
        return _AXIS_KEYS.get(words[0], words[0][2:])
    # "unknown bug 'x'", "unknown nemesis 'y'", ...
    return next((key for word, key in (("workload", "workloads"), ("nemesis", "nemeses"),
                                       ("bug", "bugs"), ("node", "nodes")) if word in message),
                None)


def load(path: Path, seeds: list[int] | None = None) -> tuple[str, list[Entry]]:
    """Parse and validate a campaign; raises CampaignError with every problem found, one line
    each, naming the file and line. `seeds`, if given, replaces every entry's seeds (the same
    campaign on fresh schedules)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CampaignError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise CampaignError(f"{path}: not a TOML file (not UTF-8 text)") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CampaignError(f"{path}: {exc}") from None
    errors: list[str] = []

    def fail(message: str, key: str | None = None, after: int = 0) -> None:
        line = _line_of(text, key, after) if key else 0
        where = f"{path} line {line}" if line else str(path)
        error = f"{where}: {message}"
        if error not in errors:
            errors.append(error)

    def done() -> None:
        if errors:
            raise CampaignError("\n".join(errors))

    unknown_top = set(data) - {"campaign", "matrix"}
    for key in sorted(unknown_top):
        fail(f"unknown table {key!r} (expected [campaign] and [[matrix]])", key)
    defaults = data.get("campaign", {})
    matrices = data.get("matrix", [])
    if not isinstance(defaults, dict):
        fail("campaign must be a table ([campaign])", "campaign")
        defaults = {}
    if not isinstance(matrices, list) or not all(isinstance(m, dict) for m in matrices):
        fail("matrix must be a list of tables ([[matrix]] entries)", "matrix")
        matrices = []
    elif not matrices:
        fail("no [[matrix]] entries")
    defaults = dict(defaults)
    name = defaults.pop("name", Path(path).stem)
    try:
        check_name(name, "campaign name")
    except ConfigError as exc:
        fail(str(exc), "name")
    option_names = {f.name for f in fields(RunConfig)}
    for key in defaults:
        if _option_name(key) not in option_names:
            fail(f"unknown key {key!r} in [campaign]", key)
    entries: list[Entry] = []
    matrix_line = 0
    for number, matrix in enumerate(matrices, 1):
        matrix_line = next((i for i, line in enumerate(text.splitlines(), 1)
                            if line.strip() == "[[matrix]]" and i > matrix_line), matrix_line)
        before = len(errors)
        overrides = {}
        for key in matrix:
            if key in MATRIX_KEYS:
                continue
            if _option_name(key) in option_names and _option_name(key) not in AXES:
                overrides[key] = matrix[key]
                continue
            fail(f"unknown key {key!r} in [[matrix]] #{number}", key, matrix_line)
        expect = matrix.get("expect", "valid")
        if expect not in ("valid", "invalid"):
            fail(f"expect must be 'valid' or 'invalid', not {expect!r}", "expect", matrix_line)
        checker = matrix.get("checker")
        if checker is not None and not isinstance(checker, str):
            fail(f"checker must be a checker's name, not {checker!r}", "checker", matrix_line)
        if expect == "invalid" and not checker:
            fail("expect = 'invalid' needs the checker that must flag it", "expect",
                 matrix_line)
        label = matrix.get("name")
        if label is not None:
            try:
                check_name(label, "name")
            except ConfigError as exc:
                fail(str(exc), "name", matrix_line)
        extra = matrix.get("options", {})
        if not isinstance(extra, dict):
            fail("options must be a table", "options", matrix_line)
            extra = {}
        options = {_option_name(k): v for k, v in {**defaults, **overrides, **extra}.items()}
        for key in options:
            if key not in option_names:
                fail(f"unknown run option {key!r}", key.replace("_", "-"), matrix_line)
        explore_s = None
        if "explore" in matrix:
            from harness.campaign.explore import duration

            try:
                explore_s = duration(str(matrix["explore"]))
            except ValueError as exc:
                fail(f"explore: {exc}", "explore", matrix_line)
        perf = matrix.get("perf")
        if perf is not None:
            if not isinstance(perf, dict) or not perf:
                fail("perf must be a table of bounds, such as { recovery-s = 2 }", "perf",
                     matrix_line)
            elif explore_s is not None:
                fail("perf expectations judge one run, not an exploration", "perf",
                     matrix_line)
            elif expect != "valid":
                fail("perf expectations go with expect = 'valid' (a run that must fail has "
                     "no performance to keep)", "perf", matrix_line)
            else:
                for k, v in perf.items():
                    if k not in PERF_KEYS:
                        fail(f"unknown perf bound {k!r} (expected one of "
                             f"{', '.join(PERF_KEYS)})", "perf", matrix_line)
                    elif isinstance(v, bool) or not isinstance(v, int | float) or \
                            not 0 <= v < 1e9:
                        fail(f"perf bound {k} must be a number from 0, not {v!r}", "perf",
                             matrix_line)
        if len(errors) > before:
            continue
        if "time-limit" in matrix:
            options["time_limit"] = matrix["time-limit"]
        raw_bugs = matrix.get("bugs", [[]])
        bug_sets = [_as_list(b) if b else [] for b in _as_list(raw_bugs)]
        if matrix.get("bugs") and all(isinstance(b, str) for b in _as_list(raw_bugs)):
            bug_sets = [[b] for b in _as_list(raw_bugs)]
        combos = list(itertools.product(
            _as_list(matrix.get("workloads", options.get("workload", "register"))),
            _as_list(matrix.get("nemeses", options.get("nemesis", "default"))),
            _as_list(matrix.get("nodes", options.get("nodes", 3))),
            seeds or _as_list(matrix.get("seeds", options.get("seed", 1))),
            bug_sets,
        ))
        if not combos:
            fail(f"[[matrix]] #{number} expands to no runs (an empty list)", None, matrix_line)
        for workload, nemesis, nodes, seed, bugs in combos:
            config = RunConfig(**{**options, "workload": workload, "nemesis": nemesis,
                                  "nodes": nodes, "seed": seed,
                                  "bugs": bugs if isinstance(bugs, list) else [bugs]})
            try:
                config.validate()
            except ConfigError as exc:
                fail(str(exc), _key_of(str(exc)), matrix_line)
                continue
            entries.append(Entry(config, expect, checker,
                                 f"{'explore-' if explore_s else ''}"
                                 f"{label or default_label(config, nemesis)}-s{seed}",
                                 explore_s, dict(perf) if perf else None))
    done()
    return name, entries


def judged(entry: Entry, results: dict[str, Any]) -> tuple[bool, str]:
    """Did the run meet its expectation? (held, why)"""
    valid = results.get("valid")
    if results.get("harness_error"):
        return False, f"harness error: {results['harness_error']}"
    words = {True: "valid", False: "invalid"}
    if entry.expect == "valid":
        held, why = valid is True, f"verdict {words.get(valid, valid)}"
        if entry.perf:
            perf_held, perf_why = judged_perf(entry.perf, results.get("perf") or {})
            held, why = held and perf_held, f"{why}; {perf_why}"
        return held, why
    flagged = results.get("checkers", {}).get(entry.checker or "", {}).get("valid")
    if valid is False and flagged is False:
        return True, f"{entry.checker} flagged it"
    return False, (f"expected {entry.checker} to flag it; verdict {words.get(valid, valid)}, "
                   f"{entry.checker} {words.get(flagged, flagged)}")


def judged_perf(bounds: dict[str, float], perf: dict[str, Any]) -> tuple[bool, str]:
    """Did the run's performance stay within `bounds` (PERF_KEYS)? (held, why, in words)"""
    broken, kept = [], []
    for key, bound in bounds.items():
        path, kind, what = PERF_KEYS[key]
        value: Any = perf
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        if key == "faults-throughput-ratio" and value is not None:
            base = (perf.get("windows", {}).get("warmup") or {}).get("throughput")
            value = value / base if base else None
        if not isinstance(value, int | float):
            broken.append(f"{key} could not be measured ({what}: none in this run)")
            continue
        ok = value <= bound if kind == "max" else value >= bound
        text = f"{key} {value:.3g} {'<=' if kind == 'max' else '>='} {bound:g}"
        if ok:
            kept.append(text)
        else:
            broken.append(f"{key} {value:.3g}, past its bound {bound:g} ({what})")
    if broken:
        return False, "performance not within bounds: " + "; ".join(broken)
    return True, "performance within bounds: " + ", ".join(kept)


def default_label(config: RunConfig, nemesis: str) -> str:
    """An entry's label: its system, workload, nemesis as written (shapes included, so that
    `--only deposed` finds `partition:deposed-bridge`), nodes, bugs and a backend other than
    local."""
    system = "" if config.system == "paxos" else f"{config.system}-"
    bugs = "-" + "+".join(config.bugs) if config.bugs else ""
    backend = "" if config.backend == "local" else f"-{config.backend}"
    return f"{system}{config.workload}-{nemesis or 'default'}-n{config.nodes}{bugs}{backend}"


def _is_error(row: dict) -> bool:
    """Not a verdict about the system: a refused run, a harness error, a lost run."""
    return row["valid"] in ("refused",) or str(row["why"]).startswith(("harness error",
                                                                        "refused", "lost"))


def write_junit(path: Path, name: str, rows: list[dict], started: float | None = None,
                properties: dict[str, Any] | None = None) -> None:
    """JUnit XML as CI servers read it: a failed expectation is a <failure>, a run the
    harness could not judge an <error>; each case's <system-out> names its report."""
    import datetime
    import socket

    errors = sum(1 for r in rows if not r["held"] and _is_error(r))
    failures = sum(1 for r in rows if not r["held"]) - errors
    stamp = datetime.datetime.fromtimestamp(started or time.time()).isoformat(timespec="seconds")
    cases = []
    for r in rows:
        body = ""
        if not r["held"]:
            tag, kind = ("error", "harness") if _is_error(r) else ("failure", "expectation")
            body = (f"<{tag} type={quoteattr(kind)} message={quoteattr(r['why'])}>"
                    f"{escape(r['why'])}</{tag}>")
        out = "\n".join(filter(None, [
            f"report: {Path(r['run_dir']) / 'report.html'}" if r.get("run_dir") else None,
            r.get("rerun") and f"rerun: {r['rerun']}",
            f"verdict: {r['valid']}"]))
        cases.append(f"  <testcase classname={quoteattr(name)} name={quoteattr(r['label'])} "
                     f"time=\"{r['seconds']:.1f}\">{body}<system-out>{escape(out)}"
                     "</system-out></testcase>")
    props = "".join(f"<property name={quoteattr(k)} value={quoteattr(str(v))}/>"
                    for k, v in (properties or {}).items())
    total = sum(r["seconds"] for r in rows)
    path.write_text(
        f"<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<testsuite name={quoteattr(name)} "
        f"tests=\"{len(rows)}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"0\" "
        f"time=\"{total:.1f}\" timestamp={quoteattr(stamp)} "
        f"hostname={quoteattr(socket.gethostname())}>\n  <properties>{props}</properties>\n"
        + "\n".join(cases) + "\n</testsuite>\n")


def write_index(path: Path, name: str, rows: list[dict],
                properties: dict[str, Any] | None = None) -> None:
    """The campaign's page: a summary, then every run with its report one click away."""
    import os

    from harness.report.pages import render

    for r in rows:
        r["href"] = (os.path.relpath(Path(r["run_dir"]) / "report.html", path.parent)
                     if r.get("run_dir") else None)
    held = sum(1 for r in rows if r["held"])
    path.write_text(render("campaign_index.html.j2", campaign=name, rows=rows, held=held,
                           failed=len(rows) - held, seconds=sum(r["seconds"] for r in rows),
                           properties=properties or {}))
    for r in rows:
        r.pop("href", None)
