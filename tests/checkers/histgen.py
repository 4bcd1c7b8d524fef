"""Random histories for the property tests, and a brute-force linearizability oracle.

The oracle shares nothing with checkers.linearizability but the pairing of events: it tries
every subset of the indeterminate ops and every order of the chosen ops that respects real
time, running a plain sequential register.
"""

from __future__ import annotations

import itertools
import random
from typing import Any

from checkers.history import Operation, pair

VALUES = (0, 1, 2)


def register_step(state: Any, op: Operation) -> tuple[bool, Any]:
    """The sequential cas-register, straight from the definition."""
    if op.f == "read":
        return state == op.output, state
    if op.f == "write":
        return True, op.value
    frm, to = op.value
    if op.compare_failed:
        return state != frm, state
    if op.status == "info":
        return True, to if state == frm else state
    return state == frm, to


def set_step(state: Any, op: Operation) -> tuple[bool, Any]:
    """The sequential set, straight from the definition."""
    if op.f == "add":
        return True, state | {op.value}
    return frozenset(op.output) == state, state


def brute_force(ops: list[dict], initial: Any = None, step: Any = register_step) -> bool:
    """Is the single-object history linearizable? Exponential; for a handful of ops."""
    paired = pair(ops)
    must = [o for o in paired if o.status == "ok" or o.compare_failed]
    may = [o for o in paired if o.status == "info" and o.f != "read"]
    for k in range(len(may) + 1):
        for chosen in itertools.combinations(may, k):
            group = must + list(chosen)
            for order in itertools.permutations(group):
                if _respects_real_time(order) and _runs(order, initial, step):
                    return True
    return False


def _respects_real_time(order: tuple[Operation, ...]) -> bool:
    for i, a in enumerate(order):
        for b in order[i + 1:]:
            # b placed after a, but b returned before a was invoked
            if b.ret is not None and b.ret < a.call:
                return False
    return True


def _runs(order: tuple[Operation, ...], state: Any, step: Any) -> bool:
    for op in order:
        ok, state = step(state, op)
        if not ok:
            return False
    return True


def random_history(
    rng: random.Random,
    n_ops: int,
    processes: int = 3,
    key: Any = None,
    compare_failed: bool = True,
) -> list[dict]:
    """Random events from `processes` clients: outputs are arbitrary, so some histories are
    linearizable and some not."""
    ops: list[dict] = []
    pending: dict[int, dict] = {}
    next_proc = processes
    procs = list(range(processes))
    invoked = 0
    while invoked < n_ops or pending:
        p = rng.choice(procs)
        if p not in pending:
            if invoked >= n_ops:
                if rng.random() < 0.3:
                    break  # leave the rest pending: never completed
                continue
            f = rng.choice(("read", "write", "cas"))
            value: Any = None
            if f == "write":
                value = rng.choice(VALUES)
            elif f == "cas":
                value = [rng.choice(VALUES), rng.choice(VALUES)]
            op = {"process": p, "type": "invoke", "f": f, "value": value}
            pending[p] = op
            invoked += 1
        else:
            inv = pending.pop(p)
            t = rng.choices(("ok", "fail", "info"), (6, 1, 1))[0]
            done = {"process": p, "type": t, "f": inv["f"], "value": inv["value"]}
            if inv["f"] == "read":
                done["value"] = rng.choice((None,) + VALUES) if t == "ok" else None
            if t == "fail" and inv["f"] == "cas" and compare_failed and rng.random() < 0.5:
                done["compare_failed"] = True
            op = done
            if t == "info":
                procs[procs.index(p)] = next_proc  # Jepsen: a crashed client gets a new id
                next_proc += 1
        if key is not None:
            op["key"] = key
        op["index"] = len(ops)
        ops.append(op)
    return ops


def simulated_history(
    rng: random.Random,
    n_ops: int,
    processes: int = 4,
    keys: tuple[Any, ...] = (None,),
    initial: Any = None,
) -> list[dict]:
    """Concurrent clients against a real sequential register per key: each op takes effect
    at one instant between its invocation and completion (crashed ops maybe never), so the
    history is linearizable by construction."""
    state = {k: initial for k in keys}
    ops: list[dict] = []
    # per process: the op in flight and whether it has taken effect yet
    inflight: dict[int, dict] = {}
    procs = list(range(processes))
    next_proc = processes
    invoked = 0

    def emit(op: dict) -> None:
        if op.get("key") is None:
            op.pop("key", None)
        op["index"] = len(ops)
        ops.append(op)

    while invoked < n_ops or inflight:
        p = rng.choice(procs)
        cur = inflight.get(p)
        if cur is None:
            if invoked >= n_ops:
                continue
            f = rng.choice(("read", "write", "cas"))
            key = rng.choice(keys)
            value: Any = None
            if f == "write":
                value = rng.choice(VALUES)
            elif f == "cas":
                value = [rng.choice(VALUES + (None,) if initial is None else VALUES),
                         rng.choice(VALUES)]
            inflight[p] = {"f": f, "key": key, "value": value, "done": False, "out": None}
            emit({"process": p, "type": "invoke", "f": f, "key": key, "value": value})
            invoked += 1
            continue
        if not cur["done"]:
            # the instant the op takes effect (or, for a crash below, perhaps never)
            if rng.random() < 0.15:
                inflight.pop(p)
                if rng.random() < 0.5 and cur["f"] != "read":
                    _apply(state, cur)
                emit({"process": p, "type": "info", "f": cur["f"], "key": cur["key"],
                      "value": cur["value"], "error": "timeout"})
                procs[procs.index(p)] = next_proc
                next_proc += 1
                continue
            _apply(state, cur)
            cur["done"] = True
            continue
        inflight.pop(p)
        f = cur["f"]
        if f == "read":
            emit({"process": p, "type": "ok", "f": f, "key": cur["key"], "value": cur["out"]})
        elif f == "write" or cur["out"]:
            emit({"process": p, "type": "ok", "f": f, "key": cur["key"], "value": cur["value"]})
        else:
            done = {"process": p, "type": "fail", "f": f, "key": cur["key"],
                    "value": cur["value"], "error": "precondition-failed"}
            if rng.random() < 0.5:
                done["compare_failed"] = True  # true here: the cas did run
            emit(done)
    return ops


