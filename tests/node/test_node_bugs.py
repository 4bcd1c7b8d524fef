"""Each injectable bug really produces its bug class, under a schedule that exposes it; the same
schedule on the correct node stays safe (so the tests would catch a regression either way)."""

from __future__ import annotations

import pytest

from node.bugs import BUGS
from node.core import LEADER
from tests.node.paxos_sim import Sim


def everyone(sim_ids: list[str], bug: str | None) -> dict[str, list[str]]:
    return {i: [bug] for i in sim_ids} if bug else {}


def ids(n: int) -> list[str]:
    return [f"n{i + 1}" for i in range(n)]


def make(n: int, bug: str | None, seed: int = 1, **kw: object) -> Sim:
    return Sim(n, seed=seed, bugs=everyone(ids(n), bug), **kw)


def elect(sim: Sim, among: list[str] | None = None, steps: int = 2000) -> str:
    def found() -> str | None:
        for i in among or sim.ids:
            r = sim.nodes[i]
            if r is not None and r.role == LEADER and r.serving:
                return i
        return None
    assert sim.run_until(lambda: found() is not None, steps), "no leader"
    ld = found()
    assert ld is not None
    return ld


def w(client: str, seq: int, value: object, key: str = "k") -> dict:
    return {"client": client, "seq": seq, "op": "write", "key": key, "value": value}


def submit(sim: Sim, nid: str, cmd: dict) -> dict | None:
    token = (cmd["client"], cmd["seq"], len(sim.replies) + 1000)
    reply = sim.nodes[nid].propose(dict(cmd), token)
    sim.process(nid)
    return reply if reply is not None else sim.replies.get(token)


def wait_reply(sim: Sim, token_prefix: tuple, steps: int = 200) -> dict | None:
    for _ in range(steps):
        for t, body in sim.replies.items():
            if t[:2] == token_prefix:
                return body
        sim.run(1)
    return None


def test_every_bug_is_catalogued_and_off_by_default() -> None:
    assert set(BUGS) >= {"read-local", "skip-recovery", "volatile-acceptor",
                         "accept-lower-ballot", "small-quorum", "ack-before-chosen", "no-dedup",
                         "no-takeover-noop", "reply-before-fsync", "no-election-jitter"}
    sim = Sim(3)
    assert all(not sim.nodes[i].bugs for i in sim.ids)
    assert sim.nodes["n1"].status()["bugs"] == []
    buggy = make(3, "small-quorum")
    assert buggy.nodes["n1"].status()["bugs"] == ["small-quorum"]


# -- split brain ------------------------------------------------------------------------------

@pytest.mark.parametrize("bug", [None, "small-quorum"])
def test_small_quorum_splits_the_brain(bug: str | None) -> None:
    sim = make(3, bug, seed=2)
    old = elect(sim)
    rest = [i for i in sim.ids if i != old]
    sim.partition([old], rest)
    sim.run(80)
    # both sides write
    submit(sim, old, w("a", 1, "minority"))
    new = elect(sim, among=rest)
    submit(sim, new, w("b", 1, "majority"))
    sim.run(40)
    sim.heal()
    sim.run(100)
    if bug:
        assert sim.violations, "two values chosen for one slot"
        assert sim.nodes[old].role == LEADER or sim.check_safety()
    else:
        assert sim.violations == [] and sim.check_safety() == []


# -- lost chosen values after a leader change -------------------------------------------------

@pytest.mark.parametrize("bug", [None, "skip-recovery"])
def test_skip_recovery_overwrites_a_chosen_value(bug: str | None) -> None:
    sim = make(3, bug, seed=3)
    ld = elect(sim)
    sim.flush()
    # a write is chosen by the leader and one follower while the third is cut off
    behind = next(i for i in sim.ids if i != ld)
    helper = next(i for i in sim.ids if i not in (ld, behind))
    sim.partition([ld, helper], [behind])
    submit(sim, ld, w("a", 1, "chosen"))
    sim.run(5)
    assert sim.replies, "the write was acknowledged"
    slot = max(sim.chosen)
    # the leader dies; the node that missed the write takes over with the helper
    sim.crash(ld)
    sim.heal()
    sim.net.clear()
    new = elect(sim)
    submit(sim, new, w("b", 1, "new"))
    sim.run(30)
    if bug:
        assert any(v.startswith(f"slot {slot}:") for v in sim.violations)
    else:
        assert sim.violations == []
        assert sim.nodes[new].chosen[slot] == w("a", 1, "chosen")


