"""Property test: random fault schedules never break agreement, state equality or exactly-once.

Hypothesis draws the cluster size, the fault mix and the seed of the schedule; the simulation is
deterministic given those, so a counterexample replays exactly.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.node.paxos_sim import Sim

faults = st.fixed_dictionaries({
    "drop": st.floats(0.0, 0.3),
    "dup": st.floats(0.0, 0.15),
    "hold": st.floats(0.0, 0.5),
    "crash": st.floats(0.0, 0.03),
    "restart": st.floats(0.01, 0.1),
    "partition": st.floats(0.0, 0.03),
    "heal": st.floats(0.01, 0.1),
})


params = dict(

    seed=st.integers(0, 2 ** 32 - 1),
    n=st.sampled_from([3, 3, 5]),
    p=faults,
    rounds=st.integers(100, 600),
    snapshot_every=st.sampled_from([4, 25, 10_000]),
    mid_crash=st.floats(0.0, 0.05),
    classic=st.booleans(),
    clients=st.integers(1, 6),
    async_persist=st.booleans(),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**params)
def test_random_schedules_are_safe(**kw: object) -> None:
    check_schedule(**kw)  # type: ignore[arg-type]


@pytest.mark.slow
@settings(max_examples=900, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**params)
def test_many_more_random_schedules_are_safe(**kw: object) -> None:
    check_schedule(**kw)  # type: ignore[arg-type]


def check_schedule(seed: int, n: int, p: dict, rounds: int, snapshot_every: int,
                   mid_crash: float, classic: bool, clients: int, async_persist: bool) -> None:
    sim = Sim(n, seed=seed, snapshot_every=snapshot_every, mid_crash_prob=mid_crash,
              async_persist=async_persist,
              classic=classic and seed % 4 == 0)
    sim.add_clients(clients)
    for i in range(rounds):
        sim.chaos_round(p)
        if i % 10 == 0:
            # replicas that applied the same prefix hold the same state, at every point
            assert sim.check_safety() == []
    # no slot ever had two different chosen values on any two replicas (checked online too)
    assert sim.violations == []
    assert sim.stabilize(6000), "no convergence after healing everything"
    assert sim.check_safety() == []
    # every acknowledged update is in the chosen log, exactly once (no update is in two slots)
    assert sim.check_acked() == []
    # and each replica's state is the replay of that log
    assert sim.check_states() == []
