"""The sans-IO core on a deterministic in-process network."""

from __future__ import annotations

import random

import pytest

from node.core import DURABLE_RETAINED_SLOTS, LEADER, NOOP, Config, Replica
from tests.node.paxos_sim import Sim


def elect(sim: Sim, steps: int = 1000) -> str:
    assert sim.run_until(lambda: sim.serving_leader() is not None, steps), "no leader"
    ld = sim.serving_leader()
    assert ld is not None
    return ld


def w(client: str, seq: int, key: str = "k", value: object = 1) -> dict:
    return {"client": client, "seq": seq, "op": "write", "key": key, "value": value}


def settle(sim: Sim) -> None:
    assert sim.stabilize(), "did not converge"
    assert sim.check_safety() == []
    assert sim.check_acked() == []
    assert sim.check_states() == []


# -- steady state -----------------------------------------------------------------------------

def test_stable_leader_commits_with_phase2_only() -> None:
    sim = Sim(3, seed=11)
    ld = elect(sim)
    r = sim.nodes[ld]
    p1 = r.counters["phase1_rounds"]
    c0 = r.counters["commits"]
    sim.add_clients(3)
    sim.run(300)
    assert len(sim.acked) > 100
    assert sim.serving_leader() == ld
    assert r.counters["phase1_rounds"] == p1 == 1
    assert r.counters["commits"] - c0 > 100
    assert r.counters["phase2_rounds"] > 50
    settle(sim)


def test_commands_arriving_together_share_one_accept_and_one_fsync() -> None:
    sim = Sim(3, seed=2)
    ld = elect(sim)
    sim.flush()
    r = sim.nodes[ld]
    for i in range(10):
        assert r.propose(w("c", i, value=i), ("c", i, 1)) is None
    rd = r.ready()
    accepts = [m for m in rd.early_messages if m["type"] == "accept"]
    assert sorted(m["to"] for m in accepts) == sorted(p for p in sim.ids if p != ld)
    assert all(len(m["entries"]) == 10 for m in accepts)
    assert rd.sync and len([x for x in rd.records if x["t"] == "acc"]) == 1
    assert len(rd.records[-1]["e"]) == 10
    r.advance(rd)


def test_follower_applies_strictly_in_slot_order() -> None:
    cfg = Config(node_id="n2", peers=["n1", "n3"], election_ticks=10, heartbeat_ticks=2)
    r = Replica(cfg, random.Random(0))
    b = [5, "n1"]
    c0, c1 = w("a", 1, value=0), w("a", 2, value=1)
    base = {"type": "accept", "from": "n1", "to": "n2", "ballot": b}
    r.step({**base, "entries": [[1, c1]], "commit": -1})
    r.step({**base, "entries": [], "commit": 1})
    rd = r.ready()
    assert r.applied == -1 and r.chosen_upto == -1 and 1 in r.chosen
    assert any(m["type"] == "catchup" and m["from_slot"] == 0 for m in rd.early_messages)
    r.advance(rd)
    r.step({**base, "entries": [[0, c0]], "commit": 1})
    rd = r.ready()
    assert [s for s, _ in rd.applied] == [0, 1]
    assert r.sm.value_of("k") == (True, 1)


def test_stale_replies_are_never_counted() -> None:
    sim = Sim(3, seed=5)
    ld = elect(sim)
    sim.flush()
    r = sim.nodes[ld]
    r.propose(w("c", 1), ("c", 1, 1))
    sim.process(ld)
    slot = max(r.proposals)
    sim.net.clear()  # lose every Accept
    old = [r.ballot[0] - 1, ld]
    for p in sim.ids:
        if p != ld:
            r.step({"type": "accepted", "from": p, "to": ld, "ballot": old, "ok": True,
                    "slots": [slot], "promised": old, "chosen": -1})
    sim.process(ld)
    assert slot in r.proposals and slot not in r.chosen
    p = next(p for p in sim.ids if p != ld)
    r.step({"type": "accepted", "from": p, "to": ld, "ballot": list(r.ballot), "ok": True,
            "slots": [slot], "promised": list(r.ballot), "chosen": -1})
    sim.process(ld)
    assert r.chosen[slot] == w("c", 1)