# -- amnesia ----------------------------------------------------------------------------------

@pytest.mark.parametrize("bug", [None, "volatile-acceptor"])
def test_volatile_acceptor_forgets_what_made_a_value_chosen(bug: str | None) -> None:
    sim = make(3, bug, seed=4)
    ld = elect(sim)
    sim.flush()
    a, b = [i for i in sim.ids if i != ld]
    # leader + a accept the write (chosen); b never hears of it
    sim.partition([ld, a], [b])
    submit(sim, ld, w("a", 1, "v1"))
    sim.deliver_matching(type="accept", dst=a)
    sim.deliver_matching(type="accepted", dst=ld)
    assert sim.replies, "acknowledged"
    slot = max(sim.chosen)
    # the acceptor restarts before it learned the commit; the leader dies for good
    sim.crash(a)
    sim.restart(a)
    sim.crash(ld)
    sim.net.clear()
    sim.heal()
    new = elect(sim)
    submit(sim, new, w("b", 1, "v2"))
    sim.run(30)
    if bug:
        assert any(v.startswith(f"slot {slot}:") for v in sim.violations)
    else:
        assert sim.violations == []


@pytest.mark.parametrize("bug", [None, "volatile-acceptor"])
def test_volatile_acceptor_reuses_ballots_after_a_restart(bug: str | None) -> None:
    sim = make(3, bug, seed=5)
    for _ in range(3):
        elect(sim)
        sim.run(5)
        for i in sim.ids:       # the whole cluster restarts (a power cut, a redeploy)
            sim.crash(i)
        sim.net.clear()
        for i in sim.ids:
            sim.restart(i)
    elect(sim)
    started = [e.split()[-1] for _, e in sim.events if e.startswith("starting election")]
    assert (len(started) != len(set(started))) == bool(bug), started


# -- two leaders at once ----------------------------------------------------------------------

@pytest.mark.parametrize("bug", [None, "accept-lower-ballot"])
def test_accept_lower_ballot_lets_a_deposed_leader_choose(bug: str | None) -> None:
    sim = make(3, bug, seed=6)
    old = elect(sim)
    sim.flush()
    a, b = [i for i in sim.ids if i != old]
    # the old leader proposes, then stalls (a long GC pause, SIGSTOP): it neither ticks nor
    # hears anything, and what it sent sits in the network
    submit(sim, old, w("old", 1, "from-old"))
    held: list = []
    for _ in range(300):
        if sim.nodes[a].role == LEADER and sim.nodes[a].serving or \
                sim.nodes[b].role == LEADER and sim.nodes[b].serving:
            break
        sim.tick(a)
        sim.tick(b)
        while sim.net:
            m = sim.net.pop(0)
            if old in (m[0], m[1]):
                held.append(m)
            else:
                sim.net.append(m)
                sim.deliver(len(sim.net) - 1)
    new = a if sim.nodes[a].role == LEADER else b
    assert sim.nodes[new].serving
    # the new leader fills the same slot with its own write
    submit(sim, new, w("new", 1, "from-new"))
    for _ in range(5):
        sim.tick(a)
        sim.tick(b)
        sim.net = [m for m in sim.net if old not in (m[0], m[1])]
        sim.flush()
    assert sim.chosen
    # the old leader wakes up: its Accepts arrive, and so do the answers
    sim.net = [m for m in held if m[0] == old]
    for _ in range(3):
        sim.deliver_matching(src=old, type="accept")
        sim.deliver_matching(dst=old, type="accepted")
    if bug:
        assert sim.violations, "the old ballot got a different value chosen"
    else:
        assert sim.violations == []
        assert sim.nodes[old].role != LEADER   # it learned of the higher ballot and stepped down


