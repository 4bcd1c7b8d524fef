"""The workload interface and the reply semantics shared by every workload."""

from __future__ import annotations

from typing import Any

# Error codes from DESIGN.md.
UNAVAILABLE, MALFORMED, NO_KEY, PRECONDITION, TIMEOUT = 11, 12, 20, 22, 30


class Workload:
    name = "abstract"
    # Model for the linearizability checker, or None when the workload has no register model.
    model: str | None = None
    # Names of the checkers that judge this workload (see harness.report.analysis).
    checkers: tuple[str, ...] = ()

    def next_op(self) -> dict[str, Any]:
        """The next operation to invoke: {"f", "key", "value"}. Deterministic given the rng."""
        raise NotImplementedError

    def final_ops(self) -> list[dict[str, Any]]:
        """Operations run after the final heal and recovery (final reads)."""
        return []

    def request(self, op: dict[str, Any]) -> dict[str, Any]:
        """The wire request for an operation (without id, client and seq)."""
        f = op["f"]
        if f == "cas":
            return {"op": "cas", "key": op["key"], "from": op["value"][0], "to": op["value"][1]}
        return {"op": f, "key": op["key"], "value": op["value"]}

    def completion(self, op: dict[str, Any], reply: dict[str, Any]) -> tuple[str, Any, str | None]:
        """(type, value, error) for a node's reply. The invoked value is kept unless the reply
        says what was read."""
        if reply.get("ok"):
            return "ok", reply.get("value") if op["f"] == "read" else op["value"], None
        code, error = reply.get("code"), reply.get("error") or "error"
        if op["f"] == "read":
            if code == NO_KEY:
                return "ok", None, None
            # A read has no effect: whatever went wrong, it did not happen.
            return "fail", None, error
        if reply.get("definite") or code in (UNAVAILABLE, MALFORMED, NO_KEY, PRECONDITION):
            return "fail", op["value"], error
        return "info", op["value"], error

    def lost(self, op: dict[str, Any], error: str) -> tuple[str, Any, str | None]:
        """No reply (timeout, connection lost after sending): a read did nothing; anything
        else may or may not have happened."""
        if op["f"] == "read":
            return "fail", None, error
        return "info", op["value"], error
