"""Peer messages: their shapes and validation.

Every peer message is a JSON object with `type`, `from`, `to` and `ballot` (the sender's ballot
for this exchange, `[round, node_id]`). `parse` checks the shape of everything the core will read
and turns ballots into tuples, so the core never trips over a malformed message: it logs and
drops it instead.

| type            | fields                                                       |
| --------------- | ------------------------------------------------------------ |
| prevote         | (ballot: the one the sender would use)                       |
| prevote_reply   | granted, promised, leader                                    |
| prepare         | first (first slot the Phase 1 covers)                        |
| promise         | ok, promised, accepted [[slot, ballot, value]], snap, chosen |
| accept          | entries [[slot, value]], commit (heartbeat when empty), read |
| accepted        | ok, slots, promised, chosen, read                            |
| catchup         | from_slot                                                    |
| learn           | entries [[slot, value]], commit                              |
| snapshot        | index, data (JSON text of the state machine)                 |

`read` (optional, default 0) is the leader's ReadIndex confirmation round: an accept carries the
latest round the leader has started, and the acceptor echoes it in its accepted reply, so the
leader knows which of its rounds a peer answered at its ballot (a reply to an older round or an
older ballot never confirms a newer read).
"""

from __future__ import annotations

from typing import Any

from node.protocol import valid_command

Ballot = tuple[int, str]

TYPES = ("prevote", "prevote_reply", "prepare", "promise", "accept", "accepted", "catchup",
         "learn", "snapshot")


# Bounds on what a message may carry: far above what a correct peer sends, far below what would
# exhaust memory, overflow a 64-bit reader of our logs, or make a restart fail.
MAX_INT = 2**63 - 1          # ballot rounds, slots, counters
MAX_NODE_ID = 64             # characters of a node id
MAX_ENTRIES = 1 << 20        # entries of one message (a promise may report every accepted slot)
MAX_SNAPSHOT = 256 << 20     # characters of a snapshot's JSON text

COMMON = frozenset({"type", "from", "to", "ballot"})
FIELDS: dict[str, frozenset[str]] = {
    "prevote": COMMON,
    "prevote_reply": COMMON | {"granted", "promised", "leader"},
    "prepare": COMMON | {"first"},
    "promise": COMMON | {"ok", "promised", "accepted", "snap", "chosen"},
    "accept": COMMON | {"entries", "commit", "read"},
    "accepted": COMMON | {"ok", "slots", "promised", "chosen", "read"},
    "catchup": COMMON | {"from_slot"},
    "learn": COMMON | {"entries", "commit"},
    "snapshot": COMMON | {"index", "data"},
}


class BadMessage(ValueError):
    pass


def _is_int(v: Any, minimum: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and minimum <= v <= MAX_INT


def _int(msg: dict[str, Any], field: str, minimum: int = 0) -> int:
    v = msg.get(field)
    if not _is_int(v, minimum):
        raise BadMessage(f"{field} must be an integer in [{minimum}, 2^63)")
    return v


def _bool(msg: dict[str, Any], field: str) -> bool:
    v = msg.get(field)
    if not isinstance(v, bool):
        raise BadMessage(f"{field} must be a boolean")
    return v


def _node_id(v: Any) -> bool:
    return isinstance(v, str) and 0 < len(v) <= MAX_NODE_ID


def ballot_of(v: Any, field: str = "ballot") -> Ballot:
    if isinstance(v, tuple):
        v = list(v)
    # [0, ""] is the ballot below every real one (nothing promised yet).
    if (not isinstance(v, list) or len(v) != 2 or not _is_int(v[0], 0)
            or not isinstance(v[1], str) or len(v[1]) > MAX_NODE_ID):
        raise BadMessage(f"{field} must be [round, node_id] with round in [0, 2^63)")
    return (v[0], v[1])


def _value(v: Any) -> Any:
    if not valid_command(v):
        raise BadMessage("log value is not a command")
    return v


def _list(v: Any, field: str) -> list:
    if not isinstance(v, list):
        raise BadMessage(f"{field} must be a list")
    if len(v) > MAX_ENTRIES:
        raise BadMessage(f"{field} has more than {MAX_ENTRIES} entries")
    return v


def _slot_values(v: Any, field: str) -> list[tuple[int, Any]]:
    out = []
    for e in _list(v, field):
        if not isinstance(e, list) or len(e) != 2 or not _is_int(e[0], 0):
            raise BadMessage(f"{field} entries must be [slot, value]")
        out.append((e[0], _value(e[1])))
    return out


def parse(raw: Any) -> dict[str, Any]:
    """Validate and normalise a decoded peer message; BadMessage on anything malformed."""
    if not isinstance(raw, dict):
        raise BadMessage("not an object")
    t = raw.get("type")
    if t not in TYPES:
        raise BadMessage(f"unknown type {str(t)[:40]!r}")
    unknown = raw.keys() - FIELDS[t]
    if unknown:
        raise BadMessage(f"unknown field(s) {', '.join(sorted(str(k)[:40] for k in unknown))}")
    for f in ("from", "to"):
        if not _node_id(raw.get(f)):
            raise BadMessage(f"{f} must be a node id")
    msg: dict[str, Any] = {"type": t, "from": raw["from"], "to": raw["to"],
                           "ballot": ballot_of(raw.get("ballot"))}
    if t == "prevote_reply":
        msg["granted"] = _bool(raw, "granted")
        msg["promised"] = ballot_of(raw.get("promised"), "promised")
        leader = raw.get("leader")
        if leader is not None and not _node_id(leader):
            raise BadMessage("leader must be a node id or null")
        msg["leader"] = leader
    elif t == "prepare":
        msg["first"] = _int(raw, "first")
    elif t == "promise":
        msg["ok"] = _bool(raw, "ok")
        msg["promised"] = ballot_of(raw.get("promised"), "promised")
        msg["snap"] = _int(raw, "snap", -1)
        msg["chosen"] = _int(raw, "chosen", -1)
        entries = []
        for e in _list(raw.get("accepted"), "accepted"):
            if not isinstance(e, list) or len(e) != 3 or not _is_int(e[0], 0):
                raise BadMessage("accepted entries must be [slot, ballot, value]")
            entries.append((e[0], ballot_of(e[1]), _value(e[2])))
        msg["accepted"] = entries
    elif t == "accept":
        msg["entries"] = _slot_values(raw.get("entries"), "entries")
        msg["commit"] = _int(raw, "commit", -1)
        msg["read"] = _int(raw, "read") if "read" in raw else 0
    elif t == "accepted":
        msg["ok"] = _bool(raw, "ok")
        msg["promised"] = ballot_of(raw.get("promised"), "promised")
        msg["chosen"] = _int(raw, "chosen", -1)
        slots = _list(raw.get("slots"), "slots")
        if not all(_is_int(s, 0) for s in slots):
            raise BadMessage("slots must be a list of slot numbers")
        msg["slots"] = slots
        msg["read"] = _int(raw, "read") if "read" in raw else 0
    elif t == "catchup":
        msg["from_slot"] = _int(raw, "from_slot")
    elif t == "learn":
        msg["entries"] = _slot_values(raw.get("entries"), "entries")
        msg["commit"] = _int(raw, "commit", -1)
    elif t == "snapshot":
        msg["index"] = _int(raw, "index")
        data = raw.get("data")
        if not isinstance(data, str) or len(data) > MAX_SNAPSHOT:
            raise BadMessage(f"data must be a string of at most {MAX_SNAPSHOT} characters")
        msg["data"] = data
    return msg
