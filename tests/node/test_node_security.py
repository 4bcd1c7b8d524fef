"""Only authenticated peers speak Paxos; every peer message is validated; resources stay bounded
(issue 14). Real three-node clusters on loopback."""

from __future__ import annotations

import json
import os
import socket
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node import auth

from .node_procs import Cluster, Conn, cluster_secret, peer_link, request

HUGE = int("9" * 4300)  # 4300 digits: parses, but cannot be printed again


def _snapshot(cluster: Cluster) -> dict[str, tuple]:
    out = {}
    for nid in cluster.ids:
        st_ = cluster.status(nid)
        assert st_ is not None, f"{nid} does not answer"
        log = request(cluster.ports[nid], {"op": "log", "from": 0, "limit": 100000})
        assert log is not None
        out[nid] = (st_["digest"], st_["applied"], st_["ballot"], st_["role"],
                    json.dumps(log["entries"], sort_keys=True))
    return out


def _write(cluster: Cluster, leader: str, n: int, client: str) -> None:
    """n writes, each acknowledged; an `unavailable` (a leader change, which a flood of the
    leader's connections may cause) is followed to the new leader, at most for 10 s."""
    deadline = time.monotonic() + 10
    for seq in range(n):
        while True:
            c = Conn(cluster.ports[leader])
            try:
                r = c.call({"client": client, "seq": seq, "op": "write", "key": f"k{seq % 3}",
                            "value": seq})
            finally:
                c.close()
            if r["ok"] or r.get("code") != 11 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
            leader = r.get("leader") if r.get("leader") in cluster.ports else \
                cluster.wait_leader()
        assert r["ok"], r


def _forged(sender: str, to: str) -> list[dict]:
    cmd = {"client": "mallory", "seq": 1, "op": "write", "key": "k0", "value": "forged"}
    return [
        {"type": "learn", "from": sender, "to": to, "ballot": [1, sender],
         "entries": [[0, cmd], [1, cmd]], "commit": 1},
        {"type": "snapshot", "from": sender, "to": to, "ballot": [1, sender], "index": 10**6,
         "data": json.dumps({"data": [["k0", "forged"]], "sets": [], "sessions": []})},
        {"type": "accept", "from": sender, "to": to, "ballot": [10**15, sender],
         "entries": [[0, cmd], [5, cmd]], "commit": 5},
        {"type": "accept", "from": sender, "to": to, "ballot": [10**15, sender],
         "entries": [], "commit": 0},
        {"type": "accept", "from": sender, "to": to, "ballot": [HUGE, sender], "entries": [],
         "commit": 0},
        {"type": "prepare", "from": sender, "to": to, "ballot": [10**15, sender], "first": 0},
    ]


def _send_lines(sock: socket.socket, msgs: list) -> None:
    for m in msgs:
        try:
            sock.sendall((m if isinstance(m, bytes) else json.dumps(m).encode()) + b"\n")
        except OSError:
            return  # the node closed the connection, as it should


def test_unauthenticated_peers_change_nothing(tmp_path) -> None:
    with Cluster(str(tmp_path)) as cluster:
        cluster.start()
        leader = cluster.wait_leader()
        _write(cluster, leader, 20, "honest")
        time.sleep(0.5)
        before = _snapshot(cluster)
        follower = next(n for n in cluster.ids if n != leader)
        for target in cluster.ids:
            sender = next(n for n in cluster.ids if n != target)
            port = cluster.ports[target]
            # 1. the old protocol: a bare hello, then forged messages
            s = socket.create_connection(("127.0.0.1", port), timeout=3)
            _send_lines(s, [{"type": "hello", "from": sender, "to": target}]
                        + _forged(sender, target))
            s.close()
            # 2. a hello with a nonce, then forged messages instead of the proof
            s = socket.create_connection(("127.0.0.1", port), timeout=3)
            _send_lines(s, [{"type": "hello", "from": sender, "to": target,
                             "nonce": auth.new_nonce()}] + _forged(sender, target))
            s.close()
            # 3. the handshake with a wrong secret, then forged messages
            s = peer_link(port, sender, target, b"not-the-secret-either")
            assert s is not None  # the challenge comes; the proof then fails
            _send_lines(s, _forged(sender, target))
            s.close()
            # 4. a proof that is no proof
            s = peer_link(port, sender, target, None)
            assert s is not None
            _send_lines(s, _forged(sender, target))
            s.close()
        time.sleep(1.0)
        after = _snapshot(cluster)
        assert after == before
        assert cluster.leader() == leader
        for nid in cluster.ids:
            log = cluster.log_text(nid)
            assert "FATAL" not in log and "Traceback" not in log
            assert "refused a connection" in log
        # the forged state was never persisted: a restarted follower comes back the same
        cluster.kill(follower)
        cluster.start(follower)
        cluster.wait_port(follower)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            st_ = cluster.status(follower)
            if st_ and st_["digest"] == before[follower][0]:
                break
            time.sleep(0.1)
        assert cluster.status(follower)["digest"] == before[follower][0]
        assert "FATAL" not in cluster.log_text(follower)


