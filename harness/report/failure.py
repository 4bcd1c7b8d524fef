"""Where and when each checker's evidence happened, for the pages a person reads: the failing
operations with their process, node and times, the faults in force then, and tables of the
other checkers' evidence (divergent slots per node, duplicated and lost updates)."""

from __future__ import annotations

import json
from typing import Any

from checkers.agreement import describe_command
from harness.report.faults import faults_during

LATENCY_PLOT = "report.html#plot-latency"
TIMELINE = "timeline.html"
EXPLANATION = "linearizability.html"


# the checker fields evidence_tables shows as tables (the report does not repeat them as JSON)
TABLED = {"agreement": {"divergent"},
          "exactly-once": {"duplicates", "lost", "failed_applied", "unexpected"},
          "set": {"lost", "unexpected", "failed_but_present"}}


def timeline_anchor(invoke_index: int) -> str:
    return f"op-{invoke_index}"


def by_index(history: list[dict]) -> dict[int, dict]:
    return {int(op["index"]): op for op in history if isinstance(op.get("index"), int)}


def op_facts(op: dict[str, Any], entries: dict[int, dict], role: str) -> dict[str, Any]:
    """One checker op (with invoke_index / complete_index) joined to its history entries."""
    invoke = entries.get(op.get("invoke_index"), {})  # type: ignore[arg-type]
    complete = entries.get(op.get("complete_index"), {})  # type: ignore[arg-type]
    start = invoke.get("time")
    end = complete.get("time")
    return {
        "role": role,
        "text": op.get("text") or op.get("f"),
        "process": op.get("process"),
        "node": complete.get("node") or invoke.get("node") or op.get("node"),
        "client": invoke.get("client"),
        "seq": invoke.get("seq"),
        "status": op.get("status"),
        "start": start,
        "end": end,
        "start_s": start / 1e9 if isinstance(start, int) else None,
        "end_s": end / 1e9 if isinstance(end, int) else None,
        "latency_ms": (end - start) / 1e6 if isinstance(start, int) and isinstance(end, int)
        else None,
        "invoke_index": op.get("invoke_index"),
        "href": f"{TIMELINE}#{timeline_anchor(op['invoke_index'])}"
        if isinstance(op.get("invoke_index"), int) else None,
    }


def linearizability_context(lin: dict[str, Any], history: list[dict],
                            faults: list[dict[str, Any]]) -> dict[str, Any] | None:
    """What the explanation page shows above its timeline: the failing op, the op it
    contradicts, each with node and times, and the faults in force while they ran."""
    failure = lin.get("failure") if lin.get("valid") is False else None
    if not isinstance(failure, dict) or not isinstance(failure.get("op"), dict):
        return None
    entries = by_index(history)
    rows = [op_facts(failure["op"], entries, "cannot be linearized")]
    if isinstance(failure.get("missed"), dict):
        rows.append(op_facts(failure["missed"], entries, "acknowledged write it missed"))
    if isinstance(failure.get("read_from"), dict):
        rows.append(op_facts(failure["read_from"], entries, "wrote the value it returned"))
    if len(rows) == 1:
        # found by the search: the last update of the linearizable prefix set the state the
        # failing op contradicts
        last = next((o for o in reversed(failure.get("prefix_tail") or [])
                     if o.get("f") not in ("read", "get") and o.get("status") != "fail"), None)
        if last is not None:
            state = last.get("state_after")
            left = "nothing" if state is None else json.dumps(state, default=str)
            rows.append(op_facts(last, entries, f"last update before it (left {left})"))
    failing = rows[0]
    in_force = []
    if failing["start"] is not None:
        for f in faults_during(faults, failing["start"], failing["end"]):
            in_force.append({"label": f["label"], "detail": f.get("detail") or f["label"],
                             "start_s": f["start_s"], "end_s": f["end_s"], "kind": f["kind"]})
    nodes = {r["invoke_index"]: r["node"] for r in rows if r["node"]}
    for o in (failure.get("timeline") or {}).get("ops") or []:
        entry = entries.get(o.get("complete_index")) or entries.get(o.get("invoke_index")) or {}
        if isinstance(entry.get("node"), str):
            nodes.setdefault(o["invoke_index"], entry["node"])
    return {"rows": rows, "faults": in_force, "nodes": nodes,
            "links": [{"text": "the failing operation in the timeline",
                       "href": failing["href"]},
                      {"text": "its marker on the latency plot", "href": LATENCY_PLOT},
                      {"text": "the run's report", "href": "report.html"}]}


def _op_text(o: dict[str, Any]) -> str:
    parts = [str(o.get("f") or "?")]
    if o.get("key") is not None:
        parts.append(str(o["key"]))
    if o.get("value") is not None:
        parts.append(str(o["value"]))
    return " ".join(parts)


def evidence_tables(checkers: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Per checker, its evidence as tables (title, columns, rows of cells: text, or text with
    the href of the operation's box in the timeline)."""
    out: dict[str, list[dict[str, Any]]] = {}
    agreement = checkers.get("agreement") or {}
    divergent = agreement.get("divergent") or []
    if divergent:
        nodes = sorted({n for d in divergent for n in (d.get("values") or {})})
        out.setdefault("agreement", []).append({
            "title": f"divergent slots ({agreement.get('divergent_count', len(divergent))}, "
                     f"first {len(divergent)} shown): what each node holds",
            "columns": ["slot", *nodes],
            "rows": [[str(d.get("slot")), *[describe_command((d.get("values") or {}).get(n))
                                            if n in (d.get("values") or {}) else "(none)"
                                            for n in nodes]] for d in divergent],
        })
    once = checkers.get("exactly-once") or {}
    for key, title in (("duplicates", "updates applied more than once"),
                       ("lost", "acknowledged updates in no slot"),
                       ("failed_applied", "updates reported failed yet applied")):
        items = once.get(key) or []
        if not items:
            continue
        rows = []
        for d in items:
            if key == "duplicates":
                rows.append([f"{d.get('client')}#{d.get('seq')}", str(d.get("f")),
                             ", ".join(str(s) for s in d.get("slots") or []),
                             ", ".join(d.get("nodes") or [])])
            else:
                start = d.get("start")
                where = d.get("invoke_index")
                rows.append([{"text": f"{d.get('client')}#{d.get('seq')}",
                              "href": f"{TIMELINE}#{timeline_anchor(where)}"}
                             if isinstance(where, int) else f"{d.get('client')}#{d.get('seq')}",
                             _op_text(d),
                             ", ".join(str(s) for s in d.get("slots") or []) or "none",
                             f"{start / 1e9:.3f}" if isinstance(start, int) else "-"])
        columns = (["command", "f", "slots", "on nodes"] if key == "duplicates"
                   else ["command", "op", "slots", "invoked at (s)"])
        out.setdefault("exactly-once", []).append({"title": title, "columns": columns,
                                                   "rows": rows})
    unexpected = once.get("unexpected") or []
    if unexpected:
        out.setdefault("exactly-once", []).append({
            "title": "slots holding commands nobody sent", "columns": ["slot", "command", "why"],
            "rows": [[str(d.get("slot")), describe_command(d.get("command")),
                      str(d.get("why"))] for d in unexpected]})
    sets = checkers.get("set") or {}
    for key, title in (("lost", "acknowledged adds missing from the final read"),
                       ("unexpected", "elements read that nobody added"),
                       ("failed_but_present", "adds reported failed yet present")):
        items = sets.get(key) or []
        if items:
            out.setdefault("set", []).append({"title": title, "columns": ["elements"],
                                              "rows": [[", ".join(str(e) for e in items)]]})
    return out

