"""Exactly-once: every acknowledged update is in the chosen log once, and none is there twice.

History ops carry `client` and `seq` (the ids the client sent to the node, kept across retries);
chosen log entries hold the client's command `{"client", "seq", "op", "key", "value", "from",
"to"}` or `{"op": "noop"}`. Matching the two by (client, seq) tells:

- duplicates: an update (write, cas, add) whose (client, seq) is in two slots: applied twice;
- lost: an acknowledged (`ok`) update that is in no slot;
- failed but applied: a `fail` update (definitely did not happen) that is in the log. A cas that
  ran and found the wrong value (`precondition-failed`, `key-does-not-exist`) did happen, so it
  may be there;
- unexpected: a command no client ever invoked, or one whose content differs from the invocation.

An update counts as in the log when any node holds it (nodes that disagree on a slot are the
agreement checker's finding, not reported again here); it is applied twice when one node holds it
in two slots. Slots missing from every fetched log (compaction, an unreachable leader) make a
missing update unverifiable: the verdict is then `unknown`, not `false`.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from checkers.agreement import canonical
from checkers.perf import Op, pair_ops

UPDATES = ("write", "cas", "add")
# Errors with which an update *ran* (it was chosen and applied) but had no effect.
RAN_ERRORS = ("precondition-failed", "key-does-not-exist")
MAX_LISTED = 20


def _update_text(o: Op) -> str:
    """An update as a person reads it: `cas k8 0 -> 3 by c1 seq 7`, `write k2 = 4 by c0 seq 3`
    (values as JSON writes them, never as Python's repr)."""
    v = o.value
    if o.f == "cas" and isinstance(v, (list, tuple)) and len(v) == 2:
        what = f"{canonical(v[0])} -> {canonical(v[1])}"
    else:
        what = f"= {canonical(v)}" if o.f == "write" else canonical(v)
    return f"{o.f} {o.key} {what} by {o.client} seq {o.seq}"


def _matches(op: Op, cmd: dict) -> bool:
    if cmd.get("op") != op.f or cmd.get("key") != op.key:
        return False
    if op.f == "cas":
        v = op.value if isinstance(op.value, (list, tuple)) else [None, None]
        return len(v) == 2 and cmd.get("from") == v[0] and cmd.get("to") == v[1]
    if op.f in ("write", "add"):
        return cmd.get("value") == op.value
    return True


def _ident(cmd: Any) -> tuple[str, int] | None:
    if not isinstance(cmd, dict) or cmd.get("op") == "noop":
        return None
    client, seq = cmd.get("client"), cmd.get("seq")
    return None if client is None or seq is None else (str(client), seq)


def _ran(op: Op) -> bool:
    return op.status == "fail" and (op.error in RAN_ERRORS)


def check(history: list[dict], logs: dict[str, dict | None]) -> dict[str, Any]:
    ops = pair_ops(history)
    by_id: dict[tuple[str, int], Op] = {}
    without_ids = 0
    for o in ops:
        if o.client is None or o.seq is None:
            if o.f in UPDATES:
                without_ids += 1
            continue
        by_id[(str(o.client), o.seq)] = o
    reachable = sorted(n for n, log in logs.items() if isinstance(log, dict))
    unreachable = sorted(n for n, log in logs.items() if not isinstance(log, dict))
    # Every distinct command any node holds in each slot. Where nodes disagree on a slot, that
    # is the agreement checker's finding; here a command counts as in the log if any node
    # holds it, so one divergence is not reported again as lost updates.
    held: dict[int, dict[str, Any]] = {}
    per_node: dict[str, dict[tuple[str, int], set[int]]] = {}
    for node in reachable:
        mine = per_node.setdefault(node, defaultdict(set))
        for entry in logs[node].get("entries") or []:
            slot = entry.get("slot")
            if not isinstance(slot, int):
                continue
            cmd = entry.get("value")
            held.setdefault(slot, {})[canonical(cmd)] = cmd
            ident = _ident(cmd)
            if ident is not None:
                mine[ident].add(slot)
    top = max(held) if held else -1
    holes = sum(1 for s in range(top + 1) if s not in held)
    complete = bool(reachable) and holes == 0 and not unreachable

    slots_of: dict[tuple[str, int], set[int]] = defaultdict(set)
    unexpected: list[dict] = []
    mismatched: list[dict] = []
    noops = commands = 0
    for slot in sorted(held):
        for cmd in held[slot].values():
            if not isinstance(cmd, dict) or cmd.get("op") == "noop":
                noops += 1
                continue
            commands += 1
            ident = _ident(cmd)
            if ident is None:
                unexpected.append({"slot": slot, "command": cmd, "why": "no client/seq"})
                continue
            slots_of[ident].add(slot)
            op = by_id.get(ident)
            if op is None:
                unexpected.append({"slot": slot, "command": cmd, "why": "never invoked"})
            elif not _matches(op, cmd):
                mismatched.append({"slot": slot, "command": cmd, "invoked": op.to_dict()})

    duplicates: dict[tuple[str, int], dict[str, Any]] = {}
    duplicate_reads: set[tuple[str, int]] = set()
    for node, mine in per_node.items():
        for ident, slots in mine.items():
            if len(slots) < 2:
                continue
            op = by_id.get(ident)
            first = held[min(slots)]
            cmd = next((c for c in first.values() if _ident(c) == ident), {})
            f = op.f if op else cmd.get("op")
            if f == "read":
                duplicate_reads.add(ident)  # a read has no effect: a note, not a violation
                continue
            d = duplicates.setdefault(ident, {"client": ident[0], "seq": ident[1], "f": f,
                                              "slots": sorted(slots), "nodes": [],
                                              "command": cmd})
            d["nodes"].append(node)

    acknowledged = [o for o in ops if o.f in UPDATES and o.status == "ok"
                    and o.client is not None]
    lost = [o for o in acknowledged if (str(o.client), o.seq) not in slots_of]
    failed_applied = [o for o in ops if o.f in UPDATES and o.status == "fail" and not _ran(o)
                      and o.client is not None and (str(o.client), o.seq) in slots_of]
    indeterminate = [o for o in ops if o.f in UPDATES and o.status == "info"
                     and o.client is not None]
    ind_applied = sum(1 for o in indeterminate if (str(o.client), o.seq) in slots_of)

    def op_row(o: Op) -> dict[str, Any]:
        return {**o.to_dict(), "slots": sorted(slots_of.get((str(o.client), o.seq), ()))}

    result: dict[str, Any] = {
        "valid": True,
        "reason": None,
        "log_commands": commands,
        "log_noops": noops,
        "log_complete": complete,
        "log_holes": holes,
        "unreachable": unreachable,
        "acknowledged": len(acknowledged),
        "acknowledged_found": len(acknowledged) - len(lost),
        "lost_count": len(lost),
        "lost": [op_row(o) for o in lost[:MAX_LISTED]],
        "duplicate_count": len(duplicates),
        "duplicates": list(duplicates.values())[:MAX_LISTED],
        "duplicate_reads": len(duplicate_reads),
        "failed_applied_count": len(failed_applied),
        "failed_applied": [op_row(o) for o in failed_applied[:MAX_LISTED]],
        "unexpected_count": len(unexpected),
        "unexpected": unexpected[:MAX_LISTED],
        "mismatched_count": len(mismatched),
        "mismatched": mismatched[:MAX_LISTED],
        "indeterminate": {"applied": ind_applied, "not_applied": len(indeterminate) - ind_applied},
        "ops_without_ids": without_ids,
    }
    problems = []
    if duplicates:
        d = next(iter(duplicates.values()))
        problems.append(f"{len(duplicates)} update(s) applied more than once; first "
                        f"{d['f']} by {d['client']} seq {d['seq']} in slots "
                        f"{', '.join(str(x) for x in d['slots'])} "
                        f"(on {', '.join(d['nodes'])})")
    if failed_applied:
        o = failed_applied[0]
        problems.append(f"{len(failed_applied)} update(s) reported failed (did not happen) are "
                        f"in the chosen log; first {_update_text(o)}")
    if unexpected:
        u = unexpected[0]
        problems.append(f"{len(unexpected)} chosen command(s) no client invoked; first in slot "
                        f"{u['slot']} ({u['why']})")
    if mismatched:
        m = mismatched[0]
        problems.append(f"{len(mismatched)} chosen command(s) differ from the invocation with "
                        f"the same client/seq; first in slot {m['slot']}")
    if lost and complete:
        o = lost[0]
        problems.append(f"{len(lost)} acknowledged update(s) are in no slot of the chosen log; "
                        f"first {_update_text(o)}")
    if problems:
        result["valid"] = False
        result["reason"] = "; ".join(problems)
    elif lost:
        result["valid"] = "unknown"
        result["reason"] = (f"{len(lost)} acknowledged update(s) not found, but the fetched logs "
                            f"are incomplete ({holes} slot(s) missing below {top}; unreachable: "
                            f"{', '.join(unreachable) or '-'}), so they may be in slots not seen")
    elif not reachable:
        result["valid"] = "unknown"
        result["reason"] = "no node's chosen log could be fetched"
    elif without_ids and not by_id:
        result["valid"] = "unknown"
        result["reason"] = "history ops carry no client/seq, so they cannot be matched to the log"
    elif not acknowledged and commands == 0:
        result["valid"] = "unknown"
        result["reason"] = "no acknowledged update and no command in the log: nothing to check"
    elif not complete:
        result["note"] = (f"logs incomplete ({holes} slot(s) missing; unreachable: "
                          f"{', '.join(unreachable) or '-'}): duplicates there cannot be seen")
    return result
