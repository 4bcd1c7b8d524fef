"""When did a run first show its violation? Seconds from the start of the run to the first
evidence each failing checker names (issue 6 reports it per bug)."""

from __future__ import annotations

from typing import Any

from harness.report.analysis import entry_at


def _completion_times(history: list[dict]) -> dict[tuple[str, int], int]:
    times: dict[tuple[str, int], int] = {}
    for op in history:
        if op.get("type") in ("ok", "fail", "info") and "client" in op and "seq" in op:
            times.setdefault((op["client"], op["seq"]), op["time"])
    return times


def first_evidence_s(results: dict[str, Any], history: list[dict]) -> float | None:
    """The earliest evidence over the failing checkers, in seconds; None when none is known."""
    client_ops = [op for op in history if op.get("process") != "nemesis"]
    by_id = _completion_times(history)
    found: list[int] = []
    checkers = results.get("checkers", {})

    lin = checkers.get("linearizability", {})
    if lin.get("valid") is False:
        index = ((lin.get("failure") or {}).get("op") or {}).get("complete_index")
        entry = entry_at(client_ops, index) if isinstance(index, int) else None
        if entry is not None and isinstance(entry.get("time"), int):
            found.append(entry["time"])

    agreement = checkers.get("agreement", {})
    if agreement.get("valid") is False:
        for slot in agreement.get("divergent") or []:
            for value in (slot.get("values") or {}).values():
                if isinstance(value, dict) and (value.get("client"), value.get("seq")) in by_id:
                    found.append(by_id[(value["client"], value["seq"])])

    exactly_once = checkers.get("exactly-once", {})
    if exactly_once.get("valid") is False:
        for item in (exactly_once.get("duplicates") or []) + (exactly_once.get("lost") or []):
            key = (item.get("client"), item.get("seq"))
            if key in by_id:
                found.append(by_id[key])

    availability = checkers.get("availability", {})
    if availability.get("valid") is False:
        recovery = availability.get("recovery") or {}
        heal, bound = recovery.get("heal_s"), recovery.get("bound_s")
        if isinstance(heal, (int, float)):
            found.append(int((heal + (bound or 0)) * 1e9))

    liveness = checkers.get("liveness", {})
    if liveness.get("valid") is False:
        # a stall is evidence once it has lasted the bound
        for stall in liveness.get("stalls") or []:
            start, bound = stall.get("start_s"), liveness.get("bound_s")
            if isinstance(start, (int, float)):
                found.append(int((start + (bound or 0)) * 1e9))

    return round(min(found) / 1e9, 3) if found else None