def test_a_follower_far_behind_gets_heartbeats_not_entries() -> None:
    """Per-follower window: a follower the leader has not heard from holds at most `window`
    slots' worth of Accepts in flight; after the heal it catches up (catch-up, then the
    window reopens)."""
    sim = Sim(3, seed=31, window=8, max_inflight=64)
    ld = elect(sim)
    sim.flush()
    lag = next(i for i in sim.ids if i != ld)
    sent: list[int] = []
    send = sim._send

    def spy(m: dict) -> None:
        if m["type"] == "accept" and m["to"] == lag and m["from"] == ld:
            sent.extend(s for s, _ in m["entries"])
        send(m)
    sim._send = spy  # type: ignore[method-assign]
    sim.partition([lag], [i for i in sim.ids if i != lag])
    sim.add_clients(3)
    sim.run(150)
    r = sim.nodes[ld]
    assert r.chosen_upto > 100 and sim.serving_leader() == ld
    assert r.counters["window_full"] > 0
    assert len(set(sent)) <= 8 + 16          # the window, plus one batch that crossed it
    sim.heal()
    settle(sim)
    assert sim.nodes[lag].applied == r.applied
    sim.add_clients(1)
    sim.clients_active = True
    before = len(sent)
    sim.run(30)
    assert len(sent) > before                 # caught up: entries flow to it again


# -- faults -----------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(6))
def test_drop_duplicate_reorder_crash_keeps_safety_and_converges(seed: int) -> None:
    sim = Sim(3 if seed % 2 else 5, seed=seed, mid_crash_prob=0.02)
    sim.add_clients(3)
    p = dict(drop=0.1, dup=0.05, crash=0.004, restart=0.01, partition=0.004, heal=0.01,
             client=0.1)
    for _ in range(3000):
        sim.random_step(p)
    settle(sim)
    assert len(sim.chosen) > 10


def test_isolated_leader_steps_down_and_majority_elects() -> None:
    sim = Sim(3, seed=3)
    old = elect(sim)
    old_ballot = sim.nodes[old].ballot
    rest = [i for i in sim.ids if i != old]
    sim.partition([old], rest)
    sim.run(3 * 10 + 5)   # a little over the check-quorum timeout
    assert sim.nodes[old].role != LEADER
    new = elect(sim)
    assert new in rest and sim.nodes[new].ballot > old_ballot
    sim.add_clients(2)
    sim.run(50)
    sim.heal()
    sim.run(50)
    assert sim.nodes[old].leader_id == new and sim.nodes[old].promised == sim.nodes[new].ballot
    settle(sim)


def test_rejoining_node_does_not_depose_a_healthy_leader() -> None:
    sim = Sim(3, seed=4)
    ld = elect(sim)
    ballot = sim.nodes[ld].ballot
    loner = next(i for i in sim.ids if i != ld)
    sim.partition([loner], [i for i in sim.ids if i != loner])
    sim.add_clients(2)
    sim.run(200)   # many election timeouts for the loner
    lr = sim.nodes[loner]
    assert lr.role != LEADER
    assert lr.counters["elections"] == 0     # pre-votes never got a majority
    assert lr.promised == ballot              # so it never raised its promise
    sim.heal()
    sim.run(100)
    assert sim.serving_leader() == ld and sim.nodes[ld].ballot == ballot
    assert lr.leader_id == ld and lr.applied > 50
    settle(sim)


def test_ballots_are_never_reused_across_restarts() -> None:
    sim = Sim(3, seed=9, mid_crash_prob=0.05)
    sim.add_clients(2)
    p = dict(drop=0.05, crash=0.01, restart=0.02, client=0.1)
    for _ in range(4000):
        sim.random_step(p)
    settle(sim)
    started = [e.split()[-1] for _, e in sim.events if e.startswith("starting election")]
    assert len(started) > 5
    assert len(started) == len(set(started))


