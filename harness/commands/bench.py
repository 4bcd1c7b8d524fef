"""`harness bench`: the node's fast path, measured.

Starts a local 3-node cluster (peers connected directly, no proxies), runs closed-loop clients
(each sends its next command when the last is answered) for a fixed time, in Multi-Paxos and in
classic mode (`--classic`: a Phase 1 before every slot), for writes and reads, and reports
throughput, latency quantiles, and from the nodes' `status` counters: peer messages, Phase-1
rounds, fsyncs and chosen slots per operation, and the leader's Accept batch size.

`--commands N` runs N writes instead (many clients, as fast as they go) and reports the nodes'
resident memory along the way: log compaction should keep it flat.

The clients are deliberately lean (asyncio protocols, one preformatted line per request): they
share the machine with the nodes, and every microsecond they spend is one the nodes lack.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness.backends.local import LocalBackend
from harness.commands.bench_floor import BackgroundLoad, measure_floor
from harness.run.config import ConfigError, check_node_args
from harness.systems import make_system
from harness.systems.paxos import statuses as cluster_statuses

KEYS = 16
# The systems bench can start on its own (a Maelstrom node needs its program: run it instead).
BENCH_SYSTEMS = ("paxos", "etcd")


def quantile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def loadavg() -> list[float] | None:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except (OSError, ValueError):
        return None


def machine() -> dict[str, Any]:
    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model, "python": platform.python_version(),
            "system": platform.platform()}


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


async def statuses(addresses: dict[str, tuple[str, int]]) -> dict[str, dict | None]:
    # A loaded benchmark node may take a while to answer.
    return await cluster_statuses(addresses, 2.0)


async def wait_leader(addresses: dict[str, tuple[str, int]], timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for node, status in (await statuses(addresses)).items():
            if status and status.get("role") == "leader" and status.get("serving", True):
                return node
        await asyncio.sleep(0.1)
    raise RuntimeError(f"no leader within {timeout:.0f} s")


def counters_of(snapshot: dict[str, dict | None]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for node, status in snapshot.items():
        counters = (status or {}).get("counters") or {}
        out[node] = {k: v for k, v in counters.items() if isinstance(v, int)}
    return out


def delta(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]
          ) -> dict[str, dict[str, int]]:
    return {node: {k: v - before.get(node, {}).get(k, 0) for k, v in c.items()}
            for node, c in after.items()}


class CellProgress:
    """The live line on stderr while cells run: which one, how many are done, the time left.
    Transient: the table replaces it, and a stderr that is not a terminal gets nothing."""

    def __init__(self, total: int) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(TextColumn("[bold]bench"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[now]}"), TimeElapsedColumn(),
                            TextColumn("eta"), TimeRemainingColumn(),
                            console=Console(stderr=True), transient=True,
                            refresh_per_second=2)  # the bench's own CPU is the nodes' loss
        self.task = self.bar.add_task("cells", total=total, now="measuring the floor")

    def __enter__(self) -> CellProgress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.__exit__(*exc)

    def now(self, text: str) -> None:
        self.bar.update(self.task, now=text)

    def cell_done(self) -> None:
        self.bar.advance(self.task)


class _Quiet:
    def now(self, text: str) -> None:
        pass

    def cell_done(self) -> None:
        pass


class _Client(asyncio.Protocol):
    """One closed-loop client on its own connection: the next request leaves when the reply to
    the last one is in."""

    def __init__(self, run: _Load, cid: str, key: str) -> None:
        self.run = run
        self.cid = cid
        self.key = key
        self.seq = 0
        self.t0 = 0.0
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._send()

    def _send(self) -> None:
        run = self.run
        if not run.more():
            self._finish()
            return
        self.seq += 1
        s = self.seq
        if run.op == "write":
            line = (f'{{"id":{s},"client":"{self.cid}","seq":{s},"op":"write",'
                    f'"key":"{self.key}","value":{s}}}\n')
        else:
            line = f'{{"id":{s},"client":"{self.cid}","seq":{s},"op":"read","key":"{self.key}"}}\n'
        self.t0 = time.perf_counter()
        assert self.transport is not None
        self.transport.write(line.encode())

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            t = time.perf_counter() - self.t0
            try:
                reply = json.loads(line)
            except ValueError:
                self.run.errors += 1
                continue
            if reply.get("ok") or reply.get("code") == 20:
                self.run.latencies.append(t)
            else:
                self.run.errors += 1
                self.run.error_codes[str(reply.get("code"))] = (
                    self.run.error_codes.get(str(reply.get("code")), 0) + 1)
            self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.run.errors += 1
            self.done.set_result(None)

    def _finish(self) -> None:
        if self.transport is not None:
            self.transport.close()
        if not self.done.done():
            self.done.set_result(None)


class _Load:
    """A closed-loop load: `clients` clients doing `op` until `stop_at` or `limit` ops."""

    def __init__(self, op: str, stop_at: float, limit: int | None = None) -> None:
        self.op = op
        self.stop_at = stop_at
        self.limit = limit
        self.latencies: list[float] = []
        self.errors = 0
        self.error_codes: dict[str, int] = {}
        self.started = 0

    def more(self) -> bool:
        if self.limit is not None:
            if self.started >= self.limit:
                return False
            self.started += 1
            return True
        return time.monotonic() < self.stop_at


async def closed_loop(address: tuple[str, int], clients: int, op: str, seconds: float,
                      tag: str, limit: int | None = None, run: _Load | None = None) -> _Load:
    loop = asyncio.get_running_loop()
    run = run or _Load(op, time.monotonic() + seconds, limit)
    protos = []
    for i in range(clients):
        _, proto = await loop.create_connection(
            lambda i=i: _Client(run, f"{tag}{i}", f"b{i % KEYS}"), *address)
        protos.append(proto)
    budget = seconds + 10 if limit is None else None
    done, pending = await asyncio.wait([p.done for p in protos], timeout=budget)
    for p in protos:   # stragglers: a request never answered
        if not p.done.done():
            run.errors += 1
            p._finish()
    return run


def row_of(mode: str, op: str, clients: int, run: _Load, elapsed: float, leader: str,
           d: dict[str, dict[str, int]]) -> dict[str, Any]:
    lat = sorted(run.latencies)
    ops = len(lat)
    led = d.get(leader, {})

    def total(name: str) -> int | None:
        values = [c[name] for c in d.values() if name in c]
        return sum(values) if values else None

    def per_op(value: int | None) -> float | None:
        return None if value is None or not ops else value / ops

    commits = led.get("commits", 0)
    rounds = led.get("phase2_rounds", 0)
    return {
        "mode": mode, "op": op, "clients": clients, "ops": ops, "errors": run.errors,
        "error_codes": run.error_codes, "seconds": round(elapsed, 3),
        "throughput": ops / elapsed if elapsed > 0 else 0.0,
        "p50_ms": quantile(lat, 0.50) * 1000,
        "p99_ms": quantile(lat, 0.99) * 1000,
        # per client operation, all nodes together (commits: the leader's chosen slots)
        "messages_per_op": per_op(total("messages_sent")),
        "phase1_per_op": per_op(total("phase1_rounds")),
        "fsyncs_per_op": per_op(total("fsyncs")),
        "commits_per_op": per_op(commits),
        "phase1_per_commit": (total("phase1_rounds") or 0) / commits if commits else None,
        "batch": commits / rounds if rounds else None,
        "leader": leader,
        "counters": d,
        "loadavg": loadavg(),
    }


def make_backend(mode: str, extra_args: list[str], data_root: str | None
                 ) -> tuple[LocalBackend, Path]:
    tmp = Path(tempfile.mkdtemp(prefix=f"paxos-bench-{mode}-", dir=data_root))
    node_args = (["--classic"] if mode == "classic" else []) + extra_args
    backend = LocalBackend(["n1", "n2", "n3"], tmp, node_args, f"bench-{mode}-{tmp.name}",
                           direct=True)
    return backend, tmp


async def bench_mode(mode: str, client_counts: list[int], seconds: float,
                     extra_args: list[str], ops: list[str] | None = None,
                     data_root: str | None = None, progress: Any = None
                     ) -> list[dict[str, Any]]:
    progress = progress or _Quiet()
    backend, tmp = make_backend(mode, extra_args, data_root)
    rows = []
    try:
        progress.now(f"paxos ({mode}): starting 3 nodes")
        await asyncio.to_thread(backend.setup)
        addresses = {n: backend.client_address(n) for n in backend.node_ids}
        leader = await wait_leader(addresses)
        # Warm up (connections, session table, every key written so reads find a value).
        await closed_loop(addresses[leader], KEYS, "write", 0.5, "warm")
        rows = await measure_cells(
            mode, ops or ["write", "read"], client_counts, leader, lambda: statuses(addresses),
            lambda op, clients: closed_loop(addresses[leader], clients, op, seconds,
                                            f"{op}{clients}-"), progress)
    finally:
        await asyncio.to_thread(backend.teardown)
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


async def measure_cells(mode: str, ops: list[str], client_counts: list[int], leader: str,
                        snapshot: Any, load: Any, progress: Any = None) -> list[dict[str, Any]]:
    """One row per (op, clients): the load's latencies and the counters it moved."""
    progress = progress or _Quiet()
    rows = []
    for op in ops:
        for clients in client_counts:
            progress.now(f"{mode}: {op}s, {clients} client{'s' if clients > 1 else ''}")
            first = await snapshot()
            before = counters_of(first)
            t0 = time.monotonic()
            run = await load(op, clients)
            elapsed = time.monotonic() - t0
            after = counters_of(await snapshot())
            row = row_of(mode, op, clients, run, elapsed, leader, delta(before, after))
            row["event_loop"] = (first.get(leader) or {}).get("event_loop")
            rows.append(row)
            progress.cell_done()
    return rows


