"""Targeted nemesis shapes, run against a recording fake backend (no processes, no sockets)."""

from __future__ import annotations

import asyncio
import random
import time

from nemesis import catalogue
from nemesis.executor import Nemesis
from nemesis.schedule import PlannedFault, plan

NODES = ["n1", "n2", "n3"]


class FakeBackend:
    """Records every network state it is given, with the time it was given."""

    def __init__(self) -> None:
        self.states: list[tuple[float, set, dict]] = []
        self.paused: list[str] = []

    def set_network(self, cut: set, delays: dict) -> None:
        self.states.append((time.monotonic(), set(cut), dict(delays)))

    def kill(self, node: str) -> None: ...
    def restart(self, node: str) -> None: ...

    def pause(self, node: str) -> None:
        self.paused.append(node)

    def resume(self, node: str) -> None: ...


def test_deposed_bridge_is_named_only_and_needs_delays() -> None:
    assert "deposed-bridge" not in catalogue.parse_spec("partition")["partition"]
    assert catalogue.parse_spec("partition:deposed-bridge") == {"partition": ("deposed-bridge",)}
    assert catalogue.capabilities(catalogue.parse_spec("partition:deposed-bridge")) == {
        "partition", "delay", "one-way"}
    # Plans of a kind named without shapes are what they were before the shape existed.
    faults = plan(catalogue.parse_spec("partition"), 60, 2.0, random.Random(3))
    assert "deposed-bridge" not in {f.shape for f in faults}


def run_shape(new_leader_after: float | None, election_s: float = 0.05):
    backend = FakeBackend()
    records: list[tuple] = []
    started = time.monotonic()

    async def leader() -> str | None:
        if new_leader_after is not None and time.monotonic() - started > new_leader_after:
            return "n2"   # the followers elected n2 (a higher ballot than n1's)
        return "n1"

    async def main():
        nem = Nemesis(backend, NODES, lambda *a: records.append(a), leader,
                      election_s=election_s)
        fault = PlannedFault(0.0, 1.0, "partition", "deposed-bridge", 7)
        kind, targets = await nem.start(fault)
        during = set(nem.cut)
        await nem.stop(kind, targets)
        return kind, targets, during, nem

    kind, targets, during, nem = asyncio.run(main())
    return backend, records, kind, targets, during, nem, started


def test_deposed_bridge_congests_stalls_then_cuts_old_from_new_leader() -> None:
    T = 0.05
    backend, records, kind, targets, during, nem, started = run_shape(4 * T, T)
    assert kind == "partition" and sorted(targets) == NODES
    inbound = {("n2", "n1"), ("n3", "n1")}
    outbound = {("n1", "n2"), ("n1", "n3")}
    t0 = None
    ramp = []
    for at, _cut, delays in backend.states:
        if delays and set(delays) == inbound:
            ramp.append(max(delays.values()))
        elif delays and set(delays) == inbound | outbound:
            t0 = t0 or at
            # every held message is due at the same moments: drain (inbound), release (out)
            drain = {round(at + delays[e], 2) for e in inbound}
            assert len(drain) == 1
    # 1. the followers' queues to the leader fill up, never faster than real time
    assert ramp and ramp == sorted(ramp) and ramp[-1] <= 3 * T + 0.02
    assert ramp[-1] >= 3 * T - 0.04
    # 2. then the leader's own links stall too
    assert t0 is not None
    # 3. the new leader, once seen, is cut from the old one (both ways), nothing else
    assert during == {("n1", "n2"), ("n2", "n1")}
    final_cut, final_delays = backend.states[-2][1], backend.states[-2][2]
    assert final_cut == during and final_delays == {}
    # the stop heals everything
    assert backend.states[-1][1:] == (set(), {})
    assert nem.cut == set() and nem.shape_delays == {}
    info = [r for r in records if r[0] == "info" and r[1] == "start-partition"]
    assert info[0][2]["new_leader"] == "n2" and info[0][2]["leader"] == "n1"


def test_deposed_bridge_gives_up_without_a_new_leader() -> None:
    backend, records, kind, targets, during, nem, _ = run_shape(None)
    assert during == set()
    assert all(not cut for _, cut, _ in backend.states)
    assert backend.states[-1][1:] == (set(), {})
    info = [r for r in records if r[0] == "info" and r[1] == "start-partition"]
    assert info[0][2]["new_leader"] is None