def test_election_timeouts_are_randomized_and_back_off() -> None:
    cfg = Config(node_id="n1", peers=["n2", "n3"], election_ticks=10, heartbeat_ticks=2)
    r = Replica(cfg, random.Random(7))
    draws = set()
    for _ in range(30):
        r._reset_election_timer()
        d = r.election_deadline - r.now
        assert 10 <= d < 20
        draws.add(d)
    assert len(draws) > 3
    r.failed_elections = 3
    longer = [r._reset_election_timer() or r.election_deadline - r.now for _ in range(30)]
    assert max(longer) >= 20 and all(10 <= d < 20 + 30 + 1 for d in longer)


# -- takeover ---------------------------------------------------------------------------------

def candidate_with_promises(promises: dict[str, list]) -> tuple[Replica, list]:
    """n1 runs Phase 1 and gets promises (slot, ballot, value) from n2 and n3."""
    cfg = Config(node_id="n1", peers=["n2", "n3"], election_ticks=10, heartbeat_ticks=2)
    r = Replica(cfg, random.Random(0))
    while r.role != "precandidate":
        r.tick()
    r.step({"type": "prevote_reply", "from": "n2", "to": "n1", "ballot": list(r.prevote_ballot),
            "granted": True, "promised": [0, ""], "leader": None})
    assert r.role == "candidate"
    rd = r.ready()
    for p, acc in promises.items():
        r.step({"type": "promise", "from": p, "to": "n1", "ballot": list(r.ballot), "ok": True,
                "promised": list(r.ballot), "accepted": acc, "snap": -1, "chosen": -1})
    r.advance(rd)       # our own promise is durable only now
    assert r.role == LEADER
    rd = r.ready()
    accepts = [m for m in rd.early_messages if m["type"] == "accept" and m["to"] == "n2"]
    r.advance(rd)
    return r, accepts


def test_takeover_reproposes_highest_ballot_values_and_fills_holes() -> None:
    v1, v2, v3, v5 = (w("x", i, value=i) for i in (1, 2, 3, 5))
    r, accepts = candidate_with_promises({
        "n2": [[0, [1, "n2"], v1], [2, [3, "n2"], v3]],
        "n3": [[0, [2, "n3"], v2], [5, [1, "n1"], v5]],
    })
    proposed = {s: v for m in accepts for s, v in m["entries"]}
    assert proposed == {0: v2, 1: NOOP, 2: v3, 3: NOOP, 4: NOOP, 5: v5}
    assert not r.serving and r.next_slot == 6


def test_clients_are_served_only_after_the_recovered_slots_are_chosen() -> None:
    v = w("x", 1)
    r, accepts = candidate_with_promises({"n2": [[0, [1, "n2"], v]], "n3": []})
    assert r.propose(w("y", 1, value=9), "tok") is None
    rd = r.ready()
    assert not [m for m in rd.early_messages if m["type"] == "accept"]  # held back
    r.advance(rd)
    r.step({"type": "accepted", "from": "n2", "to": "n1", "ballot": list(r.ballot), "ok": True,
            "slots": [0], "promised": list(r.ballot), "chosen": -1})
    assert r.serving
    rd = r.ready()
    sent = [m for m in rd.early_messages if m["type"] == "accept" and m["to"] == "n2"]
    assert sent and sent[0]["entries"] == [[1, w("y", 1, value=9)]]


def test_retry_after_leader_change_applies_exactly_once() -> None:
    sim = Sim(3, seed=21)
    ld = elect(sim)
    sim.flush()
    r = sim.nodes[ld]
    r.propose(w("c", 1, value=1), ("c", 1, 1))
    sim.process(ld)
    sim.flush()
    cas = {"client": "c", "seq": 2, "op": "cas", "key": "k", "from": 1, "to": 2}
    r.propose(cas, ("c", 2, 1))
    sim.process(ld)
    # followers accept the cas, but the leader dies before it hears back or replies
    sim.deliver_matching(type="accept")
    sim.crash(ld)
    sim.net.clear()
    new = elect(sim)
    assert new != ld
    nr = sim.nodes[new]
    # the client retries the same (client, seq) at the new leader
    reply = nr.propose(dict(cas), ("c", 2, 2))
    sim.process(new)
    sim.run(20)
    got = reply or sim.replies.get(("c", 2, 2))
    assert got == {"ok": True}          # not precondition-failed: it ran once, at slot recovery
    log = [v for s, v in sorted(nr.chosen.items())]
    assert log.count(cas) == 1
    assert nr.sm.value_of("k") == (True, 2)
    settle(sim)


