"""Seeded register histories of the classes a linearizability checker finds hard.

Concurrent clients run reads, writes and cas against a real sequential register per key: each
op takes effect at one instant between its invocation and its completion, and a crashed op
(`info`) either took effect in that span or never, so the history is linearizable by
construction. `stale_read=True` turns the last read into a stale one: it returns the value
that one ok write put in early, which later completed writes have since replaced, so no order
explains it and the history is invalid.

The knobs are the classes: length (`ops`), concurrency (`processes`), independence (`keys`),
and uncertainty (`crashed`, the fraction of ops that end `info`). Values come from a small
domain (`values`), so the same state recurs as it does under real workloads.

    python -m checkers.generate --ops 2000 --processes 5 --crashed 0.1 --seed 1 > h.jsonl
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from typing import Any

STALE = -1  # the value of the one early write the stale read returns; no other op writes it


def register_history(
    *,
    ops: int = 1000,
    processes: int = 5,
    keys: int = 1,
    crashed: float = 0.1,
    values: int = 5,
    stale_read: bool = False,
    seed: int = 0,
) -> list[dict]:
    """A history in DESIGN.md's JSONL shape (ops without `key` when `keys` is 1)."""
    if ops < 10 or processes < 1 or keys < 1 or not 0 <= crashed < 1 or values < 1:
        raise ValueError("register_history needs ops >= 10, processes >= 1, keys >= 1, "
                         "0 <= crashed < 1 and values >= 1")
    rng = random.Random(seed)
    state: dict[int, Any] = {k: None for k in range(keys)}
    out: list[dict] = []
    procs = list(range(processes))  # each worker's current process id
    inflight: list[dict | None] = [None] * processes  # each worker's op in flight
    next_proc = processes
    invoked = 0
    stale_at = max(1, ops // 10)  # the invocation that writes STALE (on key 0)
    stale_done = False  # the STALE write has completed
    must_replace = False  # the next op on key 0 is an ok write that replaces STALE

    def emit(op: dict, key: int) -> dict:
        if keys > 1:
            op["key"] = key
        op["index"] = len(out)
        op["time"] = len(out) * 1000
        out.append(op)
        return op

    def apply(cur: dict) -> None:
        op, key = cur["op"], cur["key"]
        f, v = op["f"], op["value"]
        if f == "read":
            cur["output"] = state[key]
        elif f == "write":
            state[key] = v
        else:
            cur["output"] = state[key] == v[0]
            if cur["output"]:
                state[key] = v[1]
        cur["applied"] = True

    while invoked < ops or any(inflight):
        w = rng.randrange(processes)
        cur = inflight[w]
        if cur is None:
            if invoked >= ops:
                continue
            final = invoked == ops - 1
            if final and any(inflight):
                continue  # the final read waits until every other worker is idle
            key = 0 if final or invoked == stale_at else rng.randrange(keys)
            crash = False
            if invoked == stale_at:
                f, v = "write", STALE
            elif final:
                f, v = "read", None
            elif must_replace and key == 0:
                f, v = "write", rng.randrange(values)
                must_replace = False
            else:
                f = rng.choices(("read", "write", "cas"), (2, 1, 1))[0]
                v = None if f == "read" else rng.randrange(values) if f == "write" else \
                    [rng.randrange(values), rng.randrange(values)]
                crash = rng.random() < crashed
            op = emit({"process": procs[w], "type": "invoke", "f": f, "value": v}, key)
            inflight[w] = {"op": op, "key": key, "applied": False, "crash": crash,
                           "final": final}
            invoked += 1
            continue
        if cur["applied"] is False and (cur["crash"] or rng.random() < 0.5):
            # take effect now (a crashed op: now or never), complete on a later turn
            if cur["crash"] and rng.random() < 0.5:
                cur["applied"] = None
            else:
                apply(cur)
            continue
        if cur["applied"] is False:
            apply(cur)
        op = cur["op"]
        f = op["f"]
        if cur["crash"]:
            emit({"process": op["process"], "type": "info", "f": f, "value": op["value"],
                  "error": "timeout"}, cur["key"])
            procs[w] = next_proc  # Jepsen: a crashed client comes back as a new process
            next_proc += 1
        elif f == "cas" and not cur["output"]:
            emit({"process": op["process"], "type": "fail", "f": f, "value": op["value"],
                  "compare_failed": True}, cur["key"])
        else:
            value = op["value"]
            if f == "read":
                value = STALE if cur["final"] and stale_read else cur["output"]
            emit({"process": op["process"], "type": "ok", "f": f, "value": value}, cur["key"])
            if f == "write" and value == STALE:
                stale_done = must_replace = True
        inflight[w] = None
    assert stale_done and not must_replace, "the stale value was never replaced"
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m checkers.generate",
                                description="Write a generated register history (JSONL).")
    p.add_argument("--ops", type=int, default=1000)
    p.add_argument("--processes", type=int, default=5)
    p.add_argument("--keys", type=int, default=1)
    p.add_argument("--crashed", type=float, default=0.1)
    p.add_argument("--values", type=int, default=5)
    p.add_argument("--stale-read", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    try:
        hist = register_history(ops=a.ops, processes=a.processes, keys=a.keys,
                                crashed=a.crashed, values=a.values, stale_read=a.stale_read,
                                seed=a.seed)
    except ValueError as exc:
        print(f"checkers.generate: {exc}", file=sys.stderr)
        return 3
    for op in hist:
        sys.stdout.write(json.dumps(op) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
