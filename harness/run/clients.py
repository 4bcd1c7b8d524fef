"""Client workers: invoke operations, retry inside one operation, record what really happened.

Jepsen's process rule: after an `info` the worker continues under a new process id, so the
indeterminate operation stays concurrent with everything after it. A retry inside one operation
keeps the client id and sequence number; the node's session table applies it at most once.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from harness.run.history import HistoryRecorder
from harness.systems import NotSent, System
from workloads.base import Workload

RETRY_PAUSE_S = 0.02


def _now() -> float:
    """The running loop's clock: monotonic time, or a simulation's."""
    return asyncio.get_running_loop().time()


class Worker:
    def __init__(self, index: int, concurrency: int, workload: Workload,
                 history: HistoryRecorder, addresses: dict[str, tuple[str, int]],
                 op_timeout: float, rng: random.Random, system: System) -> None:
        self.index = index
        self.system = system
        self.concurrency = concurrency
        self.process = index
        self.workload = workload
        self.history = history
        self.addresses = addresses
        self.nodes = sorted(addresses)
        # Each worker is bound to a home node, as Jepsen binds clients to nodes: every operation
        # starts there and follows leader hints, so some clients always talk to a deposed or
        # isolated leader while others find the new one.
        self.home = self.nodes[index % len(self.nodes)]
        self.node = self.home
        self.op_timeout = op_timeout
        self.rng = rng
        self.seq = 0
        self.connections: dict[str, Any] = {}

    def connection(self, node: str) -> Any:
        if node not in self.connections:
            self.connections[node] = self.system.client(self.addresses[node])
        return self.connections[node]

    def close(self) -> None:
        for conn in self.connections.values():
            conn.close()

    def _other_node(self) -> str:
        return self.rng.choice([n for n in self.nodes if n != self.node] or self.nodes)

    async def invoke(self, op: dict[str, Any]) -> dict:
        """Record the invocation now, run the operation, record its completion."""
        process, f, key = self.process, op["f"], op.get("key")
        self.node = self.home
        self.seq += 1
        client, seq = f"c{process}", self.seq
        self.history.append(process, "invoke", f, op["value"], key=key, node=self.node,
                            client=client, seq=seq)
        type_, value, error, observed = await self._attempts(op, client, seq)
        extra = {"compare_failed": True} if observed else {}
        completion = self.history.append(process, type_, f, value, key=key, node=self.node,
                                         error=error, client=client, seq=seq, **extra)
        if type_ == "info":
            self.process += self.concurrency
        return completion

    async def _attempts(self, op: dict[str, Any], client: str,
                        seq: int) -> tuple[str, Any, str | None, bool]:
        """(type, value, error, compare_failed) of the operation's completion."""
        deadline = _now() + self.op_timeout
        maybe_sent = False
        last_error = "timeout"
        while (remaining := deadline - _now()) > 0:
            try:
                outcome = await self.connection(self.node).invoke(op, client, seq, remaining)
            except NotSent:
                last_error = "connection-refused"
            except TimeoutError:
                maybe_sent, last_error = True, "timeout"
                break
            except (OSError, ValueError):
                maybe_sent, last_error = True, "connection-lost"
            else:
                if outcome.kind == "retry":
                    # May have happened; the system de-duplicates a retry elsewhere.
                    maybe_sent, last_error = True, outcome.error or "timeout"
                    self.node = self._other_node()
                    continue
                if outcome.kind != "unavailable":
                    type_ = outcome.kind
                    observed = type_ == "fail" and outcome.compare_failed
                    if type_ == "fail" and maybe_sent and op["f"] != "read" and not (
                            observed and self.system.deduplicates):
                        # An earlier attempt may still be chosen: not definite any more. (A
                        # compare that failed in a system that applies (client, seq) once is
                        # the outcome of that one application, whichever attempt it was.)
                        type_, observed = "info", False
                    return type_, outcome.value, outcome.error, observed
                last_error = outcome.error or "unavailable"
                if outcome.leader in self.addresses and outcome.leader != self.node:
                    self.node = outcome.leader
                    continue
            self.node = self._other_node()
            await asyncio.sleep(min(RETRY_PAUSE_S, max(0.0, deadline - _now())))
        if maybe_sent:
            return (*self.workload.lost(op, last_error), False)
        return "fail", op["value"] if op["f"] != "read" else None, last_error, False


async def run_worker(worker: Worker, stop: asyncio.Event, interval: float) -> None:
    """Invoke operations until `stop` is set, at most one every `interval` seconds (0: no limit)."""
    next_at = _now()
    try:
        while not stop.is_set():
            if interval > 0:
                # Jitter keeps workers from marching in lockstep.
                next_at += interval * worker.rng.uniform(0.5, 1.5)
                delay = next_at - _now()
                if delay > 0:
                    # A plain sleep (the loop is checked right after it): a wait_for on the
                    # stop event per operation costs a task and two timers, and the worker
                    # stops at most one interval late.
                    await asyncio.sleep(delay)
                    if stop.is_set():
                        break
                else:
                    next_at = _now()
            await worker.invoke(worker.workload.next_op())
    finally:
        worker.close()