def test_lagging_replica_gets_the_snapshot() -> None:
    sim = Sim(3, seed=8, snapshot_every=10)
    ld = elect(sim)
    lag = next(i for i in sim.ids if i != ld)
    sim.partition([lag], [i for i in sim.ids if i != lag])
    sim.add_clients(2)
    sim.run(150)
    assert sim.nodes[ld].snap_index > sim.nodes[lag].applied + 10
    sim.heal()
    settle(sim)
    assert any(n == lag and e.startswith("installed snapshot") for n, e in sim.events)
    assert sim.nodes[lag].snap_index >= sim.nodes[ld].snap_index - 10
    # the log on disk was truncated to what follows the snapshot, but for the newest compacted
    # chosen values, which it keeps (bounded) for observers of the log
    snap = sim.disks[ld].snapshot
    assert snap is not None and snap[0] == sim.nodes[ld].snap_index
    accepted = [e[0] for rec in sim.disks[ld].records if rec["t"] == "acc" for e in rec["e"]]
    assert all(s > snap[0] for s in accepted)
    chosen = [e[0] for rec in sim.disks[ld].records if rec["t"] == "chosen" for e in rec["e"]]
    below = [s for s in chosen if s <= snap[0]]
    assert below and len(below) <= DURABLE_RETAINED_SLOTS
    log = sim.nodes[ld].log(0, 10_000)
    assert log["first"] <= min(below) and log["entries"][0]["slot"] == log["first"]


def test_restart_from_snapshot_and_log() -> None:
    sim = Sim(3, seed=12, snapshot_every=7)
    elect(sim)
    sim.add_clients(2)
    sim.run(100)
    digests = {i: sim.nodes[i].sm.digest() for i in sim.ids}
    applied = {i: sim.nodes[i].applied for i in sim.ids}
    for i in sim.ids:
        sim.crash(i)
        sim.restart(i)
        assert sim.nodes[i].applied == applied[i]
        assert sim.nodes[i].sm.digest() == digests[i]
    settle(sim)


def test_classic_mode_runs_phase1_before_every_slot() -> None:
    """Single-decree Paxos per slot: even with several clients (a batch would be possible),
    every slot gets its own Phase 1 (a fresh ballot), reads included; slots one at a time."""
    sim = Sim(3, seed=13, classic=True)
    ld = elect(sim)
    r = sim.nodes[ld]
    p1, c0, b0 = r.counters["phase1_rounds"], r.counters["commits"], r.ballot
    sim.add_clients(4)
    inflight = 0
    for _ in range(150):
        sim.run(1)
        inflight = max(inflight, len(r.proposals))
    assert len(sim.acked) > 10 and sim.serving_leader() == ld
    commits = r.counters["commits"] - c0
    assert commits > 10
    assert r.counters["phase1_rounds"] - p1 == commits          # one Phase 1 per slot
    assert r.ballot[0] - b0[0] == commits                        # each with its own ballot
    assert inflight == 1
    assert r.counters["read_rounds"] == 0                        # reads went through the log
    settle(sim)


