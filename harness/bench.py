"""`harness bench`: the node's fast path, measured.

Starts a local 3-node cluster (peers connected directly, no proxies), runs closed-loop clients
(each sends its next command when the last is answered) for a fixed time, in Multi-Paxos and in
classic mode (`--classic`: Phase 1 before every slot), for writes and reads, and reports
throughput, latency quantiles, and messages and Phase-1 rounds per commit from the nodes'
`status` counters.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness.backends.local import LocalBackend
from harness.nodeclient import NodeConnection, one_request


def quantile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


async def statuses(addresses: dict[str, tuple[str, int]]) -> dict[str, dict | None]:
    replies = await asyncio.gather(*(one_request(a, {"op": "status"}, 2.0)
                                     for a in addresses.values()))
    return dict(zip(addresses, replies, strict=True))


async def wait_leader(addresses: dict[str, tuple[str, int]], timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for node, status in (await statuses(addresses)).items():
            if status and status.get("role") == "leader" and status.get("serving", True):
                return node
        await asyncio.sleep(0.1)
    raise RuntimeError("no leader within 20 s")


def counter_totals(snapshot: dict[str, dict | None]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for status in snapshot.values():
        for name, value in ((status or {}).get("counters") or {}).items():
            if isinstance(value, int):
                totals[name] = totals.get(name, 0) + value
    return totals


async def closed_loop(address: tuple[str, int], clients: int, op: str, seconds: float,
                      tag: str) -> tuple[list[float], int]:
    latencies: list[float] = []
    errors = 0
    stop_at = time.monotonic() + seconds

    async def client(i: int) -> None:
        nonlocal errors
        conn = NodeConnection(*address)
        seq = 0
        try:
            while time.monotonic() < stop_at:
                seq += 1
                request = {"op": op, "key": f"b{i % 16}", "client": f"{tag}{i}", "seq": seq}
                if op == "write":
                    request["value"] = seq
                t0 = time.perf_counter()
                try:
                    reply = await conn.request(request, 5.0)
                except (TimeoutError, OSError, ValueError):
                    errors += 1
                    continue
                if reply.get("ok") or reply.get("code") == 20:
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors += 1
        finally:
            conn.close()

    await asyncio.gather(*(client(i) for i in range(clients)))
    return latencies, errors


async def bench_mode(mode: str, client_counts: list[int], seconds: float,
                     extra_args: list[str]) -> list[dict[str, Any]]:
    tmp = Path(tempfile.mkdtemp(prefix=f"paxos-bench-{mode}-"))
    node_args = (["--classic"] if mode == "classic" else []) + extra_args
    backend = LocalBackend(["n1", "n2", "n3"], tmp, node_args, f"bench-{mode}-{tmp.name}",
                           direct=True)
    rows = []
    try:
        await asyncio.to_thread(backend.setup)
        addresses = {n: backend.client_address(n) for n in backend.node_ids}
        leader = await wait_leader(addresses)
        # Warm the session table and connections so the first figures are not start-up noise.
        await closed_loop(addresses[leader], 4, "write", 0.5, "warm")
        for op in ("write", "read"):
            for clients in client_counts:
                before = counter_totals(await statuses(addresses))
                t0 = time.monotonic()
                latencies, errors = await closed_loop(addresses[leader], clients, op, seconds,
                                                      f"{op}{clients}-")
                elapsed = time.monotonic() - t0
                after = counter_totals(await statuses(addresses))
                delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
                latencies.sort()
                done = len(latencies)
                # Every node counts commits it applies; the leader's share is a third of them.
                commits = max(1, delta.get("commits", 0) // len(addresses))
                messages = delta.get("messages_sent")
                rows.append({
                    "mode": mode, "op": op, "clients": clients, "ops": done, "errors": errors,
                    "throughput": done / elapsed,
                    "p50_ms": quantile(latencies, 0.50) * 1000,
                    "p99_ms": quantile(latencies, 0.99) * 1000,
                    "phase1_per_commit": delta.get("phase1_rounds", 0) / commits,
                    "messages_per_commit": None if messages is None else messages / commits,
                })
    finally:
        await asyncio.to_thread(backend.teardown)
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=5.0,
                        help="duration of each measurement (default %(default)s)")
    parser.add_argument("--clients", default="1,64",
                        help="comma list of closed-loop client counts (default %(default)s)")
    parser.add_argument("--modes", default="multi,classic",
                        help="multi (Multi-Paxos), classic (Phase 1 per slot) "
                        "(default %(default)s)")
    parser.add_argument("--node-arg", dest="node_args", action="append", default=[],
                        metavar="ARG", help="extra argument for every node (repeatable)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    try:
        clients = [int(c) for c in args.clients.split(",") if c.strip()]
        modes = [m.strip() for m in args.modes.split(",") if m.strip()]
        if not clients or any(c < 1 for c in clients):
            raise ValueError("--clients needs positive integers")
        if not modes or set(modes) - {"multi", "classic"}:
            raise ValueError("--modes takes multi and/or classic")
    except ValueError as exc:
        print(f"harness bench: {exc}", file=sys.stderr)
        return 3
    rows: list[dict] = []
    try:
        for mode in modes:
            rows += asyncio.run(bench_mode(mode, clients, args.seconds, args.node_args))
    except RuntimeError as exc:
        print(f"harness bench: {exc}", file=sys.stderr)
        return 3
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    from tabulate import tabulate

    table = [[r["mode"], r["op"], r["clients"], f"{r['throughput']:.0f}", f"{r['p50_ms']:.2f}",
              f"{r['p99_ms']:.2f}",
              "-" if r["messages_per_commit"] is None else f"{r['messages_per_commit']:.2f}",
              f"{r['phase1_per_commit']:.3f}", r["errors"]] for r in rows]
    print(tabulate(table, headers=["mode", "op", "clients", "ops/s", "p50 ms", "p99 ms",
                                   "msgs/commit", "phase1/commit", "errors"]))
    ratio = {}
    for op in ("write", "read"):
        for c in clients:
            multi = [r for r in rows if r["mode"] == "multi" and r["op"] == op
                     and r["clients"] == c]
            classic = [r for r in rows if r["mode"] == "classic" and r["op"] == op
                       and r["clients"] == c]
            if multi and classic and classic[0]["p50_ms"] > 0:
                ratio[(op, c)] = multi[0]["p50_ms"] / classic[0]["p50_ms"]
    for (op, c), value in ratio.items():
        print(f"multi/classic p50, {op}, {c} client(s): {value:.2f}")
    return 0
