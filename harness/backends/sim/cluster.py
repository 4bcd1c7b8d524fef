"""The simulated cluster: the bundled node's real sans-IO core and KV state machine on every
member, driven by the rules of node/server.py, over a simulated network and disk.

The driver (SimNode.pump) does what NodeServer._drive does: early messages and replies leave at
once; one Ready at a time is made durable, and only once its fsync completes do its other
messages and replies leave and the core hear `advance`. A member's lazily written records sit
in the process until the next durable write or the periodic flush, so a crash loses them as it
would lose the real node's; with the bug `reply-before-fsync` nothing is synced before the
messages leave, as in the real node.

The network delivers each message after a delay drawn per message (so messages on one link
overtake each other), duplicates a few, and applies the harness's faults: cut directed edges
(dropped when sent and when due), extra delays per edge, and message loss. A paused member
takes nothing in and fires no timer until it resumes, then catches up on its ticks, as the
real one does after SIGCONT.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import random
from collections.abc import Callable
from typing import Any

from harness.backends.sim.disk import SimDisk
from harness.backends.sim.loop import VirtualLoop
from node import protocol
from node.cli import Options
from node.core import Ready, Replica, fmt_ballot
from node.server import replica_config, tick_seconds

Edge = tuple[str, str]
_encode = json.JSONEncoder(separators=(",", ":")).encode

CLIENT_LATENCY_S = (50e-6, 150e-6)   # one way, client <-> member
PEER_LATENCY_S = (100e-6, 400e-6)    # one way, member -> member
FSYNC_S = (80e-6, 300e-6)            # an fdatasync of a small append
DUPLICATE = 0.002                    # of peer messages, delivered twice
LAZY_FLUSH_S = 0.2                   # node/server.py
BUGGY_FLUSH_S = 1.0
LOG_LINES = 20_000                   # a member's log kept for the run directory
BOOT_S = (0.005, 0.06)               # from exec to the first tick: processes never start as one


class ConnectionLost(ConnectionResetError):
    pass


class Pending:
    """A client request waiting for its reply: the core's token."""

    __slots__ = ("node", "future", "rid", "deadline", "done")

    def __init__(self, node: SimNode, future: asyncio.Future, rid: Any, deadline: float) -> None:
        self.node, self.future, self.rid, self.deadline = node, future, rid, deadline
        self.done = False

    def reply(self, body: dict[str, Any]) -> None:
        if self.done:
            return
        self.done = True
        self.node.pending.discard(self)
        self.node.cluster.to_client(self.future, {"id": self.rid, **body})


