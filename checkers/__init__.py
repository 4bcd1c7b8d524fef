"""Checkers: pure functions from a history to a verdict (no network, no processes).

The linearizability entry points:

- `checkers.formats.load(path, fmt=None) -> list[dict]`: a history file's ops (DESIGN.md shape).
- `checkers.linearizability.check(ops, model="cas-register", *, time_limit=60.0,
  memory_limit_mb=1024) -> dict`.
"""

from checkers.formats import load, read
from checkers.history import History, HistoryError, Operation, pair

__all__ = ["History", "HistoryError", "Operation", "load", "pair", "read"]