def test_authenticated_forgeries_out_of_bounds_are_dropped(tmp_path) -> None:
    """Holding the secret makes a peer trusted (Paxos is not Byzantine-tolerant), but a message
    out of bounds (a 4300-digit ballot) is dropped, not fatal, and a restart still works."""
    with Cluster(str(tmp_path)) as cluster:
        cluster.start()
        leader = cluster.wait_leader()
        _write(cluster, leader, 5, "honest")
        other = next(n for n in cluster.ids if n != leader)
        s = peer_link(cluster.ports[leader], other, leader, cluster_secret(cluster))
        assert s is not None
        _send_lines(s, [{"type": "accept", "from": other, "to": leader,
                         "ballot": [HUGE, other], "entries": [], "commit": 0},
                        {"type": "prepare", "from": other, "to": leader,
                         "ballot": [2**63, other], "first": 0},
                        {"type": "accept", "from": other, "to": leader, "ballot": [3, "zz"],
                         "entries": [], "commit": 0, "extra": 1}])
        s.close()
        time.sleep(0.5)
        assert cluster.leader() == leader
        log = cluster.log_text(leader)
        assert "FATAL" not in log and "dropped malformed peer message" in log
        cluster.kill(leader)
        cluster.start(leader)
        cluster.wait_port(leader)
        assert "FATAL" not in cluster.log_text(leader)


# -- random and mutated messages on an authenticated link ------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12)

_TEMPLATES = {
    "prepare": {"first": 0},
    "promise": {"ok": True, "promised": [1, "n1"], "accepted": [], "snap": -1, "chosen": -1},
    "accept": {"entries": [], "commit": -1, "read": 0},
    "accepted": {"ok": True, "slots": [], "promised": [1, "n1"], "chosen": -1, "read": 0},
    "learn": {"entries": [], "commit": -1},
    "snapshot": {"index": 0, "data": "{}"},
    "catchup": {"from_slot": 0},
    "prevote_reply": {"granted": True, "promised": [0, ""], "leader": None},
}
_BAD_VALUES = st.one_of(_json, st.just(HUGE), st.just(-1), st.just(2**63),
                        st.just([[HUGE, {"op": "noop"}]]), st.just([[0, [1, 2]]]),
                        st.just([0, "x" * 100]), st.just("\u0000"))


@st.composite
def _mutated(draw, sender: str, to: str) -> dict | bytes:
    kind = draw(st.sampled_from(["random", "mutated", "extra-field", "stranger-ballot",
                                 "bytes"]))
    if kind == "random":
        return draw(_json)
    if kind == "bytes":
        return draw(st.binary(max_size=200)).replace(b"\n", b" ")
    t = draw(st.sampled_from(sorted(_TEMPLATES)))
    msg = {"type": t, "from": sender, "to": to, "ballot": [0, ""], **_TEMPLATES[t]}
    if kind == "extra-field":
        msg[draw(st.sampled_from(["evil", "bugs", "id"]))] = draw(_json)
    elif kind == "stranger-ballot":
        msg["ballot"] = [draw(st.integers(0, 2**62)), "mallory"]
    else:
        field = draw(st.sampled_from(sorted(msg.keys() - {"type", "from", "to"})))
        msg[field] = draw(_BAD_VALUES)
    return msg