class SimNode:
    def __init__(self, cluster: SimCluster, node: str, opts: Options) -> None:
        self.cluster, self.id, self.opts = cluster, node, opts
        # The real driver's tick and the core's configuration, from the same options.
        self.tick_s = tick_seconds(opts)
        self.config = replica_config(opts)
        self.buggy = "reply-before-fsync" in opts.bugs
        self.disk = SimDisk()
        self.core: Replica | None = None
        self.running = False
        self.paused = False
        self.deferred: list[Callable[[], None]] = []  # what reached a paused member
        self.paused_at = 0.0
        self.writing: Ready | None = None
        self.kicked = False
        self.pending: set[Pending] = set()
        self.timeouts: collections.deque[Pending] = collections.deque()  # by deadline
        # Requests that reached it while it was paused: their connections die with it too.
        self.inbox: list[asyncio.Future] = []
        self.incarnation = 0   # timers of an earlier process never fire in a later one
        self.disk_delay_s = 0.0
        self.log_lines: list[str] = []

    # -- life ------------------------------------------------------------------------------
    def log(self, text: str) -> None:
        if len(self.log_lines) < LOG_LINES:
            core = self.core
            ballot = fmt_ballot(core.promised) if core else "-"
            role = core.role if core else "starting"
            self.log_lines.append(f"{self.cluster.loop.time():.6f} {self.id} ballot={ballot} "
                                  f"role={role} {text}")

    def start(self) -> None:
        snapshot, records, torn = self.disk.recover()
        self.core = Replica.restore(self.config, random.Random(self.cluster.rng.getrandbits(64)),
                                    snapshot, records)
        self.running, self.paused, self.writing, self.kicked = True, False, None, False
        self.incarnation += 1
        if torn:
            self.log(f"recovery: cut a torn tail of {torn} bytes off the log")
        self.log(f"recovery: read {len(records)} log records"
                 + (f" and a snapshot through slot {snapshot[0]}" if snapshot else ""))
        self.every(self.tick_s, self.tick, first=self.cluster.rng.uniform(*BOOT_S))
        self.every(BUGGY_FLUSH_S if self.buggy else LAZY_FLUSH_S, self.flush)
        self.kick()

    def stop(self) -> None:
        """The process is gone (SIGKILL): requests in flight lose their connection."""
        self.running = False
        self.paused = False
        self.deferred.clear()
        self.core = None
        self.writing = None
        lost = self.disk.crash()
        for p in list(self.pending):
            p.done = True
            if not p.future.done():
                p.future.set_exception(ConnectionLost("connection lost: the member died"))
        for future in self.inbox:
            if not future.done():
                future.set_exception(ConnectionLost("connection lost: the member died"))
        self.inbox.clear()
        self.pending.clear()
        self.timeouts.clear()
        self.log(f"killed ({lost} bytes of unwritten log records lost with the process)")

    def pause(self) -> None:
        if self.running and not self.paused:
            self.paused = True
            self.paused_at = self.cluster.loop.time()

    def resume(self) -> None:
        if not (self.running and self.paused):
            return
        self.paused = False
        self.inbox.clear()
        deferred, self.deferred = self.deferred, []
        for fn in deferred:
            if self.running and not self.paused:
                fn()

    def at(self, delay: float, fn: Callable[[], None]) -> None:
        """Run fn after `delay` in this process (deferred while it is paused; never in a later
        incarnation)."""
        incarnation = self.incarnation

        def fire() -> None:
            if not self.running or self.incarnation != incarnation:
                return
            if self.paused:
                self.deferred.append(fn)
            else:
                fn()

        self.cluster.loop.later(delay, fire)

    def every(self, period: float, fn: Callable[[], None], first: float | None = None) -> None:
        incarnation = self.incarnation
        loop = self.cluster.loop

        def fire() -> None:
            if not self.running or self.incarnation != incarnation:
                return
            if self.paused:
                self.deferred.append(fire)  # the next one is planned on resume
                return
            fn()
            loop.later(period, fire)

        loop.later(period if first is None else first, fire)

    # -- input -----------------------------------------------------------------------------
    def tick(self) -> None:
        assert self.core is not None
        now = self.cluster.loop.time()
        n = 1
        if self.paused_at:
            # After a pause the core sees the time that passed (node/server.py's catch-up).
            missed = int((now - self.paused_at) / self.tick_s)
            n = min(2 * self.config.election_ticks + 1, max(1, missed))
            self.paused_at = 0.0
        for _ in range(n):
            self.core.tick()
        self.expire(now)
        if not self.kicked:  # nothing else can join this batch: pump now, not as an event
            self._pump(self.incarnation)

    def expire(self, now: float) -> None:
        while self.timeouts and self.timeouts[0].deadline <= now:
            p = self.timeouts.popleft()
            if not p.done:
                assert self.core is not None
                self.core.cancel(p)
                p.reply(protocol.error(protocol.TIMEOUT, "not known to be chosen in time"))

    def receive(self, raw: str) -> None:
        assert self.core is not None
        self.core.step(json.loads(raw))
        self.kick()

    def request(self, req: dict[str, Any], future: asyncio.Future) -> None:
        assert self.core is not None
        rid = req.get("id")
        try:
            cmd = protocol.parse_request(req)
        except protocol.MalformedRequest as exc:
            self.cluster.to_client(future, {"id": rid, **protocol.error(protocol.MALFORMED,
                                                                         str(exc))})
            return
        deadline = self.cluster.loop.time() + self.opts.request_timeout_ms / 1000
        pending = Pending(self, future, rid, deadline)
        reply = self.core.propose(cmd, pending)
        if reply is not None:
            pending.reply(reply)
            return
        self.pending.add(pending)
        self.timeouts.append(pending)
        self.kick()

    # -- the driver (node/server.py's _drive) ----------------------------------------------
    def kick(self) -> None:
        if not self.kicked:
            self.kicked = True
            self.cluster.loop.later(0.0, self._pump, self.incarnation)

    def _pump(self, incarnation: int) -> None:
        self.kicked = False
        if not self.running or self.incarnation != incarnation:
            return
        if self.paused:
            self.deferred.append(self.kick)
            return
        core = self.core
        assert core is not None
        while True:
            msgs, replies = core.take_early()
            self.send_out(msgs, replies)
            if self.writing is not None or not core.has_ready():
                return
            rd = core.ready()
            for event in rd.events:
                self.log(event)
            self.send_out(rd.early_messages, rd.early_replies)
            if rd.rewrite or rd.snapshot is not None:
                snap = (rd.snapshot.index, rd.snapshot.data) if rd.snapshot else None
                self.disk.rewrite(rd.records, snap)
                self.durable_after(rd)
                return
            if rd.records:
                self.disk.hold(rd.records)
                if rd.sync and not self.buggy:
                    self.durable_after(rd)
                    return
                if len(self.disk.held) > 512:
                    self.disk.write()
            self.finish(rd)

    def durable_after(self, rd: Ready) -> None:
        """rd's records are being fsynced; its messages wait for that."""
        self.writing = rd
        lo, hi = FSYNC_S
        self.at(self.cluster.rng.uniform(lo, hi) + self.disk_delay_s, self._synced)

    def _synced(self) -> None:
        rd, self.writing = self.writing, None
        assert rd is not None
        if not (rd.rewrite or rd.snapshot is not None):
            self.disk.sync()
        self.finish(rd)
        self.kick()

    def finish(self, rd: Ready) -> None:
        assert self.core is not None
        self.send_out(rd.messages, rd.replies)
        self.core.advance(rd)

    def flush(self) -> None:
        if self.writing is None:
            if self.buggy:
                self.disk.sync()
            else:
                self.disk.write()

    def send_out(self, msgs: list[dict[str, Any]],
                 replies: list[tuple[Any, dict[str, Any]]]) -> None:
        for m in msgs:
            self.cluster.to_peer(self.id, m["to"], _encode(m))
        for token, body in replies:
            token.reply(body)

    def status(self) -> dict[str, Any] | None:
        if not self.running or self.paused or self.core is None:
            return None
        st = self.core.status()
        st["counters"]["fsyncs"] = self.disk.fsyncs
        return st


