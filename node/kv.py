"""The replicated state machine: a key-value store plus a session table for exactly-once.

Deterministic and pure: the same sequence of chosen commands gives the same state (and digest) on
every replica. Registers hold any JSON value; `add` turns a key into a set of ints/strings whose
read is the sorted list.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from node import protocol


def canonical(value: Any) -> str:
    """Equality of JSON values as the wire sees them (1 and True differ; key order does not)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _elem_order(x: Any) -> tuple[bool, Any]:
    # ints before strings, so a mixed set still has one total order on every replica
    return (isinstance(x, str), x)


class KV:
    """Key-value store with a session table `client -> (last seq, reply)`.

    A write, cas or add whose (client, seq) is not newer than the client's last applied one is
    not applied again: a retry gets the stored reply. Reads do not touch the session table (a
    repeated read has no effect, and caching large set reads would bloat snapshots)."""

    def __init__(self, dedup: bool = True) -> None:
        self.dedup = dedup
        self.data: dict[Any, Any] = {}
        self.sets: dict[Any, set[Any]] = {}
        self.sessions: dict[str, tuple[int, dict[str, Any]]] = {}

    # -- reading -----------------------------------------------------------------------------
    def value_of(self, key: Any) -> tuple[bool, Any]:
        if key in self.sets:
            return True, sorted(self.sets[key], key=_elem_order)
        if key in self.data:
            return True, self.data[key]
        return False, None

    def read(self, key: Any) -> dict[str, Any]:
        found, value = self.value_of(key)
        if not found:
            return protocol.error(protocol.KEY_DOES_NOT_EXIST)
        return {"ok": True, "value": value}

    def session_reply(self, client: str, seq: int) -> tuple[str, dict[str, Any] | None]:
        """('new', None) if (client, seq) was never applied, ('done', reply) if it was the last
        one applied, ('stale', None) if the client has since moved on."""
        if not self.dedup:
            return "new", None
        last = self.sessions.get(client)
        if last is None or seq > last[0]:
            return "new", None
        if seq == last[0]:
            return "done", last[1]
        return "stale", None

    # -- applying ----------------------------------------------------------------------------
    def apply(self, cmd: dict[str, Any]) -> dict[str, Any] | None:
        """Apply one chosen command; returns the client reply (without id), or None for a no-op
        or a stale duplicate that nobody can be waiting for."""
        op = cmd.get("op")
        if op == "noop":
            return None
        if op == "read":
            return self.read(cmd["key"])
        client, seq = cmd["client"], cmd["seq"]
        if not self.dedup:
            return self._execute(cmd)
        last = self.sessions.get(client)
        if last is not None and seq <= last[0]:
            return last[1] if seq == last[0] else None   # a retry's reply, or stale
        reply = self._execute(cmd)
        self.sessions[client] = (seq, reply)
        return reply

    def _execute(self, cmd: dict[str, Any]) -> dict[str, Any]:
        op, key = cmd["op"], cmd["key"]
        if op == "write":
            if key in self.sets:
                del self.sets[key]
            self.data[key] = cmd["value"]
            return {"ok": True}
        if op == "add":
            if key in self.data:
                return protocol.error(protocol.PRECONDITION_FAILED, "key holds a register")
            self.sets.setdefault(key, set()).add(cmd["value"])
            return {"ok": True}
        if op == "cas":
            found, value = self.value_of(key)
            if not found:
                return protocol.error(protocol.KEY_DOES_NOT_EXIST)
            if canonical(value) != canonical(cmd["from"]):
                return protocol.error(protocol.PRECONDITION_FAILED)
            self.sets.pop(key, None)
            self.data[key] = cmd["to"]
            return {"ok": True}
        raise ValueError(f"cannot apply op {op!r}")

    # -- snapshots and digest ----------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """A JSON-able copy of the whole state (keys may be ints, so pairs rather than objects)."""
        return {
            "data": [[k, v] for k, v in self.data.items()],
            "sets": [[k, sorted(s, key=_elem_order)] for k, s in self.sets.items()],
            "sessions": [[c, q, r] for c, (q, r) in self.sessions.items()],
        }

    @classmethod
    def from_snapshot(cls, snap: dict[str, Any], dedup: bool = True) -> KV:
        kv = cls(dedup=dedup)
        try:
            for k, v in snap["data"]:
                kv.data[k] = v
            for k, elems in snap["sets"]:
                kv.sets[k] = set(elems)
            for c, q, r in snap["sessions"]:
                kv.sessions[c] = (q, r)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"bad snapshot: {exc}") from None
        return kv

    def digest(self) -> str:
        """Hex digest of the applied state; equal on replicas that applied the same prefix."""
        keyed = sorted(((canonical(k), v) for k, v in self.data.items()), key=lambda kv: kv[0])
        sets = sorted(((canonical(k), sorted(s, key=_elem_order)) for k, s in self.sets.items()),
                      key=lambda kv: kv[0])
        sessions = sorted([c, q, r] for c, (q, r) in self.sessions.items())
        blob = canonical({"data": keyed, "sets": sets, "sessions": sessions})
        return hashlib.sha256(blob.encode()).hexdigest()