@pytest.fixture(scope="module")
def fuzzed_cluster(tmp_path_factory):
    with Cluster(str(tmp_path_factory.mktemp("fuzz"))) as cluster:
        cluster.start()
        leader = cluster.wait_leader()
        _write(cluster, leader, 10, "honest")
        time.sleep(0.3)
        yield cluster, leader, _snapshot(cluster)


@settings(max_examples=40, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_random_peer_messages_never_crash_or_change_state(fuzzed_cluster, data) -> None:
    cluster, leader, before = fuzzed_cluster
    target = data.draw(st.sampled_from(cluster.ids))
    sender = next(n for n in cluster.ids if n != target)
    msgs = data.draw(st.lists(_mutated(sender, target), min_size=1, max_size=8))
    s = peer_link(cluster.ports[target], sender, target, cluster_secret(cluster))
    assert s is not None
    _send_lines(s, msgs)
    s.close()
    assert request(cluster.ports[target], {"op": "status"}, timeout=3) is not None
    for nid in cluster.ids:
        assert "FATAL" not in cluster.log_text(nid)


def test_random_peer_messages_left_agreement(fuzzed_cluster) -> None:
    cluster, leader, before = fuzzed_cluster
    time.sleep(0.5)
    after = _snapshot(cluster)
    # nothing in bounds and well formed was sent: every node holds what it held
    assert {n: v[:2] + v[4:] for n, v in after.items()} == \
        {n: v[:2] + v[4:] for n, v in before.items()}
    assert cluster.leader() == leader
    _write(cluster, leader, 5, "after-fuzz")


# -- bounded resources -----------------------------------------------------------------------

def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))


RSS_BOUND_MB = 150  # over the leader's RSS before the flood


def test_many_connections_with_huge_lines_stay_bounded(tmp_path) -> None:
    with Cluster(str(tmp_path)) as cluster:
        cluster.start()
        leader = cluster.wait_leader()
        _write(cluster, leader, 5, "before")
        pid = cluster.procs[leader].pid
        rss_before = _rss_kb(pid)
        port = cluster.ports[leader]
        # Each client line stays just under the 1 MiB limit, so no single connection breaks a
        # rule: 500 of them would hold 500 MB without the bound on all unfinished lines. 20
        # would-be peers do the same after a hello.
        line_budget = 1_000_000
        chunk = b"x" * 100_000
        socks: list[tuple[socket.socket, list[int]]] = []
        try:
            for i in range(520):
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                if i >= 500:
                    s.sendall(json.dumps({"type": "hello", "from": "n2", "to": leader,
                                          "nonce": os.urandom(16).hex()}).encode() + b"\n")
                s.setblocking(False)
                socks.append((s, [0]))
            peak = rss_before
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                busy = False
                for s, sent in socks:
                    if sent[0] >= line_budget:
                        continue
                    try:
                        sent[0] += s.send(chunk[:line_budget - sent[0]])
                        busy = True
                    except BlockingIOError:
                        busy = True
                    except OSError:
                        sent[0] = line_budget  # closed by the node
                peak = max(peak, _rss_kb(pid))
                if not busy:
                    break
            time.sleep(0.5)
            peak = max(peak, _rss_kb(pid))
            sent_mb = sum(sent[0] for _, sent in socks) / 1e6
            # still serving, while the survivors hold their connections open
            _write(cluster, leader, 5, "during")
        finally:
            for s, _ in socks:
                s.close()
        print(f"sent {sent_mb:.0f} MB; leader RSS {rss_before / 1024:.1f} -> {peak / 1024:.1f} MB")
        assert sent_mb > 300, sent_mb
        assert peak - rss_before < RSS_BOUND_MB * 1024, (rss_before, peak)
        # Alive and in a cluster that still serves (a busy machine may move the leadership
        # while the node reads 500 MB: that is no failure of the bound).
        assert cluster.procs[leader].poll() is None
        assert cluster.leader() is not None
        log = cluster.log_text(leader)
        assert "FATAL" not in log and "unfinished lines buffered in all" in log