class SimCluster:
    def __init__(self, loop: VirtualLoop, options: dict[str, Options],
                 seed: int) -> None:
        self.loop = loop
        self.rng = random.Random(seed)
        self.nodes = {n: SimNode(self, n, opts) for n, opts in options.items()}
        self.cut: set[Edge] = set()
        self.delays: dict[Edge, float] = {}
        self.losses: dict[Edge, float] = {}
        self.messages = 0
        self.ids = itertools.count(1)

    def to_peer(self, src: str, dst: str, raw: str) -> None:
        edge = (src, dst)
        target = self.nodes.get(dst)
        if target is None or edge in self.cut:
            return
        rng = self.rng
        if edge in self.losses and rng.random() < self.losses[edge]:
            return
        self.messages += 1
        copies = 2 if rng.random() < DUPLICATE else 1
        for _ in range(copies):
            delay = rng.uniform(*PEER_LATENCY_S) + self.delays.get(edge, 0.0)
            self.loop.later(delay, self._deliver, edge, target, target.incarnation, raw)

    def _deliver(self, edge: Edge, target: SimNode, incarnation: int, raw: str) -> None:
        if edge in self.cut or not target.running or target.incarnation != incarnation:
            return  # cut while in flight, or the process it was sent to is gone
        if target.paused:
            target.deferred.append(lambda: target.receive(raw))
            return
        target.receive(raw)

    def to_node(self, node: str, req: dict[str, Any], future: asyncio.Future) -> None:
        target = self.nodes[node]
        incarnation = target.incarnation

        def arrive() -> None:
            if future.done():
                return
            if not target.running or target.incarnation != incarnation:
                future.set_exception(ConnectionLost("connection lost: the member died"))
            elif target.paused:
                target.inbox.append(future)
                target.deferred.append(lambda: target.request(req, future)
                                       if not future.done() else None)
            else:
                target.request(req, future)

        self.loop.later(self.rng.uniform(*CLIENT_LATENCY_S), arrive)

    def to_client(self, future: asyncio.Future, reply: dict[str, Any]) -> None:
        def arrive() -> None:
            if not future.done():
                future.set_result(reply)

        self.loop.later(self.rng.uniform(*CLIENT_LATENCY_S), arrive)