async def system_loop(system: Any, address: tuple[str, int], clients: int, op: str,
                      seconds: float) -> _Load:
    """The closed loop through a system's own client (etcd: its JSON gateway over HTTP)."""
    run = _Load(op, time.monotonic() + seconds)

    async def one(i: int) -> None:
        client = system.client(address)
        key = f"b{i % KEYS}"
        seq = 0
        try:
            while run.more():
                seq += 1
                value = None if op == "read" else seq
                t0 = time.perf_counter()
                try:
                    outcome = await client.invoke({"f": op, "key": key, "value": value},
                                                  f"{op}{clients}-{i}", seq, 5.0)
                except (TimeoutError, OSError):
                    run.errors += 1
                    continue
                if outcome.kind == "ok":
                    run.latencies.append(time.perf_counter() - t0)
                else:
                    run.errors += 1
                    run.error_codes[outcome.error or outcome.kind] = (
                        run.error_codes.get(outcome.error or outcome.kind, 0) + 1)
        finally:
            client.close()

    await asyncio.gather(*(one(i) for i in range(clients)))
    return run


async def bench_system(name: str, client_counts: list[int], seconds: float,
                       ops: list[str], data_root: str | None, progress: Any = None
                       ) -> list[dict[str, Any]]:
    """The same cells against another system (etcd), on the same local backend, direct links."""
    progress = progress or _Quiet()
    system = make_system(name)
    tmp = Path(tempfile.mkdtemp(prefix=f"paxos-bench-{name}-", dir=data_root))
    backend = LocalBackend(["n1", "n2", "n3"], tmp, [], f"bench-{name}-{tmp.name}",
                           direct=True, system=system)

    async def snapshot() -> dict[str, dict | None]:
        replies = await asyncio.gather(*(system.status(addresses[n], 2.0)
                                         for n in backend.node_ids))
        return dict(zip(backend.node_ids, replies, strict=True))

    rows = []
    try:
        progress.now(f"{name}: starting 3 members")
        await asyncio.to_thread(backend.setup)
        addresses = {n: backend.client_address(n) for n in backend.node_ids}
        deadline = time.monotonic() + 30
        leader = None
        while leader is None and time.monotonic() < deadline:
            leader = system.serving(await snapshot())
            if leader is None:
                await asyncio.sleep(0.2)
        if leader is None:
            raise RuntimeError(f"{name}: no leader within 30 s")
        await system_loop(system, addresses[leader], KEYS, "write", 0.5)
        rows = await measure_cells(
            name, ops, client_counts, leader, snapshot,
            lambda op, clients: system_loop(system, addresses[leader], clients, op, seconds),
            progress)
    finally:
        await asyncio.to_thread(backend.teardown)
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