def _apply(state: dict, cur: dict) -> None:
    k = cur["key"]
    if cur["f"] == "read":
        cur["out"] = state[k]
    elif cur["f"] == "write":
        state[k] = cur["value"]
    else:
        frm, to = cur["value"]
        cur["out"] = state[k] == frm
        if cur["out"]:
            state[k] = to


def random_set_history(rng: random.Random, n_ops: int, processes: int = 3) -> list[dict]:
    """Random adds and reads (arbitrary read results) from a few clients."""
    ops: list[dict] = []
    pending: dict[int, dict] = {}
    procs = list(range(processes))
    next_proc = processes
    invoked = 0
    while invoked < n_ops or pending:
        p = rng.choice(procs)
        if p not in pending:
            if invoked >= n_ops:
                continue
            f = rng.choice(("add", "read"))
            value = rng.choice(VALUES) if f == "add" else None
            op = {"process": p, "type": "invoke", "f": f, "value": value}
            pending[p] = op
            invoked += 1
        else:
            inv = pending.pop(p)
            t = rng.choices(("ok", "fail", "info"), (6, 1, 1))[0]
            op = {"process": p, "type": t, "f": inv["f"], "value": inv["value"]}
            if inv["f"] == "read":
                op["value"] = sorted(rng.sample(VALUES, rng.randint(0, 3))) if t == "ok" else None
            if t == "info":
                procs[procs.index(p)] = next_proc
                next_proc += 1
        op["index"] = len(ops)
        ops.append(op)
    return ops


def kv_step(state: Any, op: Operation) -> tuple[bool, Any]:
    """A string register with get, put and append (Porcupine's kv model, one key)."""
    if op.f == "get":
        return state == op.output, state
    if op.f == "put":
        return True, op.value
    return True, state + op.value


def random_append_history(rng: random.Random, n_ops: int, processes: int = 3) -> list[dict]:
    """Random gets, puts and appends; gets return plausible strings, right or wrong."""
    ops: list[dict] = []
    pending: dict[int, dict] = {}
    procs = list(range(processes))
    next_proc = processes
    invoked = 0
    outputs = ("", "a", "b", "ab", "ba", "aa", "abb", "bab", "c", "ca")
    while invoked < n_ops or pending:
        p = rng.choice(procs)
        if p not in pending:
            if invoked >= n_ops:
                continue
            f = rng.choice(("get", "append", "append", "put"))
            value = None if f == "get" else rng.choice(("a", "b", "c") if f == "append" else
                                                       ("", "c"))
            op = {"process": p, "type": "invoke", "f": f, "key": "k", "value": value}
            pending[p] = op
            invoked += 1
        else:
            inv = pending.pop(p)
            t = rng.choices(("ok", "info"), (7, 1))[0]
            op = {"process": p, "type": t, "f": inv["f"], "key": "k", "value": inv["value"]}
            if inv["f"] == "get":
                op["value"] = rng.choice(outputs) if t == "ok" else None
            if t == "info":
                procs[procs.index(p)] = next_proc
                next_proc += 1
        op["index"] = len(ops)
        ops.append(op)
    return ops


def simulated_append_history(rng: random.Random, n_ops: int, processes: int = 4) -> list[dict]:
    """Concurrent clients against a real string register (get, put, append): linearizable by
    construction, crashed ops taking effect or not."""
    state = ""
    ops: list[dict] = []
    inflight: dict[int, dict] = {}
    procs = list(range(processes))
    next_proc = processes
    invoked = 0
    while invoked < n_ops or inflight:
        p = rng.choice(procs)
        cur = inflight.get(p)
        if cur is None:
            if invoked >= n_ops:
                continue
            f = rng.choice(("get", "append", "append", "put"))
            value = None if f == "get" else f"x{invoked}" if f == "append" else rng.choice(
                ("", "y"))
            inflight[p] = {"f": f, "value": value, "done": False, "out": None}
            ops.append({"process": p, "type": "invoke", "f": f, "key": "k", "value": value})
            invoked += 1
            continue
        if not cur["done"]:
            crash = rng.random() < 0.1
            if not crash or rng.random() < 0.5:
                if cur["f"] == "get":
                    cur["out"] = state
                elif cur["f"] == "put":
                    state = cur["value"]
                else:
                    state += cur["value"]
            if crash:
                inflight.pop(p)
                ops.append({"process": p, "type": "info", "f": cur["f"], "key": "k",
                            "value": cur["value"]})
                procs[procs.index(p)] = next_proc
                next_proc += 1
            else:
                cur["done"] = True
            continue
        inflight.pop(p)
        out = cur["out"] if cur["f"] == "get" else cur["value"]
        ops.append({"process": p, "type": "ok", "f": cur["f"], "key": "k", "value": out})
    for i, op in enumerate(ops):
        op["index"] = i
    return ops