# -- acknowledged but lost ---------------------------------------------------------------------

@pytest.mark.parametrize("bug", [None, "ack-before-chosen"])
def test_ack_before_chosen_loses_acknowledged_writes(bug: str | None) -> None:
    sim = make(3, bug, seed=7)
    ld = elect(sim)
    sim.flush()
    token = ("x", 1, 1)
    cmd = w("x", 1, "maybe")
    reply = sim.nodes[ld].propose(dict(cmd), token)
    assert reply is None
    sim.process(ld)
    sim.net.clear()          # no follower ever sees it
    sim.crash(ld)
    acked = sim.replies.get(token)
    new = elect(sim)
    sim.run(20)
    in_log = cmd in sim.nodes[new].chosen.values()
    if bug:
        assert acked == {"ok": True} and not in_log
    else:
        assert acked is None


# -- duplicates ----------------------------------------------------------------------------------

@pytest.mark.parametrize("bug", [None, "no-dedup"])
def test_no_dedup_applies_a_retry_twice(bug: str | None) -> None:
    sim = make(3, bug, seed=8)
    ld = elect(sim)
    sim.flush()
    r = sim.nodes[ld]
    add = {"client": "x", "seq": 1, "op": "write", "key": "k", "value": 1}
    r.propose(dict(add), ("x", 1, 1))
    sim.process(ld)
    sim.run(5)
    r.propose({"client": "y", "seq": 1, "op": "write", "key": "k", "value": 2}, ("y", 1, 1))
    sim.process(ld)
    sim.run(5)
    # the first reply was lost; the client retries the same request
    retry = r.propose(dict(add), ("x", 1, 2))
    sim.process(ld)
    sim.run(5)
    copies = [s for s, v in r.chosen.items() if v == add]
    if bug:
        assert len(copies) == 2 and r.sm.value_of("k") == (True, 1)   # the retry re-ran
        assert sim.check_acked()
    else:
        assert len(copies) == 1 and r.sm.value_of("k") == (True, 2)
        assert retry == {"ok": True}      # answered from the session table


# -- serving before the takeover is done -------------------------------------------------------

@pytest.mark.parametrize("bug", [None, "no-takeover-noop"])
def test_no_takeover_noop_serves_a_stale_read_after_a_leader_change(bug: str | None) -> None:
    """Raft's "commit an entry of your term before serving reads", in Paxos terms: the old leader
    has chosen and acknowledged a write whose commit point never reached the followers; the new
    leader finds the value in Phase 1 and re-proposes it. With the bug it answers a read at its
    own commit point before that re-proposal is chosen: the acknowledged write is missing."""
    sim = make(3, bug, seed=9)
    old = elect(sim)
    submit(sim, old, w("a", 1, 1))
    sim.run(10)
    a, b = [i for i in sim.ids if i != old]
    assert all(sim.nodes[i].sm.value_of("k") == (True, 1) for i in sim.ids)
    # write 2: both followers accept it, the old leader learns it chosen and acknowledges it,
    # then dies before any Accept or heartbeat carries the new commit point
    token = ("a", 2, 1)
    sim.nodes[old].propose(w("a", 2, 2), token)
    sim.process(old)
    sim.deliver_matching(type="accept", src=old)
    sim.deliver_matching(type="accepted", dst=old)
    assert sim.replies.get(token) == {"ok": True}
    slot = sim.nodes[old].chosen_upto
    assert all(sim.nodes[i].chosen_upto == slot - 1 for i in (a, b))
    sim.crash(old)
    sim.net.clear()
    # `a` wins Phase 1 with b's promise; its re-proposal of write 2 is held back in the network
    sim.nodes[b].election_deadline += 10 ** 6
    for _ in range(500):
        sim.tick(a)
        sim.tick(b)
        while sim.net and sim.nodes[a].role != LEADER:
            sim.deliver(0)
        if sim.nodes[a].role == LEADER:
            break
    assert sim.nodes[a].role == LEADER
    assert sim.nodes[a].chosen_upto == slot - 1 and slot in sim.nodes[a].proposals
    # a read invoked after write 2 was acknowledged; heartbeats (the confirmation round) get
    # through, the takeover Accept does not
    rtoken = ("r", 1, 1)
    assert sim.nodes[a].propose({"client": "r", "seq": 1, "op": "read", "key": "k"},
                                rtoken) is None
    sim.process(a)
    sim.deliver_matching(type="accept", src=a, entries=[])
    sim.deliver_matching(type="accepted", dst=a, slots=[])
    if bug:
        assert sim.nodes[a].serving
        assert sim.replies.get(rtoken) == {"ok": True, "value": 1}   # stale: 2 was acked
    else:
        assert not sim.nodes[a].serving
        assert rtoken not in sim.replies          # waits for the takeover
        sim.run(10)
        assert sim.replies.get(rtoken) == {"ok": True, "value": 2}
    assert sim.violations == []   # the log itself stays safe: only the read is wrong


