"""Register workload: read/write/cas over independent keys with a small value domain.

Keys are retired after a fixed number of operations, as Jepsen's independent workloads do, so
each key's history stays small and cheap to check.
"""

from __future__ import annotations

import random
from typing import Any

from workloads.base import Workload


class RegisterWorkload(Workload):
    name = "register"
    model = "kv"
    checkers = ("linearizability",)

    def __init__(self, rng: random.Random, concurrency: int, ops_per_key: int = 60,
                 values: int = 5) -> None:
        self.rng = rng
        self.ops_per_key = ops_per_key
        self.values = values
        self.active = max(1, (concurrency + 1) // 2)
        self.keys = [f"k{i}" for i in range(self.active)]
        self.uses = {key: 0 for key in self.keys}
        self.next_key = self.active
        self.all_keys: list[str] = list(self.keys)

    def next_op(self) -> dict[str, Any]:
        slot = self.rng.randrange(self.active)
        key = self.keys[slot]
        self.uses[key] += 1
        if self.uses[key] >= self.ops_per_key:
            self.keys[slot] = f"k{self.next_key}"
            self.uses[self.keys[slot]] = 0
            self.all_keys.append(self.keys[slot])
            self.next_key += 1
        roll = self.rng.random()
        if roll < 0.5:
            return {"f": "read", "key": key, "value": None}
        if roll < 0.75:
            return {"f": "write", "key": key, "value": self.rng.randrange(self.values)}
        return {"f": "cas", "key": key,
                "value": [self.rng.randrange(self.values), self.rng.randrange(self.values)]}

    def final_ops(self) -> list[dict[str, Any]]:
        return [{"f": "read", "key": key, "value": None} for key in self.keys]
