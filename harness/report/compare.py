"""`harness compare RUN_A RUN_B`: two runs' fast-path windows side by side, with deltas.

RUN is a run directory, a test directory (its newest run) or a store (its `latest`). Figures come
from each run's results.json; a run without them (an old or interrupted one) has its windows
computed from its history.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tabulate import tabulate

VERDICT = {True: "valid", False: "INVALID", "unknown": "unknown"}


class RunNotFound(Exception):
    pass


def resolve_run(path: str | Path) -> Path:
    """A run directory from a run, test or store directory."""
    p = Path(path).resolve()  # a run's name is its parent's and its own: "." has neither
    if (p / "config.json").exists() or (p / "history.jsonl").exists():
        return p
    if (p / "latest").exists():
        return resolve_run((p / "latest").resolve())
    if p.is_dir():
        runs = sorted((d for d in p.iterdir() if d.is_dir() and (d / "config.json").exists()),
                      key=lambda d: d.name)
        if runs:
            return runs[-1]
    raise RunNotFound(f"{path}: not a run directory (no config.json or history.jsonl)")


COMPARED_SETTINGS = ("system", "backend", "workload", "nemesis", "nodes", "seed", "bugs",
                     "concurrency", "rate", "time_limit", "nemesis_timing")


def differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """The settings in which two runs differ ("seed 1 / 2"): a comparison across them is a
    comparison of more than the fast path."""
    ca = ((a.get("results") or {}).get("run") or {}) | (a.get("config") or {})
    cb = ((b.get("results") or {}).get("run") or {}) | (b.get("config") or {})
    return [f"{key.replace('_', ' ')} {_setting(ca.get(key))} / {_setting(cb.get(key))}"
            for key in COMPARED_SETTINGS if ca.get(key) != cb.get(key)]


def _setting(v: Any) -> str:
    """A setting as a person writes it: lists comma-separated, nothing as "none"."""
    if v is None:
        return "-"
    if isinstance(v, list):
        return ", ".join(_setting(x) for x in v) or "none"
    return str(v)


def load_run(run_dir: Path) -> dict[str, Any]:
    """{"dir", "name", "results", "windows"} of a stored run."""
    try:
        results = json.loads((run_dir / "results.json").read_text())
        if not isinstance(results, dict):
            results = {}
    except (OSError, ValueError):
        results = {}
    windows = (results.get("perf") or {}).get("windows")
    if not windows:
        from checkers.perf import windows as compute_windows
        from harness.report.analysis import load_history

        def read(name: str) -> Any:
            try:
                return json.loads((run_dir / name).read_text())
            except (OSError, ValueError):
                return []

        windows = compute_windows(load_history(run_dir), read("phases.json") or [],
                                  read("status-samples.json") or [])
    try:
        config = json.loads((run_dir / "config.json").read_text())
        config = config if isinstance(config, dict) else {}
    except (OSError, ValueError):
        config = {}
    return {"dir": run_dir, "name": f"{run_dir.parent.name}/{run_dir.name}", "results": results,
            "windows": windows, "config": config}


def _delta(a: Any, b: Any) -> tuple[float | None, float | None]:
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) \
            or isinstance(a, bool) or isinstance(b, bool):
        return None, None
    d = b - a
    return d, (d / a * 100.0 if a else None)


def comparison(a: dict[str, Any], b: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Per window (present in either run): rows {label, a, b, delta, pct, kind, better}."""
    from harness.report.pages import window_rows

    out: dict[str, list[dict[str, Any]]] = {}
    names = [w for w in ("warmup", "faults", "recovery")
             if w in a["windows"] or w in b["windows"]]
    for w in names:
        ra = {r["label"]: r for r in window_rows({w: a["windows"][w]})} \
            if w in a["windows"] else {}
        rb = {r["label"]: r for r in window_rows({w: b["windows"][w]})} \
            if w in b["windows"] else {}
        labels = list(ra) + [lbl for lbl in rb if lbl not in ra]
        rows = []
        for label in labels:
            va = ra[label]["cells"][0] if label in ra else None
            vb = rb[label]["cells"][0] if label in rb else None
            meta = ra.get(label) or rb[label]
            d, pct = _delta(va, vb)
            rows.append({"label": label, "a": va, "b": vb, "delta": d, "pct": pct,
                         "kind": meta["kind"], "better": meta["better"]})
        out[w] = rows
    return out


def _fmt(v: Any, kind: str = "num") -> str:
    if v is None:
        return "-"
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        if v and abs(v) < 0.1:
            return f"{v:.2g}"
        return f"{v:.2f}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def _fmt_delta(d: float | None, pct: float | None) -> tuple[str, str]:
    if d is None:
        return "", ""
    if isinstance(d, float):
        ds = f"{d:+.2g}" if d and abs(d) < 0.1 else f"{d:+.2f}"
    else:
        ds = f"{d:+d}"
    return ds, (f"{pct:+.1f}%" if pct is not None else "")


def verdict_of(run: dict[str, Any]) -> str:
    v = run["results"].get("valid")
    return VERDICT.get(v, "not checked") if run["results"] else "not checked"


def system_of(run: dict[str, Any]) -> str:
    info = run["results"].get("run") or {}
    return f"{info.get('system') or '?'} on {info.get('backend') or '?'}"


def terminal(a: dict[str, Any], b: dict[str, Any]) -> str:
    table = comparison(a, b)
    lines = [f"A: {a['name']}  ({verdict_of(a)})", f"B: {b['name']}  ({verdict_of(b)})"]
    if system_of(a) != "? on ?" or system_of(b) != "? on ?":
        lines.append(f"systems: A {system_of(a)}, B {system_of(b)}")
    lines.append("")
    if not table:
        lines.append("neither run recorded fast-path windows")
    for window, rows in table.items():
        body = []
        for r in rows:
            ds, ps = _fmt_delta(r["delta"], r["pct"])
            body.append([r["label"], _fmt(r["a"]), _fmt(r["b"]), ds, ps])
        lines.append(f"== {window} ==")
        lines.append(tabulate(body, headers=["", "A", "B", "B-A", "%"],
                              colalign=("left", "right", "right", "right", "right"),
                              disable_numparse=True))
        lines.append("")
    return "\n".join(lines)


def html_page(a: dict[str, Any], b: dict[str, Any]) -> str:
    from harness.report.pages import render

    table = comparison(a, b)
    for rows in table.values():
        for r in rows:
            r["a_text"], r["b_text"] = _fmt(r["a"]), _fmt(r["b"])
            r["delta_text"], r["pct_text"] = _fmt_delta(r["delta"], r["pct"])
            cls = ""
            if r["delta"] and r["better"]:
                good = (r["delta"] < 0) == (r["better"] == "lower")
                cls = "better" if good else "worse"
            r["cls"] = cls

    def link(run: dict[str, Any]) -> str | None:
        report = run["dir"] / "report.html"
        return report.resolve().as_uri() if report.exists() else None

    labels: list[str] = []
    for rows in table.values():
        labels += [r["label"] for r in rows if r["label"] not in labels]
    cells = {w: {r["label"]: r for r in rows} for w, rows in table.items()}
    return render("compare.html.j2", a=a, b=b, table=table, labels=labels, cells=cells,
                  va=verdict_of(a),
                  vb=verdict_of(b), link_a=link(a), link_b=link(b),
                  valid_a=a["results"].get("valid", "unknown"),
                  valid_b=b["results"].get("valid", "unknown"))
