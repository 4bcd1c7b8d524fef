"""What clients do, and which checkers judge it."""

from __future__ import annotations

import random

from workloads.base import Workload

WORKLOADS = ("register", "set")


def make_workload(name: str, rng: random.Random, concurrency: int, **options) -> Workload:
    if name == "register":
        from workloads.register import RegisterWorkload

        return RegisterWorkload(rng, concurrency, **options)
    if name == "set":
        from workloads.set import SetWorkload

        return SetWorkload(rng, concurrency, **options)
    raise ValueError(f"unknown workload {name!r}; choose one of {', '.join(WORKLOADS)}")


__all__ = ["WORKLOADS", "Workload", "make_workload"]
