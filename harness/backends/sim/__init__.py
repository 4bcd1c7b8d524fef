"""The simulation backend: the whole cluster in the controller's process, on simulated time.

`harness run --backend sim` runs the real harness (workload, nemesis plan and executor,
clients, history, checkers, report) on an asyncio loop whose clock jumps to the next event
(loop.py); every member is the bundled node's sans-IO core under a driver that keeps
node/server.py's rules (cluster.py), with a disk that keeps fsync's meaning (disk.py). One seed
drives everything, so a run replays to the byte (`harness rerun`).

What a system must offer to run here (docs/internals.md, "Simulation"): a sans-IO core with
`step(message)`, `tick()`, `propose(command, token)`, `take_early()`, `has_ready()`,
`ready()`/`advance(ready)` and `status()`/`log()`, and a `restore(snapshot, records)` that
rebuilds it from what its disk kept. The bundled node is the first; other systems are refused.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from harness.backends.base import Backend, BackendError, Edge
from harness.backends.sim.cluster import ConnectionLost, SimCluster
from harness.systems import NotSent, Outcome, System
from harness.systems.paxos import PaxosSystem, outcome_of, wire_request
from node import cli as node_cli

FAULTS = {"partition", "one-way", "delay", "loss", "pause", "kill", "disk", "lose-unsynced"}


def node_options(node: str, peers: list[str], args: list[str]) -> node_cli.Options:
    """A member's options, parsed as `python -m node` parses its command line."""
    argv = ["--id", node, "--listen", "sim:1", "--data-dir", "sim", "--secret-file", "sim",
            *[a for p in peers for a in ("--peer", f"{p}=sim:1")], *args]

    def refuse(message: str) -> None:
        raise BackendError(f"backend sim: the node's arguments are refused: {message}")

    parser = node_cli.build_parser()
    parser.error = refuse  # type: ignore[method-assign]
    try:
        return node_cli._validate(parser.parse_args(argv))
    except ValueError as exc:
        refuse(str(exc))
        raise


def _expire(future: asyncio.Future) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


class SimClient:
    """One worker's connection to one simulated member."""

    def __init__(self, cluster: SimCluster, node: str) -> None:
        self.cluster, self.node = cluster, node

    async def invoke(self, op: dict[str, Any], client: str, seq: int,
                     timeout: float) -> Outcome:
        member = self.cluster.nodes[self.node]
        if not member.running:
            raise NotSent(f"cannot connect to {self.node}: connection refused")
        future = asyncio.get_running_loop().create_future()
        request = {**wire_request(op), "client": client, "seq": seq,
                   "id": next(self.cluster.ids)}
        self.cluster.to_node(self.node, request, future)
        # One timer that fails the future, rather than wait_for's waiter and callbacks.
        timer = asyncio.get_running_loop().call_later(timeout, _expire, future)
        try:
            reply = await future
        finally:
            timer.cancel()
        return outcome_of(op, reply)

    def close(self) -> None:
        return None


class SimPaxosSystem(PaxosSystem):
    """The bundled node as the simulation reaches it: no sockets, the same answers."""

    def __init__(self, cluster: SimCluster, addresses: dict[tuple[str, int], str]) -> None:
        super().__init__()
        self.cluster = cluster
        self.by_address = addresses

    def client(self, address: tuple[str, int]) -> SimClient:
        return SimClient(self.cluster, self.by_address[address])

    async def status(self, address: tuple[str, int], timeout: float) -> dict[str, Any] | None:
        return self.cluster.nodes[self.by_address[address]].status()

    async def fetch_log(self, address: tuple[str, int], start: int = 0,
                        timeout: float = 5.0) -> dict[str, Any] | None:
        member = self.cluster.nodes[self.by_address[address]]
        if member.status() is None or member.core is None:
            return None
        return member.core.log(start, 1 << 30)


class SimBackend(Backend):
    name = "sim"
    blocking = False  # every call is plain computation: no thread, no wall clock

    def __init__(self, node_ids: list[str], run_dir: Path, node_args: list[str], run_id: str,
                 per_node_args: dict[str, list[str]] | None = None,
                 system: System | None = None, seed: int = 0) -> None:
        super().__init__(node_ids, run_dir, node_args, run_id, per_node_args, system)
        if self.system.name != "paxos":
            raise BackendError(f"backend sim runs the bundled node's sans-IO core; system "
                               f"{self.system.name} has none it can drive")
        self.seed = seed
        self.cluster: SimCluster | None = None
        self.options = {n: node_options(n, [p for p in node_ids if p != n], self.args_for(n))
                        for n in node_ids}

    def capabilities(self) -> set[str]:
        return set(FAULTS)

    def setup(self) -> None:
        self.cluster = SimCluster(asyncio.get_running_loop(), self.options, self.seed)
        for member in self.cluster.nodes.values():
            member.start()

    def system_view(self) -> System:
        assert self.cluster is not None
        return SimPaxosSystem(self.cluster, {self.client_address(n): n for n in self.node_ids})

    def _node(self, node: str):  # noqa: ANN202 - a SimNode
        if self.cluster is None:
            raise BackendError("backend sim: the cluster is not set up")
        return self.cluster.nodes[node]

    def client_address(self, node: str) -> tuple[str, int]:
        return ("sim", self.node_ids.index(node) + 1)

    def kill(self, node: str) -> None:
        member = self._node(node)
        if member.running:
            member.stop()

    def restart(self, node: str) -> None:
        member = self._node(node)
        if not member.running:
            member.start()

    def pause(self, node: str) -> None:
        self._node(node).pause()

    def resume(self, node: str) -> None:
        self._node(node).resume()

    def is_running(self, node: str) -> bool:
        return self._node(node).running

    def set_network(self, cut: set[Edge], delays: dict[Edge, float]) -> None:
        assert self.cluster is not None
        self.cluster.cut = set(cut)
        self.cluster.delays = dict(delays)

    def set_loss(self, losses: dict[Edge, float]) -> None:
        assert self.cluster is not None
        self.cluster.losses = dict(losses)

    def lose_unsynced(self, node: str) -> dict[str, int]:
        member = self._node(node)
        if member.running:
            member.stop()
        assert self.cluster is not None
        lost = member.disk.power_cut(self.cluster.rng)
        member.log(f"power cut: unsynced writes dropped ({lost['bytes_lost']} bytes)")
        return lost

    def set_disk_delay(self, node: str, seconds: float) -> None:
        self._node(node).disk_delay_s = seconds

    def log_tail(self, node: str, lines: int = 20) -> str:
        if self.cluster is None:
            return ""
        return "\n".join(self._node(node).log_lines[-lines:])

    def collect(self) -> None:
        if self.cluster is None:
            return
        for node, member in self.cluster.nodes.items():
            node_dir = self.run_dir / "nodes" / node
            node_dir.mkdir(parents=True, exist_ok=True)
            (node_dir / "node.log").write_text("".join(f"{line}\n" for line in member.log_lines))

    def teardown(self) -> None:
        if self.cluster is None:
            return
        for member in self.cluster.nodes.values():
            if member.running:
                member.running = False
                member.core = None


__all__ = ["ConnectionLost", "SimBackend", "SimPaxosSystem"]
