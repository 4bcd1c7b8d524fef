"""Set workload: unique adds to one set-valued key, then final reads after recovery."""

from __future__ import annotations

import random
from typing import Any

from workloads.base import Workload


class SetWorkload(Workload):
    name = "set"
    model = None
    checkers = ("set",)
    key = "set"

    def __init__(self, rng: random.Random, concurrency: int, final_reads: int = 3) -> None:
        self.rng = rng
        self.counter = 0
        self.final_reads = final_reads

    def next_op(self) -> dict[str, Any]:
        self.counter += 1
        return {"f": "add", "key": self.key, "value": self.counter}

    def final_ops(self) -> list[dict[str, Any]]:
        return [{"f": "read", "key": self.key, "value": None} for _ in range(self.final_reads)]
