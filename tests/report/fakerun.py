"""Hand-made run directories for the report and checker tests.

`make_run` simulates a small cluster deterministically: clients invoke operations; each takes
effect (or not) at a point inside its interval; the chosen log, the node statuses, the status
samples and the phases are derived from the same simulation, so a clean run is consistent for
every checker. `fault=` breaks one thing on purpose.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

NODES = ("n1", "n2", "n3")
# seconds
WARMUP, FAULTS, RECOVERY, FINAL, END = 0.0, 2.0, 7.0, 9.5, 10.0
PARTITION = (2.5, 4.0)
KILL = (4.5, 6.0)
HEAL = 7.0
NS = 1_000_000_000


def _in_fault(t: float) -> bool:
    return PARTITION[0] <= t < PARTITION[1] or KILL[0] <= t < KILL[1]


def simulate(workload: str, seed: int, fault: str | None, concurrency: int = 4,
             gap_s: float = 0.02) -> tuple[list[dict], list[dict]]:
    """(operations with times and outcomes, applied updates in log order)."""
    rng = random.Random(seed)
    ops: list[dict] = []
    counter = 0
    for worker in range(concurrency):
        process = worker
        seq = 0
        t = rng.uniform(0, gap_s)
        while t < FINAL - 0.05:
            seq += 1
            if workload == "set":
                counter += 1
                f, key, value = "add", "set", counter
            else:
                key = f"k{worker % 2}"
                roll = rng.random()
                f, value = ("read", None) if roll < 0.5 else \
                    ("write", rng.randrange(5)) if roll < 0.8 else \
                    ("cas", [rng.randrange(5), rng.randrange(5)])
            status = "ok"
            lat = rng.lognormvariate(0.5, 0.4) / 1000  # ~1.6 ms
            error = None
            if fault == "vacuous" or (fault == "no-recovery" and t >= HEAL):
                status, lat, error = "fail", 0.004, "unavailable"
            elif _in_fault(t):
                roll = rng.random()
                if roll < 0.3:
                    status, lat, error = "fail", 0.005, "unavailable"
                elif roll < 0.4:
                    status, lat, error = "info", 0.5, "timeout"
                else:
                    lat = rng.uniform(0.005, 0.06)
            elif HEAL <= t < HEAL + 0.3:
                lat = rng.uniform(0.004, 0.02)  # a new leader settling in
            if f == "read" and status == "info":
                status = "fail"
            op = {"process": process, "client": f"c{process}", "seq": seq, "f": f, "key": key,
                  "value": value, "status": status, "error": error, "start": t,
                  "end": t + lat, "lin": t + lat * rng.uniform(0.2, 0.8),
                  "applies": status == "ok" or (status == "info" and rng.random() < 0.5)}
            ops.append(op)
            if status == "info":
                process += concurrency
            t = op["end"] + rng.uniform(0.5, 1.5) * gap_s
    if workload == "set":
        for i in range(3):
            t = FINAL + 0.05 + i * 0.05
            ops.append({"process": 100 + i, "client": f"c{100 + i}", "seq": 1, "f": "read",
                        "key": "set", "value": None, "status": "ok", "error": None,
                        "start": t, "end": t + 0.002, "lin": t + 0.001, "applies": False})
    # Effects in linearization order.
    state: dict[str, Any] = {}
    log: list[dict] = []
    for op in sorted(ops, key=lambda o: o["lin"]):
        f, key = op["f"], op["key"]
        if f == "read":
            if op["status"] == "ok":
                op["output"] = sorted(state.get(key, set())) if key == "set" else state.get(key)
            continue
        if not op["applies"]:
            continue
        cmd: dict[str, Any] = {"client": op["client"], "seq": op["seq"], "op": f, "key": key}
        if f == "cas":
            cmd["from"], cmd["to"] = op["value"]
            if state.get(key) != op["value"][0]:
                if op["status"] == "ok":
                    op["status"], op["error"] = "fail", "precondition-failed"
            else:
                state[key] = op["value"][1]
        elif f == "write":
            cmd["value"] = op["value"]
            state[key] = op["value"]
        else:
            cmd["value"] = op["value"]
            state.setdefault(key, set()).add(op["value"])
        log.append(cmd)
    return ops, log


def writes_value(op: dict, v: Any) -> bool:
    return (op["f"] == "write" and op["value"] == v) or (
        op["f"] == "cas" and isinstance(op["value"], list) and op["value"][1] == v)


def make_stale_read(ops: list[dict]) -> dict:
    """Turn one ok read inside the partition into a stale one served by n1: it returns the
    value of an earlier write that a later acknowledged write replaced, every writer of that
    value having completed before the replacing write began (refutable without a search)."""
    for r in sorted(ops, key=lambda o: o["start"]):
        if r["f"] != "read" or r["status"] != "ok" or not (
                PARTITION[0] <= r["start"] < PARTITION[1]):
            continue
        done = sorted((w for w in ops if w["f"] == "write" and w["status"] == "ok"
                       and w["key"] == r["key"] and w["end"] < r["start"]),
                      key=lambda w: w["end"])
        for old, new in zip(done, done[1:], strict=False):
            a = old["value"]
            if a == new["value"] or a == r.get("output"):
                continue
            # a failed op did not happen; one invoked after the read ended cannot matter
            if all(o["end"] < new["start"] for o in ops
                   if o["key"] == r["key"] and o["status"] != "fail" and o["start"] < r["end"]
                   and writes_value(o, a)):
                r["output"], r["node"], r["stale"] = a, "n1", True
                return r
    raise AssertionError("no read to make stale in this simulation")


def history_of(ops: list[dict], heal: bool = True) -> list[dict]:
    events: list[tuple[float, int, dict]] = []
    for op in ops:
        base = {"process": op["process"], "f": op["f"], "key": op["key"],
                "node": op.get("node") or NODES[op["process"] % len(NODES)],
                "client": op["client"], "seq": op["seq"]}
        events.append((op["start"], 0, {**base, "type": "invoke", "value": op["value"]}))
        done = {**base, "type": op["status"],
                "value": op.get("output") if op["f"] == "read" else op["value"]}
        if op["error"]:
            done["error"] = op["error"]
        events.append((op["end"], 1, done))
    nemesis = [(PARTITION[0], "start-partition", {"shape": "isolate-leader",
                                                  "cut": [["n1", "n2"], ["n1", "n3"]]},
                ["n1", "n2", "n3"]),
               (PARTITION[1], "stop-partition", None, ["n1", "n2", "n3"]),
               (KILL[0], "kill", {"shape": "one"}, ["n2"]),
               (KILL[1], "restart", None, ["n2"])]
    if heal:
        nemesis.append((HEAL, "heal", None, []))
    for t, f, value, nodes in nemesis:
        events.append((t, 0, {"process": "nemesis", "type": "invoke", "f": f, "value": value,
                              "node": nodes}))
        events.append((t + 0.001, 1, {"process": "nemesis", "type": "info", "f": f,
                                      "value": value, "node": nodes}))
    events.sort(key=lambda e: (e[0], e[1]))
    history = []
    for i, (t, _, ev) in enumerate(events):
        history.append({"index": i, "time": int(t * NS), **ev})
    return history


def _digest(log: list[dict]) -> str:
    return hashlib.sha256(json.dumps(log, sort_keys=True).encode()).hexdigest()[:16]


def _status(node: str, applied: int, digest: str, counters: dict[str, int],
            role: str = "follower") -> dict:
    return {"ok": True, "id": node, "role": role, "ballot": [2, "n1"], "leader": "n1",
            "serving": True, "chosen": applied, "applied": applied, "counters": counters,
            "digest": digest, "bugs": []}


def make_run(store: Path, workload: str = "register", seed: int = 1, fault: str | None = None,
             name: str | None = None, stamp: str = "20240101T000000") -> Path:
    """A complete run directory under store/<name>/<stamp>/; returns its path.

    fault: None (clean), "divergent" (a slot differs on n3), "digest" (equal applied index,
    different digests), "duplicate" (an acknowledged write in two slots), "lost-add" (set: an
    acknowledged add missing from the log and the final reads), "vacuous" (nothing succeeds),
    "no-recovery" (nothing succeeds after the final heal), "stale-read" (register: n1, cut
    off by the partition, answers one read with a value an acknowledged write replaced).
    """
    ops, applied = simulate(workload, seed, fault)
    if fault == "stale-read":
        make_stale_read(ops)
    if fault == "lost-add":
        victim = next(o for o in ops if o["f"] == "add" and o["status"] == "ok"
                      and o["start"] > RECOVERY)
        applied = [c for c in applied if c.get("value") != victim["value"]]
        for o in ops:
            if o["f"] == "read" and o["status"] == "ok" and isinstance(o.get("output"), list):
                o["output"] = [v for v in o["output"] if v != victim["value"]]
    log = [{"op": "noop"}] + applied
    if fault == "duplicate":
        dup = next(c for c in applied if c["op"] in ("write", "add"))
        log.append(dict(dup))
    entries = [{"slot": i, "value": v} for i, v in enumerate(log)]
    history = history_of(ops)
    run_dir = Path(store) / (name or f"{workload}-partition+kill-n3") / stamp
    run_dir.mkdir(parents=True)
    config = {"backend": "local", "nodes": 3, "workload": workload, "nemesis": "partition,kill",
              "time_limit": 10.0, "concurrency": 4, "rate": 200.0, "seed": seed,
              "store": str(store), "bugs": [], "bug_nodes": [], "name": None,
              "op_timeout": 0.2, "election_timeout_ms": 300}
    (run_dir / "config.json").write_text(json.dumps(config, indent=1))
    (run_dir / "history.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))
    phases = [{"name": "warmup", "start": int(WARMUP * NS), "end": int(FAULTS * NS)},
              {"name": "faults", "start": int(FAULTS * NS), "end": int(RECOVERY * NS)},
              {"name": "recovery", "start": int(RECOVERY * NS), "end": int(FINAL * NS)},
              {"name": "final-reads", "start": int(FINAL * NS), "end": int(END * NS)}]
    (run_dir / "phases.json").write_text(json.dumps(phases))

    def commits_by(t: float) -> int:
        return sum(1 for o in ops if o["f"] != "read" and o["applies"] and o["lin"] < t)

    def counters(t: float, node: str) -> dict[str, int]:
        restarted = node == "n2" and t >= KILL[1]
        c = commits_by(t) - (commits_by(KILL[1]) if restarted else 0)
        elections = (1 if t > 0 else 0) + (1 if t >= PARTITION[0] else 0)
        if node != "n1" or restarted:
            elections = 0
        return {"elections": elections, "phase1_rounds": elections,
                "phase2_rounds": c + (1 if elections else 0), "commits": c}

    samples = []
    for label, t in (("warmup-start", WARMUP + 0.001), ("faults-start", FAULTS),
                     ("recovery-start", RECOVERY + 0.002), ("end", END)):
        n = commits_by(t)
        samples.append({"time": int(t * NS), "label": label, "nodes": {
            node: None if (node == "n2" and KILL[0] <= t < KILL[1]) else
            _status(node, n, "x", counters(t, node), "leader" if node == "n1" else "follower")
            for node in NODES}})
    (run_dir / "status-samples.json").write_text(json.dumps(samples))
    for node in NODES:
        d = run_dir / "nodes" / node
        d.mkdir(parents=True)
        node_entries = [dict(e) for e in entries]
        digest = _digest(log)
        if node == "n3" and fault == "divergent":
            node_entries[3] = {"slot": 3, "value": {"client": "c99", "seq": 1, "op": "write",
                                                    "key": "k0", "value": 4}}
        if node == "n3" and fault == "digest":
            digest = "deadbeef"
        (d / "log.json").write_text(json.dumps({"first": 0, "entries": node_entries}))
        (d / "status.json").write_text(json.dumps(_status(
            node, len(log) - 1, digest, counters(END, node),
            "leader" if node == "n1" else "follower")))
        (d / "node.log").write_text(f"{node} started ballot [1, n1]\n{node} exit\n")
    return run_dir