# -- durability before speech ------------------------------------------------------------------

@pytest.mark.parametrize("bug", [None, "reply-before-fsync"])
def test_reply_before_fsync_loses_a_chosen_value(bug: str | None) -> None:
    sim = make(3, bug, seed=10)
    ld = elect(sim)
    sim.flush()
    a, b = [i for i in sim.ids if i != ld]
    sim.partition([ld, a], [b])
    submit(sim, ld, w("a", 1, "v"))
    # `a` dies in the middle of persisting the accept (after replying, with the bug)
    sim.crash_before_persist.add(a)
    sim.deliver_matching(type="accept", dst=a)
    sim.deliver_matching(type="accepted", dst=ld)
    chosen_on_leader = bool(sim.chosen)
    slot = max(sim.chosen) if sim.chosen else None
    sim.crash(ld)
    sim.net.clear()
    sim.heal()
    sim.restart(a)
    new = elect(sim)
    submit(sim, new, w("b", 1, "other"))
    sim.run(30)
    if bug:
        assert chosen_on_leader
        assert any(v.startswith(f"slot {slot}:") for v in sim.violations)
    else:
        assert not chosen_on_leader and sim.violations == []


# -- liveness ----------------------------------------------------------------------------------

@pytest.mark.parametrize("bug", [None, "no-election-jitter"])
def test_no_election_jitter_livelocks_elections(bug: str | None) -> None:
    sim = make(3, bug, seed=11)
    for _ in range(10):    # processes never start at the same instant
        sim.tick("n1")
    ld = elect(sim)
    sim.run(10)
    sim.crash(ld)
    got = sim.run_until(lambda: sim.serving_leader() is not None, 400)
    if bug:
        assert not got
        failed = [e for _, e in sim.events if "pre-votes" in e and "abandoning" in e]
        assert len(failed) > 20
    else:
        assert got


@pytest.mark.parametrize("bug", [None, "read-local"])
def test_read_local_serves_stale_reads_from_a_deposed_leader(bug: str | None) -> None:
    sim = make(3, bug, seed=12)
    old = elect(sim)
    sim.flush()
    submit(sim, old, w("a", 1, 1))
    sim.run(5)
    rest = [i for i in sim.ids if i != old]
    sim.partition([old], rest)
    new = elect(sim, among=rest)
    submit(sim, new, w("b", 1, 2))
    sim.run(5)
    assert sim.nodes[new].sm.value_of("k") == (True, 2)
    reply = sim.nodes[old].propose({"client": "r", "seq": 1, "op": "read", "key": "k"},
                                   ("r", 1, 1))
    if bug:
        assert sim.nodes[old].role == LEADER
        assert reply == {"ok": True, "value": 1}        # stale: 2 was written before
    else:
        assert reply is None or reply.get("ok") is False
        sim.process(old)
        sim.run(20)
        assert ("r", 1, 1) not in sim.replies or not sim.replies[("r", 1, 1)].get("ok")
