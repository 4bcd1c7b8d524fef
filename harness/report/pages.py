"""The run report: `report.html` and `timeline.html`, self-contained pages in the run directory.

Plots are matplotlib figures (Agg backend) inlined as base64 PNG; pages are jinja2 templates from
`harness/report/templates/` (loaded with importlib.resources). Links to node logs and to the JSON
files are relative, so a run directory can be moved or served as it is.
"""

from __future__ import annotations

import base64
import functools
import importlib.resources
import io
import json
from pathlib import Path
from typing import Any

import jinja2

from checkers.perf import NEMESIS, Op, pair_ops, time_series
from harness.report.analysis import load_history
from harness.report.failure import (
    EXPLANATION,
    TABLED,
    evidence_tables,
    linearizability_context,
    timeline_anchor,
)
from harness.report.faults import fault_intervals

VERDICT_TEXT = {True: "PASS", False: "FAIL", "unknown": "UNKNOWN"}
VERDICT_CLASS = {True: "valid", False: "invalid", "unknown": "unknown"}
TIMELINE_MAX_OPS = 20000

# nemesis f that opens / closes a fault interval, by kind
# ------------------------------------------------------------------------------- templates


@functools.cache
def environment() -> jinja2.Environment:
    def load(name: str) -> str:
        return (importlib.resources.files("harness.report") / "templates" / name).read_text("utf-8")

    env = jinja2.Environment(loader=jinja2.FunctionLoader(load), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True,
                             undefined=jinja2.ChainableUndefined)
    env.filters["ms"] = fmt_ms
    env.filters["num"] = fmt_num
    env.filters["verdict"] = lambda v: VERDICT_TEXT.get(v, str(v))
    env.filters["vclass"] = lambda v: VERDICT_CLASS.get(v, "unknown")
    env.filters["tojson_pretty"] = lambda v: json.dumps(v, indent=1, default=str)
    env.filters["short"] = short
    env.filters["ballot"] = fmt_ballot
    return env


def render(name: str, **context: Any) -> str:
    return environment().get_template(name).render(**context)


