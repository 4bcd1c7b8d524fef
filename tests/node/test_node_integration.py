"""Real node processes on loopback: failover, durability, bad input, CLI behaviour."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time

import pytest

from node.bugs import BUGS
from node.wal import MAGIC, encode_record
from tests.node.node_procs import (
    ROOT,
    Cluster,
    Conn,
    cluster_secret,
    free_ports,
    peer_link,
    request,
)

ELECTION_MS = 300


def failover_bound_s(election_ms: int) -> float:
    """Followers notice after at most 2T (the longest timeout drawn); a first pre-vote round
    can be lost to a tie, costing another 2T plus at most T of backoff; then one Phase 1
    round trip. Plus 1 s for process scheduling on a loaded test machine."""
    t = election_ms / 1000.0
    return 2 * t + (2 * t + t) + 1.0


class Client:
    """Follows leader hints; retries a request with the same (client, seq) until it is known
    to have happened (safe: the node deduplicates)."""

    def __init__(self, cluster: Cluster, name: str) -> None:
        self.cluster = cluster
        self.name = name
        self.seq = 0
        self.target = cluster.ids[0]
        self.conn: Conn | None = None

    def _call(self, req: dict) -> dict | None:
        try:
            if self.conn is None:
                self.conn = Conn(self.cluster.ports[self.target], timeout=3.0)
            return self.conn.call(req)
        except (OSError, ConnectionError, ValueError):
            if self.conn is not None:
                self.conn.close()
            self.conn = None
            return None

    def op(self, req: dict, deadline_s: float = 15.0) -> dict:
        self.seq += 1
        req = {"client": self.name, "seq": self.seq, **req}
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            reply = self._call(req)
            if reply is not None and (reply.get("ok") or reply.get("code") in (20, 22)):
                return reply
            if reply is not None and reply.get("code") == 11 and reply.get("leader"):
                if reply["leader"] != self.target:
                    self.target = reply["leader"]
                    self._drop_conn()
                    continue
            else:
                self.target = random.choice(self.cluster.ids)
                self._drop_conn()
            time.sleep(0.02)
        raise TimeoutError(f"{req} never succeeded")

    def _drop_conn(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.conn = None

    def close(self) -> None:
        self._drop_conn()


def fetch_log(cluster: Cluster, nid: str) -> dict:
    reply = request(cluster.ports[nid], {"op": "log", "from": 0, "limit": 100_000}, timeout=5)
    assert reply and reply["ok"]
    return reply


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(str(tmp_path), 3, election_ms=ELECTION_MS, heartbeat_ms=50)
    try:
        yield c
    finally:
        c.stop_all()


def test_leader_sigkill_failover_and_no_lost_writes(cluster: Cluster) -> None:
    cluster.start()
    first = cluster.wait_leader(timeout=10)
    st0 = cluster.status(first)
    assert st0 and st0["role"] == "leader" and st0["serving"]
    client = Client(cluster, "int")
    client.target = first
    acked: dict[str, int] = {}
    for i in range(60):
        client.op({"op": "write", "key": f"k{i % 20}", "value": i})
        acked[f"k{i % 20}"] = i
    client.op({"op": "add", "key": "set", "value": 1})
    # a stable leader: commits grow, Phase 1 does not run again
    st1 = cluster.status(first)
    assert st1["counters"]["phase1_rounds"] == st0["counters"]["phase1_rounds"]
    assert st1["counters"]["commits"] >= st0["counters"]["commits"] + 61
    assert st1["ballot"] == st0["ballot"]

    cluster.kill(first, signal.SIGKILL)
    killed_at = time.monotonic()
    rest = [i for i in cluster.ids if i != first]
    new = cluster.wait_leader(timeout=failover_bound_s(ELECTION_MS) + 5, among=rest)
    client.target = new
    client._drop_conn()
    client.op({"op": "write", "key": "after", "value": 1}, deadline_s=10)
    elapsed = time.monotonic() - killed_at
    assert elapsed < failover_bound_s(ELECTION_MS), f"failover took {elapsed:.2f}s"
    st_new = cluster.status(new)
    assert st_new["ballot"] > st0["ballot"]

    for i in range(60, 90):
        client.op({"op": "write", "key": f"k{i % 20}", "value": i})
        acked[f"k{i % 20}"] = i
    client.op({"op": "add", "key": "set", "value": 2})

    cluster.start(first)           # the old leader comes back with its log
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        sts = {i: cluster.status(i) for i in cluster.ids}
        if all(s is not None for s in sts.values()) and \
                len({s["applied"] for s in sts.values()}) == 1 and \
                len({s["digest"] for s in sts.values()}) == 1:
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"replicas did not converge: {sts}")
    assert sts[first]["role"] == "follower"

    reader = Client(cluster, "reader")
    reader.target = cluster.leader() or new
    for key, value in acked.items():
        assert reader.op({"op": "read", "key": key}) == {"id": reader.seq if False else
                                                         reader.conn.next_id, "ok": True,
                                                         "value": value}
    assert reader.op({"op": "read", "key": "set"})["value"] == [1, 2]

    logs = {i: fetch_log(cluster, i) for i in cluster.ids}
    slots: dict[int, str] = {}
    for log in logs.values():
        for e in log["entries"]:
            c = json.dumps(e["value"], sort_keys=True)
            assert slots.setdefault(e["slot"], c) == c
    ids = [(v["client"], v["seq"]) for v in (json.loads(c) for c in slots.values())
           if v.get("op") in ("write", "add")]
    assert len(ids) == len(set(ids)) == 93
    client.close()
    reader.close()
    # the restart was logged as a recovery
    assert "recovery: read" in cluster.log_text(first)


def test_no_quorum_gives_unavailable_or_indefinite_timeout(cluster: Cluster) -> None:
    cluster.start()
    ld = cluster.wait_leader(timeout=10)
    for i in cluster.ids:
        if i != ld:
            cluster.kill(i)
    conn = Conn(cluster.ports[ld], timeout=5)
    reply = conn.call({"client": "q", "seq": 1, "op": "write", "key": "k", "value": 1})
    assert reply["ok"] is False
    assert reply["code"] in (11, 30)
    assert reply["definite"] is (reply["code"] == 11)
    # the leader steps down when it hears from no majority
    deadline = time.monotonic() + 3 * ELECTION_MS / 1000 + 2
    while time.monotonic() < deadline:
        if cluster.status(ld)["role"] != "leader":
            break
        time.sleep(0.05)
    assert cluster.status(ld)["role"] != "leader"
    reply = conn.call({"client": "q", "seq": 2, "op": "read", "key": "k"})
    assert reply["code"] == 11 and reply["definite"] is True
    conn.close()
    assert "stepping down" in cluster.log_text(ld)


def test_client_port_fuzz(cluster: Cluster) -> None:
    cluster.start()
    ld = cluster.wait_leader(timeout=10)
    port = cluster.ports[ld]
    rng = random.Random(1234)
    payloads = [
        b"{not json\n",
        b"[1,2,3]\n",
        b"42\n",
        b'"str"\n',
        b"null\n",
        b'{"op": "explode", "id": 1}\n',
        b'{"op": "write", "key": "k"}\n',
        b'{"op": "write", "client": "c", "seq": 1, "key": "k"}\n',
        b'{"op": "cas", "client": "c", "seq": 1, "key": "k", "from": 1}\n',
        b'{"op": "read", "client": 5, "seq": 1, "key": "k"}\n',
        b'{"op": "read", "client": "c", "seq": "x", "key": "k"}\n',
        b'{"op": "read", "client": "c", "seq": 1, "key": {"a": 1}}\n',
        b'{"op": "add", "client": "c", "seq": 1, "key": "s", "value": [1]}\n',
        b'{"op": "log", "from": -1}\n',
        b"\xff\xfe\x00garbage\n",
        b"{" * 5000 + b"\n",
    ] + [rng.randbytes(rng.randrange(1, 300)).replace(b"\n", b"") + b"\n" for _ in range(40)]
    conn = Conn(port)
    for p in payloads:
        conn.send_raw(p)
        reply = conn.recv()
        assert reply is not None, p
        assert reply["ok"] is False and reply["code"] == 12 and reply["definite"] is True, p
    # the same connection still works for a well-formed request
    ok = conn.call({"client": "fz", "seq": 1, "op": "write", "key": "k", "value": 7})
    assert ok["ok"] is True
    # random bytes without newlines, then close: the node shrugs
    for _ in range(10):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(rng.randbytes(rng.randrange(1, 5000)))
        s.close()
    # an oversized line is refused with 12 and the connection closed
    big = Conn(port, timeout=10)
    big.send_raw(b'{"op":"write","value":"' + b"x" * (1 << 20) + b'"}\n')
    reply = big.recv()
    assert reply is not None and reply["code"] == 12
    assert big.recv() is None
    big.close()
    # garbage on an authenticated peer connection is logged and ignored
    other = next(i for i in cluster.ids if i != ld)
    peer = peer_link(port, other, ld, cluster_secret(cluster))
    assert peer is not None
    peer.sendall(b"nonsense\n" + json.dumps({"type": "accept", "from": other, "to": ld,
                                             "ballot": "x"}).encode() + b"\n")
    peer.close()
    # everyone else is still served
    again = conn.call({"client": "fz", "seq": 2, "op": "read", "key": "k"})
    assert again == {"id": conn.next_id, "ok": True, "value": 7}
    conn.close()
    deadline = time.monotonic() + 3
    while "dropped malformed" not in cluster.log_text(ld) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "dropped malformed" in cluster.log_text(ld)


def run_node(args: list[str], timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "node", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("args", [
    [],
    ["--id", "n1", "--listen", "127.0.0.1:1"],
    ["--id", "n1", "--listen", "nope", "--data-dir", "d"],
    ["--id", "n1", "--listen", "127.0.0.1:99999", "--data-dir", "d"],
    ["--id", "n1", "--listen", "127.0.0.1:7000", "--data-dir", "d", "--peer", "n2"],
    ["--id", "n1", "--listen", "127.0.0.1:7000", "--data-dir", "d", "--peer", "n1=h:1"],
    ["--id", "n1", "--listen", "127.0.0.1:7000", "--data-dir", "d", "--peer", "n2=h:1",
     "--peer", "n2=h:2"],
    ["--id", "n1", "--listen", "127.0.0.1:7000", "--data-dir", "d", "--heartbeat-ms", "500"],
    ["--id", "n1", "--listen", "127.0.0.1:7000", "--data-dir", "d", "--bug", "no-such-bug"],
    ["--id", "n1", "--listen", "127.0.0.1:7000", "--data-dir", "d", "--snapshot-every", "0"],
    ["--id", "n1", "--listen", "127.0.0.1:7000", "--data-dir", "d", "--bogus"],
])
def test_bad_arguments_exit_2_with_one_line(args: list[str]) -> None:
    r = run_node(args)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "error" in r.stderr


def test_help_documents_every_option_and_bug() -> None:
    r = run_node(["--help"])
    assert r.returncode == 0
    for opt in ("--id", "--listen", "--peer", "--data-dir", "--election-timeout-ms",
                "--heartbeat-ms", "--request-timeout-ms", "--snapshot-every", "--bug",
                "--classic", "--seed"):
        assert opt in r.stdout
    for bug in BUGS:
        assert bug in r.stdout


def test_sigterm_is_a_clean_exit_and_state_survives(tmp_path) -> None:
    c = Cluster(str(tmp_path), 1)
    try:
        c.start()
        c.wait_leader(timeout=10)
        conn = Conn(c.ports["n1"])
        assert conn.call({"client": "a", "seq": 1, "op": "write", "key": "k", "value": 3})["ok"]
        conn.close()
        c.kill("n1", signal.SIGTERM)
        assert c.procs["n1"].returncode == 0
        assert "stopped" in c.log_text("n1")
        c.start("n1")
        c.wait_leader(timeout=10)
        conn = Conn(c.ports["n1"])
        assert conn.call({"client": "a", "seq": 2, "op": "read", "key": "k"})["value"] == 3
        conn.close()
    finally:
        c.stop_all()


def test_corrupt_log_stops_the_node_with_a_clear_message(tmp_path) -> None:
    d = tmp_path / "n1"
    d.mkdir()
    recs = [encode_record({"t": "chosen", "e": [[i, {"op": "noop"}]]}) for i in range(3)]
    bad = bytearray(recs[1])
    bad[-2] ^= 0x55
    (d / "wal.log").write_bytes(MAGIC + recs[0] + bytes(bad) + recs[2])
    port = free_ports(1)[0]
    r = run_node(["--id", "n1", "--listen", f"127.0.0.1:{port}", "--data-dir", str(d)])
    assert r.returncode == 1
    assert "FATAL" in r.stderr and "corrupt in the middle" in r.stderr
    assert os.path.getsize(d / "wal.log") == len(MAGIC) + sum(len(x) for x in recs)


def test_data_directory_lock(tmp_path) -> None:
    c = Cluster(str(tmp_path), 1)
    try:
        c.start()
        port = free_ports(1)[0]
        r = run_node(["--id", "n1", "--listen", f"127.0.0.1:{port}", "--data-dir",
                      os.path.join(str(tmp_path), "n1")])
        assert r.returncode == 1 and "in use" in r.stderr
    finally:
        c.stop_all()


def test_restarted_follower_catches_up_from_a_snapshot(tmp_path) -> None:
    c = Cluster(str(tmp_path), 3, common=["--snapshot-every", "20"])
    try:
        c.start()
        ld = c.wait_leader(timeout=10)
        lag = next(i for i in c.ids if i != ld)
        c.kill(lag)
        client = Client(c, "snap")
        client.target = ld
        for i in range(120):
            client.op({"op": "write", "key": f"k{i % 7}", "value": i})
        st = c.status(ld)
        assert st["first"] > 60      # the leader compacted its log
        c.start(lag)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            s = c.status(lag)
            if s and s["applied"] == c.status(ld)["applied"]:
                break
            time.sleep(0.05)
        assert s["digest"] == c.status(ld)["digest"]
        assert "installed snapshot" in c.log_text(lag)
        # The snapshot is applied, then written by the disk worker: give the write its moment.
        snapshot = os.path.join(str(tmp_path), lag, "snapshot.bin")
        deadline = time.monotonic() + 5
        while not os.path.exists(snapshot) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert os.path.exists(snapshot)
        log = fetch_log(c, lag)
        assert log["first"] == s["first"] and all(e["slot"] >= log["first"]
                                                  for e in log["entries"])
        # and it restarts from its own snapshot + log
        c.kill(lag, signal.SIGTERM)
        c.start(lag)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            s2 = c.status(lag)
            if s2 and s2["applied"] >= s["applied"]:
                break
            time.sleep(0.05)
        assert s2["digest"] == c.status(ld)["digest"]
        client.close()
    finally:
        c.stop_all()


@pytest.mark.parametrize("bug", [None, "reply-before-fsync"])
def test_reply_before_fsync_loses_acknowledged_writes_on_sigkill(tmp_path, bug) -> None:
    c = Cluster(str(tmp_path), 1, extra={"n1": ["--bug", bug] if bug else []})
    try:
        c.start()
        c.wait_leader(timeout=10)
        assert c.status("n1")["bugs"] == ([bug] if bug else [])
        conn = Conn(c.ports["n1"])
        assert conn.call({"client": "a", "seq": 1, "op": "write", "key": "k", "value": 1})["ok"]
        conn.close()
        c.kill("n1", signal.SIGKILL)     # well within the buggy 1 s flush interval
        c.start("n1")
        c.wait_leader(timeout=10)
        conn = Conn(c.ports["n1"])
        got = conn.call({"client": "a", "seq": 2, "op": "read", "key": "k"})
        conn.close()
        if bug:
            assert got["ok"] is False and got["code"] == 20      # the acknowledged write is gone
            assert "injected bugs: reply-before-fsync" in c.log_text("n1")
        else:
            assert got["value"] == 1
    finally:
        c.stop_all()


def test_no_election_jitter_leaves_the_cluster_without_a_leader(tmp_path) -> None:
    c = Cluster(str(tmp_path), 3, common=["--bug", "no-election-jitter"])
    try:
        c.start()
        ld = c.wait_leader(timeout=10)   # processes start at different times: this works
        time.sleep(0.2)
        c.kill(ld)
        rest = [i for i in c.ids if i != ld]
        # a correct cluster recovers within failover_bound_s(300) = 2.5 s
        with pytest.raises(TimeoutError):
            c.wait_leader(timeout=2 * failover_bound_s(300), among=rest)
        assert all(c.status(i)["role"] == "candidate" for i in rest)
    finally:
        c.stop_all()


def test_port_in_use_is_a_startup_failure(tmp_path) -> None:
    c = Cluster(str(tmp_path), 1)
    try:
        c.start()
        r = run_node(["--id", "n9", "--listen", f"127.0.0.1:{c.ports['n1']}", "--data-dir",
                      os.path.join(str(tmp_path), "other")])
        assert r.returncode == 1 and "cannot listen" in r.stderr
    finally:
        c.stop_all()
