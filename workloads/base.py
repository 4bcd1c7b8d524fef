"""The workload interface: what operations are (how they go on the wire is the system's)."""

from __future__ import annotations

from typing import Any


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

    def lost(self, op: dict[str, Any], error: str) -> tuple[str, Any, str | None]:
        """No reply (timeout, connection lost after sending): a read did nothing; anything
        else may or may not have happened."""
        if op["f"] == "read":
            return "fail", None, error
        return "info", op["value"], error