def fmt_ms(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 1000 else f"{v:,.0f}"


def fmt_num(v: Any, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v and abs(v) < 0.1:
            return f"{v:.2g}"
        return f"{v:.{digits}f}"
    return str(v)


def fmt_ballot(v: Any) -> str:
    """A ballot `[7, "n2"]` as `7 by n2`; anything else as short JSON."""
    if isinstance(v, (list, tuple)) and len(v) == 2 and isinstance(v[0], int):
        return f"{v[0]} by {v[1]}"
    return "-" if v is None else short(v)


def short(v: Any, limit: int = 120) -> str:
    s = v if isinstance(v, str) else json.dumps(v, default=str)
    return s if len(s) <= limit else s[: limit - 3] + "..."


# ---------------------------------------------------------------------------- run contents


def _read_json(path: Path, default: Any = None) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


def nemesis_events(history: list[dict]) -> list[dict[str, Any]]:
    rows = []
    for op in history:
        if op.get("process") == NEMESIS and op.get("type") != "invoke":
            node = op.get("node")
            rows.append({"time_s": (op.get("time") or 0) / 1e9, "f": op.get("f"),
                         "nodes": ", ".join(map(str, node)) if isinstance(node, list)
                         else str(node or "-"), "value": op.get("value")})
    return rows


def node_rows(run_dir: Path) -> list[dict[str, Any]]:
    nodes_dir = run_dir / "nodes"
    if not nodes_dir.is_dir():
        return []
    rows = []
    for d in sorted(p for p in nodes_dir.iterdir() if p.is_dir()):
        status = _read_json(d / "status.json")
        log = _read_json(d / "log.json")
        rows.append({
            "id": d.name,
            "status": status if isinstance(status, dict) else None,
            "log_entries": len(log.get("entries") or []) if isinstance(log, dict) else None,
            "files": [f.name for f in sorted(d.iterdir()) if f.is_file()],
            "log_tail": log_tail(d / "node.log"),
        })
    return rows


LOG_TAIL_LINES = 30
LOG_TAIL_BYTES = 16384


def log_tail(path: Path) -> str | None:
    """The last lines of a member's log (its stderr: for a Maelstrom node, its own words)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - LOG_TAIL_BYTES))
            data = f.read()
    except OSError:
        return None
    lines = data.decode(errors="replace").splitlines()
    if size > LOG_TAIL_BYTES:
        lines = lines[1:]  # the first may be cut
    return "\n".join(lines[-LOG_TAIL_LINES:]) or None


# ------------------------------------------------------------------------------------ plots


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede pyplot's first import
    import matplotlib.pyplot as plt

    return plt


OUTCOME_COLOURS = {"ok": "#2a9d3f", "fail": "#d62728", "info": "#f29e1a"}
MARKERS = {"read": "o", "write": "s", "cas": "^", "add": "D"}
FAULT_COLOURS = {"partition": "#6baed6", "pause": "#9e9ac8", "kill": "#fc9272",
                 "delay": "#fdae6b"}
PHASE_COLOUR = "#555555"


def to_data_uri(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    _plt().close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


FAULT_LABEL_LANES = 5
FAULT_LABEL_PT = 7


def _fault_labels(ax: Any, faults: list[dict]) -> list[tuple[dict, int, str]]:
    """(fault, lane, text) for each fault: its description where the lane has room for the
    whole text, else its number in the report's fault table, so no two labels overlap."""
    ax.autoscale_view()
    lo, hi = ax.get_xlim()
    fig = ax.get_figure()
    axes_pt = ax.get_position().width * fig.get_figwidth() * 72
    per_pt = (hi - lo) / max(1.0, axes_pt)

    def extent(text: str) -> float:
        return (len(text) * FAULT_LABEL_PT * 0.62 + 6) * per_pt

    lanes: list[float] = []  # where each lane's last label ends, in data units
    out = []
    for number, fault in enumerate(faults, 1):
        start = fault["start_s"]
        for text in (fault.get("detail") or fault["label"], fault["label"], f"#{number}"):
            lane = next((i for i, end in enumerate(lanes) if end <= start), None)
            if lane is None and len(lanes) < FAULT_LABEL_LANES:
                lane = len(lanes)
                lanes.append(lo)
            if lane is None and text.startswith("#"):
                lane = min(range(len(lanes)), key=lanes.__getitem__)  # the least crowded
            if lane is not None and (text.startswith("#") or start + extent(text) <= hi):
                lanes[lane] = start + extent(text)
                out.append((fault, lane, text))
                break
    return out


def _decorate(ax: Any, faults: list[dict], phases: list[dict], heal_s: float | None,
              label_faults: bool = True, mark_s: float | None = None) -> None:
    """Shade fault intervals (a legend entry per kind; labelled with what they did), mark
    phase boundaries, and `mark_s`: when the op that cannot be linearized was invoked."""
    if mark_s is not None:
        ax.axvline(mark_s, color="black", ls=":", lw=1.4, label="cannot be linearized")
    kinds_seen: set[str] = set()
    for fault in faults:
        colour = FAULT_COLOURS.get(fault["kind"], "#cccccc")
        first = fault["kind"] not in kinds_seen
        kinds_seen.add(fault["kind"])
        ax.axvspan(fault["start_s"], fault["end_s"], color=colour, alpha=0.3, lw=0,
                   label=f"{fault['kind']} (fault)" if first else None)
    if label_faults:
        for fault, lane, text in _fault_labels(ax, faults):
            ax.annotate(text, xy=(fault["start_s"], 1.0), xycoords=("data", "axes fraction"),
                        xytext=(2, -9 - 9 * lane), textcoords="offset points",
                        fontsize=FAULT_LABEL_PT, color="#222222")
    for p in phases:
        if p.get("start") is None:
            continue
        x = p["start"] / 1e9
        ax.axvline(x, color=PHASE_COLOUR, ls="--", lw=0.7)
        ax.annotate(p["name"], xy=(x, 0.0), xycoords=("data", "axes fraction"), xytext=(2, 2),
                    textcoords="offset points", fontsize=7, color=PHASE_COLOUR)
    if heal_s is not None:
        ax.axvline(heal_s, color="#2a9d3f", lw=1.2)
        ax.annotate("final heal", xy=(heal_s, 0.5), xycoords=("data", "axes fraction"),
                    xytext=(2, 0), textcoords="offset points", fontsize=7, color="#2a9d3f",
                    rotation=90)


def _figure(height: float = 3.4) -> tuple[Any, Any]:
    fig, ax = _plt().subplots(figsize=(11, height))
    ax.grid(True, alpha=0.3)
    return fig, ax


def _legend(ax: Any) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False)


def plot_latency(ops: list[Op], faults: list[dict], phases: list[dict],
                 heal_s: float | None, failing: dict[str, Any] | None = None) -> str:
    """Each completed op's latency at its invocation time, coloured by outcome, marked by f;
    `failing` (an op's facts: start_s, latency_ms, text, node) gets a labelled star."""
    fig, ax = _figure(4.0)
    done = [o for o in ops if o.end is not None]
    for status in ("ok", "fail", "info"):
        for f in sorted({o.f for o in done}):
            pts = [o for o in done if o.status == status and o.f == f]
            if pts:
                ax.scatter([o.start / 1e9 for o in pts],
                           [max(0.01, (o.end - o.start) / 1e6) for o in pts],  # type: ignore
                           s=8, marker=MARKERS.get(f, "o"), c=OUTCOME_COLOURS[status],
                           alpha=0.65, linewidths=0, label=f"{f} {status}")
    ax.set_yscale("log")
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel("latency (ms)")
    if not done:
        ax.text(0.5, 0.5, "no completed operations", transform=ax.transAxes, ha="center")
    if failing and failing.get("start_s") is not None:
        y = max(0.01, failing.get("latency_ms") or 0.01)
        ax.scatter([failing["start_s"]], [y], s=160, marker="*", c="black", zorder=5,
                   label="cannot be linearized")
        ax.annotate(f"{failing['text']} on {failing.get('node') or '?'}",
                    xy=(failing["start_s"], y), xytext=(6, 6), textcoords="offset points",
                    fontsize=8, fontweight="bold", zorder=6,
                    bbox={"boxstyle": "round", "fc": "white", "ec": "black", "lw": 0.6})
    _decorate(ax, faults, phases, heal_s)
    _legend(ax)
    return to_data_uri(fig)


def bucket_size(duration_s: float) -> float:
    """About 40 to 80 buckets over the run, on a readable step."""
    for step in (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0):
        if duration_s / step <= 80:
            return step
    return 120.0


def plot_quantiles(ops: list[Op], faults: list[dict], phases: list[dict],
                   heal_s: float | None, step: float, mark_s: float | None = None) -> str:
    series = time_series(ops, step)
    fig, ax = _figure()
    for name, colour in (("p50", "#1f77b4"), ("p95", "#9467bd"), ("p99", "#d62728"),
                         ("max", "#7f7f7f")):
        ys = [y if y is not None else float("nan") for y in series[name]]
        if any(y == y for y in ys):
            ax.plot(series["t"], ys, label=name, color=colour, lw=1.1, marker=".", ms=3)
    ax.set_yscale("log")
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel("ok latency (ms)")
    _decorate(ax, faults, phases, heal_s, label_faults=False, mark_s=mark_s)
    _legend(ax)
    return to_data_uri(fig)


def plot_throughput(ops: list[Op], faults: list[dict], phases: list[dict],
                    heal_s: float | None, step: float, mark_s: float | None = None) -> str:
    series = time_series(ops, step)
    fig, ax = _figure()
    for status in ("ok", "fail", "info"):
        if series[status]:
            ax.plot(series["t"], series[status], label=status, color=OUTCOME_COLOURS[status],
                    lw=1.2, drawstyle="steps-mid")
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel("completions per second")
    ax.set_ylim(bottom=0)
    _decorate(ax, faults, phases, heal_s, label_faults=False, mark_s=mark_s)
    _legend(ax)
    return to_data_uri(fig)


def plot_windows(windows: dict[str, Any]) -> str:
    """Two panels: ok latency quantiles per window on a log axis (a fault window's p99 of
    seconds must not flatten the warm-up's milliseconds), each bar labelled with its value;
    ok throughput per window on its own linear axis."""
    names = list(windows)
    fig, (lat, thr) = _plt().subplots(1, 2, figsize=(11, 3.2),
                                      gridspec_kw={"width_ratios": [3, 2]})
    width = 0.26
    positive = []
    for i, (q, colour) in enumerate((("p50", "#1f77b4"), ("p95", "#9467bd"),
                                     ("p99", "#d62728"))):
        for x, n in enumerate(names):
            v = (windows[n].get("latency_ms") or {}).get("all", {}).get(q)
            xpos = x + (i - 1) * width
            if not isinstance(v, (int, float)) or v <= 0:
                lat.annotate("none", xy=(xpos, 0), xycoords=("data", "axes fraction"),
                             xytext=(0, 3), textcoords="offset points", ha="center",
                             fontsize=6, color="#777777")
                continue
            positive.append(v)
            lat.bar(xpos, v, width, color=colour, label=q if x == 0 else None)
            lat.annotate(fmt_ms(v), xy=(xpos, v), xytext=(0, 2), textcoords="offset points",
                         ha="center", fontsize=6.5)
    lat.set_yscale("log")
    if positive:
        lat.set_ylim(min(positive) / 2, max(positive) * 3)
    lat.set_xticks(range(len(names)), names)
    lat.set_ylabel("ok latency (ms, log)")
    lat.set_title("latency quantiles", fontsize=9)
    if positive:
        lat.legend(fontsize=7, frameon=False, loc="upper left")
    lat.grid(True, axis="y", alpha=0.3, which="both")
    tput = [windows[n].get("throughput") for n in names]
    thr.bar(range(len(names)), [t or 0 for t in tput], 0.5, color="#2a9d3f")
    for x, t in enumerate(tput):
        thr.annotate("none" if t is None else f"{t:,.0f}", xy=(x, t or 0), xytext=(0, 2),
                     textcoords="offset points", ha="center", fontsize=7)
    thr.set_xticks(range(len(names)), names)
    thr.set_ylabel("ok ops/s")
    thr.set_ylim(0, max([t or 0 for t in tput] + [1]) * 1.2)
    thr.set_title("throughput", fontsize=9)
    thr.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    return to_data_uri(fig)


# --------------------------------------------------------------------------- window table


def window_rows(windows: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of the fast-path window table: {"label", "values": [per window], "kind"}.

    Shared with `harness compare`, which puts two runs' rows side by side."""
    names = list(windows)
    fs = sorted({f for w in windows.values() for f in w["latency_ms"] if f != "all"})
    rows: list[dict[str, Any]] = []

    def add(label: str, get: Any, kind: str = "num", better: str | None = None,
            counter: bool = False) -> None:
        vals = []
        for n in names:
            try:
                vals.append(get(windows[n]))
            except (KeyError, TypeError):
                vals.append(None)
        rows.append({"label": label, "cells": vals, "kind": kind, "better": better})

    add("duration (s)", lambda w: w["duration_s"])
    add("ops invoked", lambda w: w["invoked"], "int")
    add("ok", lambda w: w["ok"], "int")
    add("fail", lambda w: w["fail"], "int", "lower")
    add("info", lambda w: w["info"], "int", "lower")
    add("ok rate", lambda w: w["ok_rate"], "num", "higher")
    add("throughput (ok/s)", lambda w: w["throughput"], "num", "higher")
    add("longest time without an ok (s)", lambda w: w["longest_outage_s"], "num", "lower")
    for q in ("p50", "p95", "p99", "max"):
        add(f"latency {q} (ms)", lambda w, q=q: w["latency_ms"]["all"][q], "ms", "lower")
    for f in fs:
        for q in ("p50", "p99"):
            add(f"{f} {q} (ms)", lambda w, f=f, q=q: w["latency_ms"][f][q], "ms", "lower")
    add("elections", lambda w: w["counters"]["elections"], "int", "lower", counter=True)
    add("Phase-1 rounds", lambda w: w["counters"]["phase1_rounds"], "int", "lower", counter=True)
    add("Phase-2 rounds", lambda w: w["counters"]["phase2_rounds"], "int", counter=True)
    add("commits (counter sum)", lambda w: w["counters"]["commits"], "int", counter=True)
    add("slots chosen", lambda w: w["counters"]["slots_chosen"], "int", counter=True)
    add("messages between members", lambda w: w["counters"]["messages"], "int", counter=True)
    add("messages per operation", lambda w: w["counters"]["messages_per_op"], "num", "lower",
        counter=True)
    add("Phase-1 rounds per commit", lambda w: w["counters"]["phase1_per_commit"], "num",
        "lower", counter=True)
    add("commits without Phase 1", lambda w: w["counters"]["fast_path_fraction"], "num",
        "higher", counter=True)
    return rows


# ---------------------------------------------------------------------------------- report


def _lin_explanation(run_dir: Path, results: dict[str, Any],
                     context: dict[str, Any] | None) -> str | None:
    """Write linearizability.html (the checker's own explanation page, placed in the run by
    `context`) when it failed."""
    lin = (results.get("checkers") or {}).get("linearizability") or {}
    if lin.get("valid") is not False:
        return None
    from checkers.explain import render_html

    (run_dir / EXPLANATION).write_text(
        render_html(lin, title=f"Linearizability: {run_dir.parent.name}/{run_dir.name}",
                    context=context),
        encoding="utf-8")
    return EXPLANATION


def write_report(run_dir: Path, results: dict) -> Path:
    """Write report.html and timeline.html into the run directory; return report.html's path."""
    run_dir = Path(run_dir)
    history = load_history(run_dir)
    config = _read_json(run_dir / "config.json", {}) or {}
    phases = [p for p in (_read_json(run_dir / "phases.json", []) or []) if isinstance(p, dict)]
    ops = pair_ops(history)
    end_ns = max([int(op.get("time") or 0) for op in history] + [0])
    faults = fault_intervals(history, end_ns)
    heals = [op for op in history if op.get("process") == NEMESIS and op.get("f") == "heal"]
    heal_s = (heals[-1].get("time") or 0) / 1e9 if heals else None
    duration_s = end_ns / 1e9
    step = bucket_size(duration_s)
    perf = results.get("perf") or {}
    windows = perf.get("windows") or {}
    checkers = results.get("checkers") or {}
    lin_context = linearizability_context(checkers.get("linearizability") or {}, history, faults)
    failing = lin_context["rows"][0] if lin_context else None
    mark_s = failing["start_s"] if failing else None
    plots = []
    plot_errors = []
    specs = [
        ("latency", "Latency over time",
         "Every completed operation at its invocation time; colour is the outcome, the marker "
         "its kind. Shaded: fault intervals (labelled); dashed: phase boundaries; green: the "
         "final heal." + (" The black star is the operation that cannot be linearized."
                          if failing else ""),
         lambda: plot_latency(ops, faults, phases, heal_s, failing)),
        ("quantiles", "Latency quantiles over time",
         f"p50, p95, p99 and max latency of ok operations completing in each {step:g} s.",
         lambda: plot_quantiles(ops, faults, phases, heal_s, step, mark_s)),
        ("throughput", "Throughput over time",
         f"Completions per second by outcome, in {step:g} s buckets.",
         lambda: plot_throughput(ops, faults, phases, heal_s, step, mark_s)),
    ]
    if windows:
        specs.append(("windows", "Fast path per window",
                      "Latency quantiles of ok operations per window (log axis, each bar "
                      "labelled) and ok throughput per window.", lambda: plot_windows(windows)))
    for ident, title, caption, make in specs:
        try:
            plots.append({"id": ident, "title": title, "caption": caption, "src": make()})
        except Exception as exc:  # noqa: BLE001 - one broken plot must not cost the report
            plot_errors.append(f"{title}: {type(exc).__name__}: {exc}")
    lin_page = _lin_explanation(run_dir, results, lin_context)
    timeline_path = write_timeline(run_dir, history, ops, results, failing)
    page = render(
        "report.html.j2",
        title=f"{(results.get('run') or {}).get('test') or run_dir.parent.name} / {run_dir.name}",
        results=results,
        run=results.get("run") or {},
        config=config,
        checkers=checkers,
        windows=windows,
        window_names=list(windows),
        window_rows=window_rows(windows) if windows else [],
        recovery=perf.get("recovery") or {},
        fast_path=perf.get("fast_path") or {},
        plots=plots,
        plot_errors=plot_errors,
        faults=faults,
        nemesis=nemesis_events(history),
        phases=phases,
        nodes=node_rows(run_dir),
        lin=checkers.get("linearizability"),
        lin_page=lin_page,
        lin_context=lin_context,
        evidence=evidence_tables(checkers),
        timeline=timeline_path.name,
        counts={t: sum(1 for o in ops if o.status == t) for t in ("ok", "fail", "info")},
        n_ops=len(ops),
        details=_details(checkers),
        files=[f for f in ("results.json", "history.jsonl", "config.json", "phases.json",
                           "status-samples.json", "plan.json") if (run_dir / f).exists()],
    )
    out = run_dir / "report.html"
    out.write_text(page, encoding="utf-8")
    return out


def _details(checkers: dict[str, Any]) -> dict[str, dict[str, list]]:
    """Per checker: its scalar figures (a table) and its lists and maps (shown as JSON)."""
    out = {}
    skip = {"valid", "reason", "failure", "error"}
    for name, c in checkers.items():
        scalars, blocks = [], []
        for k, v in c.items():
            if k in skip or k in TABLED.get(name, ()):
                continue
            if isinstance(v, (dict, list)):
                if v:
                    blocks.append((k, json.dumps(v, indent=1, default=str)[:20000]))
            else:
                scalars.append((k, v))
        out[name] = {"scalars": scalars, "blocks": blocks}
    return out


# -------------------------------------------------------------------------------- timeline

TIMELINE_ROW_PX = 7
TIMELINE_COL_PX = 150


def _box_value(o: Op) -> str:
    """What a timeline box shows of its op's value: a cas as `3 -> 2`, an ok read what it read."""
    if o.f == "cas" and isinstance(o.value, list) and len(o.value) == 2:
        return f"{short(o.value[0], 11)} -> {short(o.value[1], 11)}"
    return short(o.output if o.f == "read" and o.status == "ok" else o.value, 24)


def write_timeline(run_dir: Path, history: list[dict], ops: list[Op],
                   results: dict[str, Any], failing: dict[str, Any] | None = None) -> Path:
    """timeline.html: one column per process, ops as boxes from invocation to completion, in
    history order (Jepsen's layout: concurrency shows as overlap). Each box's id is
    `op-<invoke index>`; `failing` (the op that cannot be linearized) is outlined and links
    to its explanation."""
    failing_index = failing.get("invoke_index") if failing else None
    shown = ops[:TIMELINE_MAX_OPS]
    last_index = max([int(op.get("index", i)) for i, op in enumerate(history)] + [0])
    processes = sorted({o.process for o in shown}, key=lambda p: (str(type(p)), p))
    col = {p: i + 1 for i, p in enumerate(processes)}  # column 0: the nemesis
    boxes = []
    for o in shown:
        end_index = o.complete_index if o.complete_index is not None else last_index
        latency = f"{(o.end - o.start) / 1e6:.2f} ms" if o.end is not None else "never completed"
        parts = [f"process {o.process}", f"{o.f} {o.key if o.key is not None else ''}",
                 f"value {short(o.value, 80)}", f"-> {o.status}"]
        if o.output is not None and o.f == "read":
            parts.append(f"read {short(o.output, 200)}")
        if o.error:
            parts.append(f"error {o.error}")
        parts += [f"latency {latency}", f"at {o.start / 1e9:.3f} s",
                  f"history index {o.invoke_index}..{o.complete_index}"]
        if o.client is not None:
            parts.append(f"client {o.client} seq {o.seq}")
        if o.node is not None:
            parts.append(f"node {o.node}")
        label_value = _box_value(o)
        is_failing = o.invoke_index == failing_index
        boxes.append({
            "id": timeline_anchor(o.invoke_index),
            "left": col[o.process] * TIMELINE_COL_PX + 2,
            "top": o.invoke_index * TIMELINE_ROW_PX,
            "height": max(12, (end_index - o.invoke_index) * TIMELINE_ROW_PX - 1),
            "cls": o.status + (" failing" if is_failing else ""),
            "label": f"{o.f} {o.key if o.key is not None else ''} {label_value}"
                     + (f" on {o.node}" if is_failing and o.node else ""),
            "title": "\n".join(parts),
            "href": EXPLANATION if is_failing else None,
        })
    for op in history:
        if op.get("process") == NEMESIS and op.get("type") == "invoke":
            boxes.append({
                "left": 2, "top": int(op.get("index", 0)) * TIMELINE_ROW_PX,
                "height": 2 * TIMELINE_ROW_PX, "cls": "nemesis",
                "label": f"{op.get('f')} {','.join(op.get('node') or [])}",
                "title": f"{op.get('f')} {short(op.get('value'), 200)} nodes {op.get('node')} "
                         f"at {(op.get('time') or 0) / 1e9:.3f} s",
            })
    page = render("timeline.html.j2", title=f"Timeline: {run_dir.parent.name}/{run_dir.name}",
                  boxes=boxes, processes=processes, col_px=TIMELINE_COL_PX,
                  height=(last_index + 3) * TIMELINE_ROW_PX,
                  width=(len(processes) + 1) * TIMELINE_COL_PX + 4,
                  truncated=len(ops) > TIMELINE_MAX_OPS, n_ops=len(ops), failing=failing,
                  failing_anchor=timeline_anchor(failing_index) if failing_index is not None
                  else None, explanation=EXPLANATION,
                  verdict=results.get("valid"))
    out = run_dir / "timeline.html"
    out.write_text(page, encoding="utf-8")
    return out
