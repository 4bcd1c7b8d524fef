"""The history recorder: every operation appended to history.jsonl as it happens."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


class HistoryRecorder:
    """Appends DESIGN.md history operations; one line, one flush, so a controller crash still
    leaves every line written so far on disk."""

    def __init__(self, path: Path, start_ns: int | None = None,
                 clock_ns: Callable[[], int] = time.monotonic_ns) -> None:
        self.path = Path(path)
        self.clock_ns = clock_ns  # a simulation's clock, or the monotonic one
        self.start_ns = clock_ns() if start_ns is None else start_ns
        self.file = open(self.path, "a", encoding="utf-8")
        self.index = 0
        self.counts = {"invoke": 0, "ok": 0, "fail": 0, "info": 0}

    def now(self) -> int:
        return self.clock_ns() - self.start_ns

    def append(self, process: int | str, type_: str, f: str, value: Any = None,
               key: Any = None, node: Any = None, error: str | None = None,
               **extra: Any) -> dict:
        op: dict[str, Any] = {"index": self.index, "time": self.now(), "process": process,
                              "type": type_, "f": f}
        if key is not None:
            op["key"] = key
        op["value"] = value
        if node is not None:
            op["node"] = node
        if error is not None:
            op["error"] = error
        op.update(extra)
        self.file.write(json.dumps(op, separators=(",", ":")) + "\n")
        self.file.flush()
        self.index += 1
        if process != "nemesis":
            self.counts[type_] = self.counts.get(type_, 0) + 1
        return op

    def close(self) -> None:
        if not self.file.closed:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