def test_malformed_peer_messages_are_dropped() -> None:
    cfg = Config(node_id="n1", peers=["n2", "n3"])
    r = Replica(cfg, random.Random(0))
    before = (r.promised, r.role)
    bad = [
        None, 5, "x", [], {},
        {"type": "prepare"},
        {"type": "prepare", "from": "n2", "to": "n1", "ballot": "high", "first": 0},
        {"type": "prepare", "from": "n2", "to": "n1", "ballot": [1, "n2"], "first": -4},
        {"type": "accept", "from": "n2", "to": "n1", "ballot": [9, "n2"],
         "entries": [[0, {"op": "explode"}]], "commit": 0},
        {"type": "accept", "from": "n2", "to": "n1", "ballot": [9, "n2"], "entries": "no",
         "commit": 0},
        {"type": "nonsense", "from": "n2", "to": "n1", "ballot": [1, "n2"]},
        {"type": "prepare", "from": "n2", "to": "n7", "ballot": [1, "n2"], "first": 0},
        {"type": "prepare", "from": "mallory", "to": "n1", "ballot": [1, "mallory"],
         "first": 0},
        {"type": "promise", "from": "n2", "to": "n1", "ballot": [1, "n1"], "ok": True,
         "promised": [1, "n1"], "accepted": [[0, [1], {}]], "snap": -1, "chosen": -1},
    ]
    for m in bad:
        r.step(m)
    rd = r.ready()
    assert (r.promised, r.role) == before
    assert not rd.messages and not rd.early_messages and not rd.records
    # every one counted; each kind of problem logged once per sender (issue 14)
    assert r.counters["dropped_messages"] == len(bad)
    logged = [e for e in rd.events if e.startswith("dropped")]
    assert 0 < len(logged) < len(bad)
    for m in bad * 3:
        r.step(m)
    assert r.counters["dropped_messages"] == 4 * len(bad)
    assert not [e for e in r.ready().events if e.startswith("dropped")]


def test_promise_and_accepted_wait_for_their_records() -> None:
    """Durability before speech: a Promise or an Accepted is only in the messages sent after
    the Ready's records are persisted, and those records hold what it promises."""
    cfg = Config(node_id="n2", peers=["n1", "n3"])
    r = Replica(cfg, random.Random(0))
    r.step({"type": "prepare", "from": "n1", "to": "n2", "ballot": [3, "n1"], "first": 0})
    rd = r.ready()
    assert [m["type"] for m in rd.messages] == ["promise"] and not rd.early_messages
    assert rd.sync and {"t": "prom", "b": (3, "n1")} in rd.records
    r.advance(rd)
    # accepting at a higher ballot raises the promise, durably, before the Accepted leaves
    cmd = w("c", 1)
    r.step({"type": "accept", "from": "n3", "to": "n2", "ballot": [4, "n3"],
            "entries": [[0, cmd]], "commit": -1})
    rd = r.ready()
    assert [m["type"] for m in rd.messages] == ["accepted"] and rd.messages[0]["ok"]
    assert rd.sync
    assert {"t": "prom", "b": (4, "n3")} in rd.records
    assert {"t": "acc", "e": [[0, (4, "n3"), cmd]]} in rd.records
    r.advance(rd)
    # the old ballot is now refused, and the refusal names the promise
    r.step({"type": "accept", "from": "n1", "to": "n2", "ballot": [3, "n1"],
            "entries": [[1, cmd]], "commit": -1})
    rd = r.ready()
    nack = rd.messages[0]
    assert nack["ok"] is False and nack["promised"] == (4, "n3") and nack["ballot"] == (3, "n1")
    assert 1 not in r.accepted


def test_reply_before_fsync_bug_sends_promises_early() -> None:
    cfg = Config(node_id="n2", peers=["n1", "n3"], bugs=frozenset({"reply-before-fsync"}))
    r = Replica(cfg, random.Random(0))
    r.step({"type": "prepare", "from": "n1", "to": "n2", "ballot": [3, "n1"], "first": 0})
    rd = r.ready()
    assert [m["type"] for m in rd.early_messages] == ["promise"] and not rd.messages


def test_compacted_chosen_values_survive_a_restart_for_the_log_request() -> None:
    sim = Sim(3, seed=12, snapshot_every=7)
    elect(sim)
    sim.add_clients(2)
    sim.run(100)
    node = sim.ids[0]
    before = sim.nodes[node].log(0, 10_000)
    assert before["first"] < sim.nodes[node].snap_index  # compacted, yet still shown
    shown = {e["slot"]: e["value"] for e in before["entries"]}
    sim.restart(node)
    after = sim.nodes[node].log(0, 10_000)
    assert after["first"] <= sim.nodes[node].snap_index
    again = {e["slot"]: e["value"] for e in after["entries"]}
    assert all(shown[s] == v for s, v in again.items() if s in shown)
    assert set(shown) - set(again) == set(), "a compacted value shown before was lost"
