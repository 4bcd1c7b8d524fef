"""Slot agreement across replicas, and convergence after the final heal.

Inputs are what the harness fetched from each node before teardown: the chosen log
(`{"first": f, "entries": [{"slot": s, "value": command}]}` or None when unreachable) and the final
`status` reply (`applied`, `digest`, ...; None when unreachable).

- Agreement (safety): no slot holds two different values on two nodes, and no node lists one
  slot twice with different values.
- Convergence: replicas at equal applied index have equal state digests. A replica still behind
  is reported (lagging) but is not a safety violation by itself.
"""

from __future__ import annotations

import json
from typing import Any

MAX_LISTED = 20


def canonical(value: Any) -> str:
    """Equality of commands regardless of key order or int/float spelling of JSON."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def describe_command(value: Any) -> str:
    """A chosen command as a person reads it: `write k13 = 2 (c3 seq 143)`, `no-op`."""
    if not isinstance(value, dict):
        return "nothing" if value is None else canonical(value)
    op = value.get("op")
    if op in (None, "noop"):
        return "no-op"
    text = " ".join(str(value[k]) for k in ("op", "key") if value.get(k) is not None)
    if "from" in value and "to" in value:
        text += f" {value['from']} -> {value['to']}"
    elif value.get("value") is not None:
        text += f" = {canonical(value['value'])}"
    if value.get("client") is not None:
        text += f" ({value['client']} seq {value.get('seq')})"
    return text


def merged_log(logs: dict[str, dict | None]) -> dict[int, Any]:
    """slot -> value from every reachable node's chosen log (the first node, by id, wins a
    divergent slot; `check` reports the divergence)."""
    merged: dict[int, Any] = {}
    for node in sorted(logs):
        log = logs[node]
        for entry in (log or {}).get("entries") or []:
            slot = entry.get("slot")
            if isinstance(slot, int) and slot not in merged:
                merged[slot] = entry.get("value")
    return merged


def check(logs: dict[str, dict | None],
          statuses: dict[str, dict | None] | None = None) -> dict[str, Any]:
    """Agreement of the chosen logs and, when `statuses` are given, convergence of the final
    states (statuses of None: convergence is not judged)."""
    reachable = sorted(n for n, log in logs.items() if isinstance(log, dict))
    unreachable = sorted(n for n, log in logs.items() if not isinstance(log, dict))
    slots: dict[int, dict[str, str]] = {}
    raw: dict[int, dict[str, Any]] = {}
    self_conflicts: list[dict[str, Any]] = []
    firsts: dict[str, int] = {}
    for node in reachable:
        log = logs[node]
        firsts[node] = int(log.get("first") or 0)
        for entry in log.get("entries") or []:
            slot = entry.get("slot")
            if not isinstance(slot, int):
                continue
            c = canonical(entry.get("value"))
            seen = slots.setdefault(slot, {})
            if node in seen and seen[node] != c:
                self_conflicts.append({"node": node, "slot": slot})
                continue
            seen[node] = c
            raw.setdefault(slot, {})[node] = entry.get("value")
    divergent = []
    compared = 0
    for slot in sorted(slots):
        values = slots[slot]
        if len(values) >= 2:
            compared += 1
        if len(set(values.values())) > 1:
            divergent.append({"slot": slot, "values": raw[slot]})
    if statuses is None:
        convergence = {"valid": None, "reason": "not checked: no node statuses given"}
    else:
        convergence = check_convergence(statuses)
    result: dict[str, Any] = {
        "valid": True,
        "reason": None,
        "nodes": reachable,
        "unreachable": unreachable,
        "first": firsts,
        "slots": len(slots),
        "slots_compared": compared,
        "entries": {n: len((logs[n] or {}).get("entries") or []) for n in reachable},
        "divergent_count": len(divergent),
        "divergent": divergent[:MAX_LISTED],
        "self_conflicts": self_conflicts[:MAX_LISTED],
        "convergence": convergence,
    }
    if divergent:
        d = divergent[0]
        groups: dict[str, tuple[list[str], Any]] = {}
        for n, v in sorted(d["values"].items()):
            groups.setdefault(canonical(v), ([], v))[0].append(n)
        shown = "; ".join(f"{', '.join(ns)} {'holds' if len(ns) == 1 else 'hold'} "
                          f"{describe_command(v)}" for ns, v in groups.values())
        result["valid"] = False
        result["reason"] = (f"{len(divergent)} slot(s) hold different values on different "
                            f"nodes; first slot {d['slot']}: {shown}")
    elif self_conflicts:
        s = self_conflicts[0]
        result["valid"] = False
        result["reason"] = f"node {s['node']} lists slot {s['slot']} twice with different values"
    elif convergence["valid"] is False:
        result["valid"] = False
        result["reason"] = convergence["reason"]
    elif len(reachable) < 2:
        # One log (or none) agrees with itself: no evidence either way.
        result["valid"] = "unknown"
        result["reason"] = (f"only {len(reachable)} node log(s) could be fetched "
                            f"(unreachable: {', '.join(unreachable) or '-'}); nothing to compare")
    elif not slots:
        result["valid"] = "unknown"
        result["reason"] = "every fetched chosen log is empty; nothing to compare"
    elif compared == 0:
        result["valid"] = "unknown"
        result["reason"] = "no slot is held by two nodes (logs compacted or disjoint)"
    elif convergence["valid"] == "unknown":
        result["valid"] = "unknown"
        result["reason"] = convergence["reason"]
    return result


def check_convergence(statuses: dict[str, dict | None]) -> dict[str, Any]:
    """Equal digests at equal applied index, over the nodes' final statuses."""
    applied: dict[str, int] = {}
    digests: dict[str, Any] = {}
    unreachable = []
    for node in sorted(statuses):
        st = statuses[node]
        if not isinstance(st, dict) or not isinstance(st.get("applied"), int):
            unreachable.append(node)
            continue
        applied[node] = st["applied"]
        digests[node] = st.get("digest")
    groups: dict[int, list[str]] = {}
    for node, idx in applied.items():
        groups.setdefault(idx, []).append(node)
    mismatched = []
    pairs = 0
    for idx, nodes in sorted(groups.items()):
        if len(nodes) < 2:
            continue
        pairs += len(nodes) - 1
        distinct = {digests[n] for n in nodes}
        if len(distinct) > 1:
            mismatched.append({"applied": idx, "digests": {n: digests[n] for n in nodes}})
    top = max(applied.values()) if applied else None
    lagging = {n: idx for n, idx in applied.items() if top is not None and idx < top}
    out: dict[str, Any] = {"valid": True, "reason": None, "applied": applied,
                           "digests": digests, "unreachable": unreachable,
                           "lagging": lagging, "mismatched": mismatched}
    if mismatched:
        m = mismatched[0]
        out["valid"] = False
        out["reason"] = (f"replicas at applied index {m['applied']} have different state "
                         f"digests: " + ", ".join(f"{n}={d}" for n, d in m["digests"].items()))
    elif not statuses:
        out["valid"] = "unknown"
        out["reason"] = "no final node status recorded"
    elif pairs == 0:
        out["valid"] = "unknown"
        out["reason"] = ("no two replicas reached the same applied index, so their states could "
                         f"not be compared (applied: {applied or '-'}; unreachable: "
                         f"{', '.join(unreachable) or '-'})")
    return out
