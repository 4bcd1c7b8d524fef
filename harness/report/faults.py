"""The faults of a run as intervals a person can read: what kind, on which nodes, which side of a
partition each node was on, from when to when."""

from __future__ import annotations

from typing import Any

from checkers.perf import NEMESIS

FAULT_START = {"start-partition": "partition", "start-delay": "delay", "pause": "pause",
               "kill": "kill"}
FAULT_STOP = {"stop-partition": "partition", "stop-delay": "delay", "resume": "pause",
              "restart": "kill"}


def partition_sides(cut: list[list[str]], nodes: list[str]) -> str:
    """`n1 | n2 n3` when the cut splits the nodes into groups that cannot reach each other and
    are whole inside; otherwise the links cut (`n1-n2` both ways, `n1->n2` one way only)."""
    edges = {(a, b) for a, b in (tuple(e) for e in cut if len(e) == 2)}
    names = sorted(set(nodes) | {n for e in edges for n in e})
    group = {n: n for n in names}

    def root(n: str) -> str:
        while group[n] != n:
            n = group[n]
        return n

    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if (a, b) not in edges and (b, a) not in edges:
                group[root(a)] = root(b)
    sides: dict[str, list[str]] = {}
    for n in names:
        sides.setdefault(root(n), []).append(n)
    clean = len(sides) > 1 and all(
        ((a, b) in edges) == (root(a) != root(b)) for a in names for b in names if a != b)
    if clean:
        return " | ".join(" ".join(s) for s in sorted(sides.values()))
    links = []
    for a, b in sorted(edges):
        if (b, a) in edges:
            if a < b:
                links.append(f"{a}-{b}")
        else:
            links.append(f"{a}->{b}")
    return "links cut: " + ", ".join(links) if links else "nothing cut"


def _describe(kind: str, value: dict[str, Any], nodes: list[str],
              cluster: list[str]) -> tuple[str, str]:
    """(short label, what it did in words)."""
    shape = str(value.get("shape") or "")
    if kind in ("pause", "kill"):
        targets = ", ".join(nodes) if nodes else "?"
        return f"{kind} {targets}", f"{kind} {targets}"
    if kind == "partition" and isinstance(value.get("cut"), list):
        sides = partition_sides(value["cut"], cluster or nodes)
        return f"partition {shape}".strip(), f"partition {shape}: {sides}".replace("  ", " ")
    if kind == "partition" and value.get("leader"):
        detail = f"partition {shape}: leader {value['leader']} stalled"
        if value.get("new_leader"):
            detail += f", then cut from the new leader {value['new_leader']}"
        return f"partition {shape}".strip(), detail
    label = f"{kind} {shape}".strip()
    return label, label + (f" on {', '.join(nodes)}" if nodes else "")


def fault_intervals(history: list[dict], end_ns: int) -> list[dict[str, Any]]:
    """Fault intervals from the nemesis ops: a start op opens one, its stop (or the final heal)
    closes it; one still open at the end of the history lasts to the end."""
    cluster = sorted({op["node"] for op in history
                      if op.get("process") != NEMESIS and isinstance(op.get("node"), str)})
    opened: dict[str, list[dict[str, Any]]] = {}
    out: list[dict[str, Any]] = []
    for op in history:
        if op.get("process") != NEMESIS or op.get("type") != "invoke":
            continue
        f, t = op.get("f"), int(op.get("time") or 0)
        if f in FAULT_START:
            kind = FAULT_START[f]
            value = op.get("value") if isinstance(op.get("value"), dict) else {}
            nodes = [n for n in op.get("node") or [] if isinstance(n, str)]
            label, detail = _describe(kind, value, nodes, sorted(set(cluster) | set(nodes)))
            fault = {"kind": kind, "f": f, "start": t, "end": None, "label": label,
                     "detail": detail, "nodes": nodes, "value": value}
            opened.setdefault(kind, []).append(fault)
            out.append(fault)
        elif f in FAULT_STOP and opened.get(FAULT_STOP[f]):
            opened[FAULT_STOP[f]].pop(0)["end"] = t
        elif f == "heal":
            for faults in opened.values():
                for fault in faults:
                    fault["end"] = t
            opened.clear()
    for fault in out:
        if fault["end"] is None:
            fault["end"] = end_ns
            fault["label"] += " (never stopped)"
            fault["detail"] += " (never stopped)"
        fault["start_s"] = fault["start"] / 1e9
        fault["end_s"] = fault["end"] / 1e9
        fault["duration_s"] = (fault["end"] - fault["start"]) / 1e9
    return out


def faults_during(faults: list[dict[str, Any]], start_ns: int,
                  end_ns: int | None) -> list[dict[str, Any]]:
    """The faults in force at some moment of [start, end] (end None: open-ended)."""
    return [f for f in faults
            if f["start"] <= (end_ns if end_ns is not None else f["end"]) and f["end"] >= start_ns]
