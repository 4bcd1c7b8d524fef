"""Nemesis plans and operation sequences follow from the seed alone."""

from __future__ import annotations

import random

import pytest

from nemesis import catalogue
from nemesis.schedule import plan
from workloads import make_workload

NODES = ["n1", "n2", "n3", "n4", "n5"]


def test_same_seed_same_plan_different_seed_different_plan() -> None:
    kinds = catalogue.parse_spec("partition,pause,kill,delay")
    a = plan(kinds, 60, 2.0, random.Random(7))
    b = plan(kinds, 60, 2.0, random.Random(7))
    c = plan(kinds, 60, 2.0, random.Random(8))
    assert a == b
    assert a != c
    assert len(a) >= 5
    for fault in a:
        assert 0 <= fault.start < fault.end <= 60
        assert fault.shape in catalogue.KINDS[fault.kind]
    # Faults of one kind never overlap; each kind keeps its own timeline.
    for kind in kinds:
        mine = [f for f in a if f.kind == kind]
        assert mine, kind
        assert all(x.end <= y.start for x, y in zip(mine, mine[1:], strict=False))
    overlapping = [(x, y) for x in a for y in a if x.kind < y.kind and x.start < y.end
                   and y.start < x.end]
    assert overlapping, "composed kinds should sometimes overlap"
    # Adding a kind leaves the other kinds' timelines unchanged.
    fewer = plan(catalogue.parse_spec("partition,pause"), 60, 2.0, random.Random(7))
    assert [f for f in a if f.kind in ("partition", "pause")] == fewer


def test_same_seed_same_operations() -> None:
    def ops(seed: int) -> list[dict]:
        w = make_workload("register", random.Random(seed), 4)
        return [w.next_op() for _ in range(500)]

    assert ops(3) == ops(3)
    assert ops(3) != ops(4)
    keys = {op["key"] for op in ops(3)}
    assert len(keys) > 2  # keys are retired and replaced


def test_partition_shapes() -> None:
    rng = random.Random(1)
    for n in (3, 5):
        nodes = NODES[:n]
        iso = catalogue.isolate("n1", nodes)
        assert len(iso) == 2 * (n - 1)
        halves = catalogue.halves(nodes, rng)
        # Every node is cut from exactly the other side; the sides are a minority and a majority.
        reach = {a: {b for b in nodes if b != a and (a, b) not in halves} for a in nodes}
        sizes = sorted({len(r) + 1 for r in reach.values()})
        assert sizes == [n // 2, n - n // 2]
        bridge = catalogue.bridge(nodes, rng)
        hub = [a for a in nodes if not any(a in e for e in bridge)]
        assert len(hub) == 1
        one_way = catalogue.one_way("n2", nodes)
        assert all(src == "n2" for src, _ in one_way)
    ring = catalogue.majorities_ring(NODES, rng)
    for a in NODES:
        sees = {b for b in NODES if b != a and (a, b) not in ring}
        assert len(sees) + 1 == 3  # a majority, itself included
    views = {frozenset({a} | {b for b in NODES if (a, b) not in ring and a != b}) for a in NODES}
    assert len(views) == 5  # no two nodes see the same majority


def test_unknown_nemesis_is_refused() -> None:
    with pytest.raises(catalogue.NemesisError, match="unknown nemesis 'flood'"):
        catalogue.parse_kinds("partition,flood")
    assert catalogue.parse_kinds("packet,none,kill") == ["delay", "kill"]
    assert catalogue.parse_spec("pause:leader,kill:one/all") == {"pause": ("leader",),
                                                                 "kill": ("one", "all")}
    with pytest.raises(catalogue.NemesisError, match="unknown kill shape 'most'"):
        catalogue.parse_spec("kill:most")


def test_restricted_shapes_are_the_only_ones_planned() -> None:
    faults = plan(catalogue.parse_spec("partition:isolate-leader,kill:leader"), 60, 2.0,
                  random.Random(5))
    assert {(f.kind, f.shape) for f in faults} == {("partition", "isolate-leader"),
                                                   ("kill", "leader")}


def test_plain_kinds_need_only_their_own_capabilities() -> None:
    # Backends without delay (Docker or SSH hosts without netem) must still run the default mix.
    # Its one-way and lagging-takeover shapes need one-way cuts, which every backend that can
    # partition has, except Docker for etcd (it cuts both ways).
    assert catalogue.capabilities(catalogue.parse_spec("partition,pause,kill")) == {
        "partition", "pause", "kill", "one-way"}
    assert "one-way" not in catalogue.capabilities(catalogue.parse_spec(
        "partition:isolate-one/isolate-leader/halves/majorities-ring/bridge"))
    assert "delay" in catalogue.capabilities(catalogue.parse_spec("pause:stall-leader"))


def test_scales_timing_draws_blips_and_long_faults() -> None:
    spec = catalogue.parse_spec("partition,pause,kill")
    faults = plan(spec, 600, 2.0, random.Random(3), "scales", 0.3)
    lengths = [f.end - f.start for f in faults]
    assert any(length < 0.3 for length in lengths), "no fault shorter than an election timeout"
    assert any(length > 4.0 for length in lengths), "no fault of many election timeouts"
    assert sum(1 for length in lengths if 1.0 <= length <= 3.0) > len(lengths) / 4
    fixed = plan(spec, 600, 2.0, random.Random(3), "fixed", 0.3)
    assert all(0.99 <= f.end - f.start <= 3.01 for f in fixed[:-3])


def test_a_fault_with_every_target_down_hits_nobody_and_is_not_recorded() -> None:
    import asyncio

    from nemesis.executor import Nemesis
    from nemesis.schedule import PlannedFault

    class Backend:
        def kill(self, node: str) -> None: ...
        def restart(self, node: str) -> None: ...
        def pause(self, node: str) -> None: ...
        def resume(self, node: str) -> None: ...
        def set_network(self, cut, delays) -> None: ...
        def set_disk_delay(self, node: str, seconds: float) -> None: ...

    records: list = []

    async def leader() -> None:
        return None

    async def go() -> tuple:
        nemesis = Nemesis(Backend(), ["n1", "n2", "n3"], lambda *r: records.append(r), leader)
        await nemesis.start(PlannedFault(0, 1, "kill", "all", 1))
        during = await nemesis.start(PlannedFault(0.1, 0.5, "pause", "one", 2))
        await nemesis.stop("kill", ["n1", "n2", "n3"])
        after = await nemesis.start(PlannedFault(0.1, 0.5, "pause", "one", 2))
        return during, after

    during, after = asyncio.run(go())
    assert during is None
    assert after is not None and after[1]
    assert all(r[3] for r in records), "a fault was recorded with no target"
