"""Carries out planned faults on a backend, through the backend's fault interface only.

The executor keeps the wanted fault state (cut edges, delays, paused and killed nodes) so that a
heal undoes exactly what was done, whatever happened in between.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from nemesis import catalogue
from nemesis.schedule import PlannedFault

Edge = tuple[str, str]


def _links(n: int) -> str:
    return f"{n} link" if n == 1 else f"{n} links"


class FaultBackend(Protocol):
    def kill(self, node: str) -> None: ...
    def restart(self, node: str) -> None: ...
    def pause(self, node: str) -> None: ...
    def resume(self, node: str) -> None: ...
    def set_network(self, cut: set[Edge], delays: dict[Edge, float]) -> None: ...
    def set_loss(self, losses: dict[Edge, float]) -> None: ...
    def set_disk_delay(self, node: str, seconds: float) -> None: ...
    def lose_unsynced(self, node: str) -> dict[str, int]: ...


# record(f, value, nodes) is called twice per action: before (invoke) and after (info/fail).
Recorder = Callable[[str, str, Any, list[str]], None]
LeaderLookup = Callable[[], Awaitable[str | None]]


class Nemesis:
    def __init__(self, backend: FaultBackend, nodes: list[str], record: Recorder,
                 leader: LeaderLookup, delay_ms: float = 50.0, lag_s: float = 0.25,
                 stall_s: float = 0.9, election_s: float | None = None,
                 disk_delay_ms: float = 200.0, loss: float = 0.2) -> None:
        self.backend = backend
        self.nodes = list(nodes)
        self.record = record
        self.leader = leader
        self.delay_s = delay_ms / 1000.0
        self.lag_s = lag_s
        self.stall_s = stall_s
        # The nodes' (minimum) election timeout; the controller sets stall_s to three of them.
        self.election_s = election_s if election_s is not None else stall_s / 3
        self.cut: set[Edge] = set()
        self.delays: dict[Edge, float] = {}
        self.stall_delays: dict[Edge, float] = {}
        self.shape_delays: dict[Edge, float] = {}   # time-varying delays of a running shape
        self.disk_delay_s = disk_delay_ms / 1000.0
        self.loss = loss
        self.losses: dict[Edge, float] = {}  # the probability each link drops a message
        self.paused: set[str] = set()
        self.killed: set[str] = set()
        self.slow_disks: set[str] = set()

    def active(self) -> list[str]:
        parts = []
        if self.cut:
            parts.append(f"partition({_links(len(self.cut))})")
        if self.delays or self.stall_delays or self.shape_delays:
            parts.append("delay")
        if self.losses:
            parts.append(f"loss({_links(len(self.losses))})")
        if self.paused:
            parts.append("paused " + ",".join(sorted(self.paused)))
        if self.killed:
            parts.append("killed " + ",".join(sorted(self.killed)))
        if self.slow_disks:
            parts.append("slow disk " + ",".join(sorted(self.slow_disks)))
        return parts

    async def _call(self, fn: Callable, *args: Any) -> Any:
        if getattr(self.backend, "blocking", True):
            return await asyncio.to_thread(fn, *args)
        return fn(*args)  # a simulated backend: on this loop, no thread

    async def _apply_network(self) -> None:
        await self._call(self.backend.set_network, set(self.cut), self._all_delays())

    def _all_delays(self) -> dict[Edge, float]:
        return {**self.delays, **self.stall_delays, **self.shape_delays}

    async def _targets(self, shape: str, rng: random.Random, kind: str = "") -> list[str]:
        # A pause goes to nodes that are running; a kill may also stop a paused one.
        live = [n for n in self.nodes if n not in self.killed
                and (kind != "pause" or n not in self.paused)]
        if shape == "leader":
            leader = await self.leader()
            return [leader] if leader else [rng.choice(live)] if live else []
        if shape == "one":
            return [rng.choice(live)] if live else []
        if shape == "minority":
            return rng.sample(live, min(len(live), catalogue.minority_size(len(self.nodes))))
        if shape == "all":
            return list(live)
        if shape == "lose-unsynced":
            size = rng.randint(1, max(1, catalogue.minority_size(len(self.nodes))))
            return rng.sample(live, min(len(live), size))
        if shape == "power-cut":
            return list(live)
        if shape == "followers":
            leader = await self.leader()
            return [n for n in live if n != leader]
        raise ValueError(f"no targets for shape {shape!r}")

    async def _action(self, f: str, value: Any, nodes: list[str],
                      fn: Callable[[], Awaitable]) -> None:
        self.record("invoke", f, value, nodes)
        try:
            await fn()
        except Exception as exc:
            self.record("info", f, {"error": str(exc), **(value or {})}, nodes)
            raise
        self.record("info", f, value, nodes)

    async def start(self, fault: PlannedFault) -> tuple[str, list[str]] | None:
        """Start one fault; returns (kind, targets) for the matching stop, or None (nothing
        done, nothing recorded) when every node it could hit is down: the caller tries it
        again once something comes back, rather than fault nobody."""
        rng = random.Random(fault.seed)
        if fault.kind == "partition":
            if fault.shape == "lagging-takeover":
                return await self._lagging_takeover(fault, rng)
            if fault.shape == "deposed-bridge":
                return await self._deposed_bridge(fault, rng)
            cut = await self._grudge(fault.shape, rng)
            nodes = sorted({n for edge in cut for n in edge})

            async def do() -> None:
                self.cut = set(cut)
                await self._apply_network()

            value = {"shape": fault.shape, "cut": sorted([list(e) for e in cut])}
            await self._action("start-partition", value, nodes, do)
            return "partition", nodes
        if fault.kind == "delay" and fault.shape in catalogue.LOSS_SHAPES:
            if fault.shape == "lossy-node":
                edges = set(catalogue.isolate(rng.choice(self.nodes), self.nodes))
            else:
                edges = {(a, b) for a in self.nodes for b in self.nodes if a != b}
            nodes = sorted({n for edge in edges for n in edge})

            async def do() -> None:
                self.losses = dict.fromkeys(sorted(edges), self.loss)
                await self._call(self.backend.set_loss, dict(self.losses))

            await self._action("start-loss", {"shape": fault.shape, "loss": self.loss},
                               nodes, do)
            return "delay", nodes
        if fault.kind == "delay":
            if fault.shape in ("one-node", "leader"):
                victim = (await self.leader() if fault.shape == "leader" else None) \
                    or rng.choice(self.nodes)
                edges = set(catalogue.isolate(victim, self.nodes))
            else:
                edges = {(a, b) for a in self.nodes for b in self.nodes if a != b}
            nodes = sorted({n for edge in edges for n in edge})

            async def do() -> None:
                self.delays = {e: self.delay_s * rng.uniform(0.5, 1.5) for e in sorted(edges)}
                await self._apply_network()

            await self._action("start-delay", {"shape": fault.shape, "ms": self.delay_s * 1000},
                               nodes, do)
            return "delay", nodes
        if fault.kind == "pause" and fault.shape == "stall-leader":
            return await self._stall_leader(fault, rng)
        targets = await self._targets(fault.shape, rng, fault.kind)
        if not targets:
            return None
        if fault.kind == "pause":
            async def do() -> None:
                for node in targets:
                    await self._call(self.backend.pause, node)
                    self.paused.add(node)

            await self._action("pause", {"shape": fault.shape}, targets, do)
            return "pause", targets
        if fault.kind == "disk" and fault.shape in catalogue.CRASH_SHAPES:
            lost: dict[str, dict[str, int]] = {}

            async def do() -> None:
                for node in targets:
                    lost[node] = await self._call(self.backend.lose_unsynced, node)
                    self.killed.add(node)
                    self.paused.discard(node)

            await self._action("lose-unsynced", {"shape": fault.shape, "lost": lost}, targets,
                               do)
            return "kill", targets
        if fault.kind == "disk":
            async def do() -> None:
                for node in targets:
                    await self._call(self.backend.set_disk_delay, node, self.disk_delay_s)
                    self.slow_disks.add(node)

            await self._action("start-slow-disk", {"shape": fault.shape,
                                                   "ms": self.disk_delay_s * 1000}, targets, do)
            return "disk", targets
        if fault.kind == "kill":
            async def do() -> None:
                for node in targets:
                    await self._call(self.backend.kill, node)
                    self.killed.add(node)

            await self._action("kill", {"shape": fault.shape}, targets, do)
            return "kill", targets
        raise ValueError(f"unknown fault kind {fault.kind!r}")

    async def _stall_leader(self, fault: PlannedFault,
                            rng: random.Random) -> tuple[str, list[str]]:
        """A stalled leader (a long GC pause, a stopped VM) whose last words are still in the
        network: pause it and hold its links back for most of the pause, so its old-ballot
        messages arrive after a new leader took over, and the answers wait for it to wake."""
        leader = (await self._targets("leader", rng))[:1]
        if not leader:
            return "stall", []
        node = leader[0]
        hold_s = min(self.stall_s, 0.4 * (fault.end - fault.start))
        edges = catalogue.isolate(node, self.nodes)

        async def do() -> None:
            self.stall_delays = {e: hold_s for e in sorted(edges)}
            await self._apply_network()
            # It keeps working briefly (less than it takes to notice the silence) before it
            # stops, so a good many of its messages are held.
            await asyncio.sleep(self.lag_s / 2)
            await self._call(self.backend.pause, node)
            self.paused.add(node)

        await self._action("pause", {"shape": fault.shape, "hold_s": hold_s}, [node], do)
        return "stall", [node]

    async def _lagging_takeover(self, fault: PlannedFault,
                                rng: random.Random) -> tuple[str, list[str]]:
        """Cut the leader's messages to one follower, which falls behind (and whose election
        timer starts running first), then isolate the leader: the lagging follower is likely
        the next leader, and must recover what it missed from the others' promises."""
        leader = await self.leader() or rng.choice(self.nodes)
        laggard = rng.choice([n for n in self.nodes if n != leader] or [leader])
        lag_s = min(self.lag_s, max(0.05, (fault.end - fault.start) / 3))
        first = {(leader, laggard)}
        cut = catalogue.isolate(leader, self.nodes)

        async def do() -> None:
            self.cut = set(first)
            await self._apply_network()
            await asyncio.sleep(lag_s)
            self.cut = set(cut)
            await self._apply_network()

        value = {"shape": fault.shape, "lagging": laggard, "lag_s": lag_s,
                 "cut": sorted([list(e) for e in cut])}
        nodes = sorted({n for edge in cut for n in edge})
        await self._action("start-partition", value, nodes, do)
        return "partition", nodes

    async def _deposed_bridge(self, fault: PlannedFault,
                              rng: random.Random) -> tuple[str, list[str]]:
        """A leader deposed behind congested links, then cut from its successor with the other
        nodes bridging the two (timings in election timeouts T; W = 3 T):

        1. congestion: the queueing delay of every follower's link to the leader grows from 0
           to W over W seconds (a filling buffer): the leader still hears every acknowledgement,
           ever later, and keeps leading;
        2. stall: the leader's links to its followers stall for W + T/3 (TCP head-of-line
           blocking), so the followers hear nothing, elect a new leader among themselves and
           promise it a higher ballot; the followers' links to the old leader stay blocked
           behind their full buffer until it drains, W after the stall began;
        3. bridge: as soon as the new leader is seen (`status`), the old and the new leader are
           cut from each other; the others reach both. Then the stalled messages land: the old
           leader's Accepts (its last clients' commands, for slots the new leader fills
           afresh) reach acceptors that promised the higher ballot, and their answers reach an
           old leader that heard acknowledgements within the election timeout, so it still
           leads. A correct acceptor refuses them and the old leader learns of the new ballot.

        The bridge lasts until the fault ends. If no new leader shows up before the drained
        buffers would tell the old one about it, the shape gives up (no cut)."""
        leader = await self.leader()
        if not leader:
            return "partition", []
        others = [n for n in self.nodes if n != leader and n not in self.killed]
        T = self.election_s
        W, stall = 3 * T, 3 * T + T / 3
        step = min(0.03, T / 10)
        inbound = [(n, leader) for n in others]
        outbound = [(leader, n) for n in others]
        loop = asyncio.get_running_loop()
        value: dict[str, Any] = {"shape": fault.shape, "leader": leader,
                                 "congestion_s": round(W, 3), "stall_s": round(stall, 3)}

        async def set_delays(delays: dict[Edge, float]) -> None:
            self.shape_delays = delays
            await self._apply_network()

        async def do() -> None:
            t = loop.time()
            start = t
            while t < start + W:           # 1. congestion builds up
                await set_delays({e: t - start for e in inbound})
                await asyncio.sleep(step)
                t = loop.time()
            t0 = t                         # 2. the leader's links stall too
            drain, release = t0 + W, t0 + stall
            new_leader: str | None = None
            while t < release:
                await set_delays({**{e: max(0.0, drain - t) for e in inbound},
                                  **{e: max(0.0, release - t) for e in outbound}})
                if new_leader is None and loop.time() < drain - T / 6:
                    found = await self.leader()
                    if found is not None and found != leader:
                        new_leader = found      # 3. old and new leader cut apart
                        value["new_leader"] = new_leader
                        self.cut = catalogue.split([leader], [new_leader])
                        await self._apply_network()
                    await asyncio.sleep(0.005)
                else:
                    await asyncio.sleep(step)
                t = loop.time()
            if new_leader is None:
                value["new_leader"] = None
            # Every stalled message is due by now; the queues keep their order.
            await set_delays({})

        await self._action("start-partition", value, [leader, *others], do)
        return "partition", [leader, *others]

    async def _grudge(self, shape: str, rng: random.Random) -> set[Edge]:
        nodes = self.nodes
        if shape == "isolate-one":
            return catalogue.isolate(rng.choice(nodes), nodes)
        if shape == "isolate-leader":
            leader = await self.leader() or rng.choice(nodes)
            return catalogue.isolate(leader, nodes)
        if shape == "halves":
            return catalogue.halves(nodes, rng)
        if shape == "majorities-ring":
            return catalogue.majorities_ring(nodes, rng)
        if shape == "bridge":
            return catalogue.bridge(nodes, rng)
        if shape == "one-way":
            source = await self.leader() if rng.random() < 0.5 else None
            return catalogue.one_way(source or rng.choice(nodes), nodes)
        raise ValueError(f"unknown partition shape {shape!r}")

    async def stop(self, kind: str, targets: list[str]) -> None:
        if kind == "partition":
            async def do() -> None:
                self.cut = set()
                self.shape_delays = {}
                await self._apply_network()

            await self._action("stop-partition", None, targets, do)
        elif kind == "delay" and self.losses:
            async def do() -> None:
                self.losses = {}
                await self._call(self.backend.set_loss, {})

            await self._action("stop-loss", None, targets, do)
        elif kind == "delay":
            async def do() -> None:
                self.delays = {}
                await self._apply_network()

            await self._action("stop-delay", None, targets, do)
        elif kind == "stall":
            async def do() -> None:
                for node in targets:
                    await self._call(self.backend.resume, node)
                    self.paused.discard(node)
                self.stall_delays = {}
                await self._apply_network()

            await self._action("resume", None, targets, do)
        elif kind == "pause":
            async def do() -> None:
                for node in targets:
                    await self._call(self.backend.resume, node)
                    self.paused.discard(node)

            await self._action("resume", None, targets, do)
        elif kind == "kill":
            async def do() -> None:
                for node in targets:
                    await self._call(self.backend.restart, node)
                    self.killed.discard(node)

            await self._action("restart", None, targets, do)
        elif kind == "disk":
            async def do() -> None:
                for node in targets:
                    await self._call(self.backend.set_disk_delay, node, 0.0)
                    self.slow_disks.discard(node)

            await self._action("stop-slow-disk", None, targets, do)

    async def heal(self) -> None:
        """Undo every fault still in force: the final heal."""
        nodes = sorted(set(self.paused) | set(self.killed) | set(self.slow_disks)
                       | {n for e in self.cut for n in e}
                       | {n for e in self._all_delays() for n in e}
                       | {n for e in self.losses for n in e})

        async def do() -> None:
            for node in sorted(self.paused):
                await self._call(self.backend.resume, node)
            self.paused.clear()
            for node in sorted(self.killed):
                await self._call(self.backend.restart, node)
            self.killed.clear()
            for node in sorted(self.slow_disks):
                await self._call(self.backend.set_disk_delay, node, 0.0)
            self.slow_disks.clear()
            self.cut, self.delays, self.stall_delays, self.shape_delays = set(), {}, {}, {}
            await self._apply_network()
            if self.losses:
                self.losses = {}
                await self._call(self.backend.set_loss, {})

        await self._action("heal", None, nodes, do)