async def bench_commands(total: int, clients: int, extra_args: list[str],
                         data_root: str | None, progress: bool) -> dict[str, Any]:
    """`total` writes by `clients` closed-loop clients; every node's RSS sampled along the way."""
    backend, tmp = make_backend("multi", extra_args, data_root)
    samples: list[dict[str, Any]] = []
    try:
        await asyncio.to_thread(backend.setup)
        addresses = {n: backend.client_address(n) for n in backend.node_ids}
        leader = await wait_leader(addresses)
        pids = {n: backend.procs[n].pid for n in backend.node_ids}
        await closed_loop(addresses[leader], KEYS, "write", 0.5, "warm")

        async def sample(done: int) -> None:
            sts = await statuses(addresses)
            blocks = {n: ((s or {}).get("memory") or {}).get("py_blocks")
                      for n, s in sts.items()}
            samples.append({"commands": done, "time": round(time.monotonic() - t0, 1),
                            "rss_mb": {n: rss_mb(p) for n, p in pids.items()},
                            "py_blocks": blocks, "loadavg": loadavg()})
            if progress:
                rss = ", ".join(f"{n} {v:.1f}" for n, v in samples[-1]["rss_mb"].items()
                                if v is not None)
                blk = ", ".join(f"{n} {v}" for n, v in blocks.items() if v is not None)
                print(f"  {done:>9} commands, {samples[-1]['time']:>6.1f} s, RSS MB: {rss}; "
                      f"Python blocks: {blk}", file=sys.stderr, flush=True)

        t0 = time.monotonic()
        before = counters_of(await statuses(addresses))
        await sample(0)
        run = _Load("write", 0.0, total)
        load = asyncio.ensure_future(
            closed_loop(addresses[leader], clients, "write", 0, "bulk", total, run))
        step = max(1, total // 10)
        mark = step
        while not load.done():
            await asyncio.sleep(0.05)
            done = len(run.latencies) + run.errors
            if done >= mark and mark < total:
                await sample(mark)
                mark += step
        await load
        await sample(total)
        elapsed = time.monotonic() - t0
        errors = run.errors
        lat = run.latencies
        after = counters_of(await statuses(addresses))
        final = await statuses(addresses)
    finally:
        await asyncio.to_thread(backend.teardown)
        shutil.rmtree(tmp, ignore_errors=True)
    lat.sort()
    d = delta(before, after)
    return {
        "commands": total, "clients": clients, "errors": errors, "seconds": round(elapsed, 1),
        "throughput": total / elapsed, "p50_ms": quantile(lat, 0.5) * 1000,
        "p99_ms": quantile(lat, 0.99) * 1000, "leader": leader,
        "leader_rss_mb_before": samples[0]["rss_mb"][leader],
        "leader_rss_mb_after": samples[-1]["rss_mb"][leader],
        "snapshot_first_slot": {n: (s or {}).get("first") for n, s in final.items()},
        "chosen": {n: (s or {}).get("chosen") for n, s in final.items()},
        "counters": d, "samples": samples, "machine": machine(),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=5.0,
                        help="duration of each measurement (default %(default)s)")
    parser.add_argument("--clients", default="1,64",
                        help="comma list of closed-loop client counts (default %(default)s)")
    parser.add_argument("--system", default="paxos", metavar="NAME,...",
                        help=f"systems to measure, a comma list of {', '.join(BENCH_SYSTEMS)}: the "
                        "bundled node in each --modes, others (etcd) as they come; one table "
                        "(default %(default)s)")
    parser.add_argument("--modes", default="multi,classic",
                        help="multi (Multi-Paxos), classic (Phase 1 before every slot) "
                        "(default %(default)s)")
    parser.add_argument("--ops", default="write,read",
                        help="comma list of write, read (default %(default)s)")
    parser.add_argument("--node-arg", dest="node_args", action="append", default=[],
                        metavar="ARG", help="extra argument for every node (repeatable)")
    parser.add_argument("--data-root", metavar="DIR", default=None,
                        help="where the nodes' data directories go (default: the system's "
                        "temporary directory; e.g. /dev/shm to take the disk out)")
    parser.add_argument("--commands", type=int, metavar="N", default=None,
                        help="instead: N writes by the largest --clients count, reporting the "
                        "nodes' RSS every N/10 commands (memory over a long run)")
    parser.add_argument("--background-load", type=int, default=0, metavar="N",
                        help="run N CPU-bound processes during the measurement, to take the "
                        "figures of a busy machine on purpose (default %(default)s)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--save", metavar="FILE", default=None,
                        help="also write the JSON to FILE (with the table on the screen)")


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def run(args: argparse.Namespace) -> int:
    try:
        try:
            clients = [int(c) for c in args.clients.split(",") if c.strip()]
        except ValueError:
            raise ValueError(f"--clients must be integers separated by commas, not "
                             f"{args.clients!r}") from None
        modes = [m.strip() for m in args.modes.split(",") if m.strip()]
        ops = [o.strip() for o in args.ops.split(",") if o.strip()]
        if not clients or any(c < 1 for c in clients):
            raise ValueError("--clients needs positive integers")
        if not modes or set(modes) - {"multi", "classic"}:
            raise ValueError("--modes takes multi and/or classic")
        if not ops or set(ops) - {"write", "read"}:
            raise ValueError("--ops takes write and/or read")
        if args.commands is not None and not 1 <= args.commands <= 10**9:
            raise ValueError("--commands must be between 1 and 1000000000")
        if not (0.1 <= args.seconds <= 3600):  # also refuses nan
            raise ValueError(f"--seconds must be between 0.1 and 3600, not {args.seconds:g}")
        if any(c > 10_000 for c in clients):
            raise ValueError("--clients must be at most 10000 each")
        if not 0 <= args.background_load <= 64:
            raise ValueError(f"--background-load must be between 0 and 64, not "
                             f"{args.background_load}")
        if args.node_args:
            check_node_args(args.node_args)
        systems = [s.strip() for s in args.system.split(",") if s.strip()]
        if not systems or set(systems) - set(BENCH_SYSTEMS):
            raise ValueError(f"--system takes {', '.join(BENCH_SYSTEMS)} (a comma list), not "
                             f"{args.system!r}")
        for system in systems:
            if system == "etcd" and not shutil.which("etcd"):
                raise ValueError("--system etcd needs etcd (apt-get install etcd-server)")
    except (ValueError, ConfigError) as exc:
        print(f"harness bench: {exc}", file=sys.stderr)
        return 3
    if args.data_root is not None and not Path(args.data_root).is_dir():
        print(f"harness bench: --data-root {args.data_root}: no such directory", file=sys.stderr)
        return 3
    # Long enough for any bench; the processes also end when this one is gone.
    with BackgroundLoad(args.background_load, 48 * 3600):
        return _measure(args, clients, modes, ops, systems)


def _measure(args: argparse.Namespace, clients: list[int], modes: list[str], ops: list[str],
             systems: list[str]) -> int:
    load_before = loadavg()
    if args.commands is not None:
        try:
            result = asyncio.run(bench_commands(args.commands, max(clients), args.node_args,
                                                args.data_root, not args.json))
        except (RuntimeError, OSError) as exc:
            print(f"harness bench: {exc}", file=sys.stderr)
            return 3
        result["background_load"] = args.background_load
        if args.save:
            Path(args.save).write_text(json.dumps(result, indent=1) + "\n")
        if args.json:
            print(json.dumps(result, indent=1))
            return 0
        print(f"{result['commands']} writes by {result['clients']} clients in "
              f"{result['seconds']} s ({result['throughput']:.0f}/s, p50 "
              f"{result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms, "
              f"{result['errors']} errors)")
        print(f"leader {result['leader']} RSS: {result['leader_rss_mb_before']:.1f} MB before, "
              f"{result['leader_rss_mb_after']:.1f} MB after; first slot still in the log: "
              + ", ".join(f"{n} {slot}" for n, slot in
                          (result["snapshot_first_slot"] or {}).items()))
        return 0
    rows: list[dict] = []
    cells = len(ops) * len(clients) * sum(len(modes) if s == "paxos" else 1 for s in systems)
    try:
        with CellProgress(cells) as progress:
            floor = measure_floor(args.data_root)
            for system in systems:
                if system != "paxos":
                    rows += asyncio.run(bench_system(system, clients, args.seconds, ops,
                                                     args.data_root, progress))
                    continue
                for mode in modes:
                    rows += asyncio.run(bench_mode(mode, clients, args.seconds,
                                                   args.node_args, ops, args.data_root,
                                                   progress))
    except (RuntimeError, OSError) as exc:
        print(f"harness bench: {exc}", file=sys.stderr)
        return 3
    ratios = []
    for op in ops:
        for c in clients:
            multi = [r for r in rows if r["mode"] == "multi" and r["op"] == op
                     and r["clients"] == c]
            classic = [r for r in rows if r["mode"] == "classic" and r["op"] == op
                       and r["clients"] == c]
            if multi and classic and classic[0]["p50_ms"] > 0:
                ratios.append({"op": op, "clients": c,
                               "multi_over_classic_p50": multi[0]["p50_ms"]
                               / classic[0]["p50_ms"]})
    for r in rows:
        # The floor holds for one client; more clients queue behind each other by design.
        r["floor_p50_ms"] = floor[f"{r['op']}_p50_ms"] if r["clients"] == 1 else None
        r["p50_over_floor"] = (r["p50_ms"] / r["floor_p50_ms"] if r["floor_p50_ms"] else None)
    report = {"machine": machine(), "loadavg_before": load_before, "loadavg_after": loadavg(),
              "background_load": args.background_load, "floor": floor,
              "seconds": args.seconds, "rows": rows, "ratios": ratios}
    if args.save:
        Path(args.save).write_text(json.dumps(report, indent=1) + "\n")
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    from tabulate import tabulate

    table = [[r["mode"], r["op"], r["clients"], f"{r['throughput']:.0f}", f"{r['p50_ms']:.2f}",
              f"{r['p99_ms']:.2f}", _fmt(r["messages_per_op"], ".2f"),
              _fmt(r["phase1_per_op"], ".3f"), _fmt(r["fsyncs_per_op"], ".3f"),
              _fmt(r["batch"], ".1f"), _fmt(r["p50_over_floor"], ".1f"), r["errors"]]
             for r in rows]
    print(tabulate(table, headers=["mode", "op", "clients", "ops/s", "p50 ms", "p99 ms",
                                   "msgs/op", "phase1/op", "fsyncs/op", "batch", "p50/floor",
                                   "errors"]))
    print(f"floor: fdatasync p50 {floor['fsync']['p50_ms']:.3f} ms (p99 "
          f"{floor['fsync']['p99_ms']:.3f}; {floor['fsync_shared_by_3']['p50_ms']:.3f} with "
          f"three processes syncing at once) in {floor['data_root']}, loopback round trip p50 "
          f"{floor['loopback_rtt']['p50_ms']:.3f} ms (p99 {floor['loopback_rtt']['p99_ms']:.3f}); "
          f"one-client write {floor['write_p50_ms']:.3f} ms, read {floor['read_p50_ms']:.3f} ms")
    for r in ratios:
        print(f"multi/classic p50, {r['op']}, {r['clients']} client(s): "
              f"{r['multi_over_classic_p50']:.2f}")
    la = loadavg()
    if load_before and la:
        extra = (f", {args.background_load} CPU-bound background processes"
                 if args.background_load else "")
        print(f"load average {load_before[0]:.2f} before, {la[0]:.2f} after "
              f"({machine()['cpus']} CPUs{extra})")
    return 0
