"""etcd (Raft) as a system, from Debian's `etcd-server` package: a real consensus system nobody
here wrote.

Members: `etcd` with one client and one peer port each; a restart on the same data directory
resumes (etcd then ignores the --initial-* flags). The client speaks the v3 JSON gateway
(`/v3/kv/range`, `/v3/kv/put`, `/v3/kv/txn`; keys and values base64) with the standard library's
http.client on a keep-alive connection per worker and member, in a thread of its own so the
event loop never blocks. Reads are linearizable unless the run asks for serializable ones (local
state of the member asked: stale by design, which the checker must catch).

What a reply means (measured against etcd 3.4.23 here):
- connection refused: definitely not done;
- a read that failed (no leader: 503 / gRPC 14): did nothing;
- a write or cas that failed (500 / 2 "context deadline exceeded" with no leader, 503 / 14
  "request timed out" or "leader changed"), a timeout, or a connection lost after sending: may
  have happened. etcd does not de-duplicate retries, so such an operation is never retried;
- a txn whose compare failed: ran and changed nothing (a definite fail).

Capabilities: leader (`/v3/maintenance/status`), counters (`/metrics`: leader changes seen and
proposals committed), durable (etcd fsyncs its WAL before it acknowledges). etcd serves no
chosen log of its commands, so the agreement and exactly-once checkers do not apply, and it has
no bug catalogue.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import hashlib
import http.client
import json
import shutil
from typing import Any

from harness.systems.base import Member, NotSent, Outcome, System

PEER = "peer"  # the name of the second port each member needs
REQUEST_TIMEOUT_S = 5.0


def _b64(value: Any) -> str:
    return base64.b64encode(str(value).encode()).decode()


def _decode_value(text: str) -> Any:
    raw = base64.b64decode(text).decode()
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _post(conn: http.client.HTTPConnection, path: str, body: dict[str, Any],
          timeout: float) -> tuple[int, dict[str, Any]]:
    """One request on a kept-alive connection. Raises NotSent when connecting failed,
    TimeoutError past `timeout`, OSError when the connection was lost after sending."""
    if conn.sock is None:
        conn.timeout = timeout
        try:
            conn.connect()
        except (TimeoutError, OSError) as exc:
            conn.close()
            raise NotSent(f"cannot connect to {conn.host}:{conn.port}: {exc}") from None
    conn.sock.settimeout(timeout)
    try:
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        response = conn.getresponse()
        data = response.read()
    except TimeoutError:
        conn.close()
        raise TimeoutError from None
    except (OSError, http.client.HTTPException) as exc:
        conn.close()
        raise ConnectionResetError(str(exc) or type(exc).__name__) from None
    try:
        return response.status, json.loads(data or b"{}")
    except ValueError:
        conn.close()
        raise ConnectionResetError("a reply that is not JSON") from None


class EtcdClient:
    """One worker's connection to one member."""

    def __init__(self, address: tuple[str, int], serializable: bool) -> None:
        self.conn = http.client.HTTPConnection(*address, timeout=REQUEST_TIMEOUT_S)
        self.serializable = serializable
        # One thread per connection: http.client blocks, and the event loop must not.
        self.thread: concurrent.futures.ThreadPoolExecutor | None = None

    async def invoke(self, op: dict[str, Any], client: str, seq: int,
                     timeout: float) -> Outcome:
        f, key = op["f"], op["key"]
        if f == "read":
            path, body = "/v3/kv/range", {"key": _b64(key)}
            if self.serializable:
                body["serializable"] = True
        elif f == "write":
            path, body = "/v3/kv/put", {"key": _b64(key), "value": _b64(op["value"])}
        elif f == "cas":
            old, new = op["value"]
            compare = ({"key": _b64(key), "target": "VERSION", "result": "EQUAL",
                        "version": "0"} if old is None else
                       {"key": _b64(key), "target": "VALUE", "result": "EQUAL",
                        "value": _b64(old)})
            path, body = "/v3/kv/txn", {"compare": [compare], "success": [
                {"requestPut": {"key": _b64(key), "value": _b64(new)}}]}
        else:
            raise ValueError(f"etcd has no operation {f!r}")
        loop = asyncio.get_running_loop()
        if self.thread is None:  # (again, after close: a closed client may be used again)
            self.thread = concurrent.futures.ThreadPoolExecutor(max_workers=1,
                                                                thread_name_prefix="etcd")
        status, reply = await asyncio.wait_for(
            loop.run_in_executor(self.thread, _post, self.conn, path, body, timeout), timeout)
        if status != 200:
            error = str(reply.get("message") or reply.get("error") or f"http {status}")
            if f == "read":
                return Outcome("fail", None, error)  # a read did nothing
            return Outcome("info", op["value"], error)
        if f == "read":
            kvs = reply.get("kvs") or []
            return Outcome("ok", _decode_value(kvs[0]["value"]) if kvs else None)
        if f == "cas" and not reply.get("succeeded"):
            return Outcome("fail", op["value"], "precondition-failed", compare_failed=True)
        return Outcome("ok", op["value"])

    def close(self) -> None:
        self.conn.close()
        if self.thread is not None:
            self.thread.shutdown(wait=False)
            self.thread = None


def _metrics(text: str) -> dict[str, int]:
    wanted = {"etcd_server_leader_changes_seen_total": "elections",
              "etcd_server_proposals_committed_total": "commits",
              "etcd_server_proposals_failed_total": "proposals_failed"}
    out = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in wanted:
            try:
                out[wanted[name]] = int(float(value))
            except ValueError:
                pass
    return out


def _status_of(address: tuple[str, int], timeout: float,
               names: dict[str, str]) -> dict[str, Any] | None:
    """`names`: member ids to names, filled from the member list the first time an id is new
    (the members never change during a run)."""
    conn = http.client.HTTPConnection(*address, timeout=timeout)
    try:
        status, reply = _post(conn, "/v3/maintenance/status", {}, timeout)
        if status != 200:
            return None
        ids = {(reply.get("header") or {}).get("member_id"), reply.get("leader")} - {None, "0"}
        if not ids <= names.keys():
            _, members = _post(conn, "/v3/cluster/member/list", {}, timeout)
            names.update({m.get("ID"): m.get("name") for m in members.get("members") or []})
        conn.request("GET", "/metrics")
        metrics = conn.getresponse().read().decode(errors="replace")
    except (OSError, http.client.HTTPException, ValueError):
        return None
    finally:
        conn.close()
    me = (reply.get("header") or {}).get("member_id")
    leader = reply.get("leader")
    return {"id": names.get(me), "role": "leader" if leader and leader == me else "follower",
            "leader": names.get(leader) if leader and leader != "0" else None,
            "term": int(reply.get("raftTerm") or 0),
            "applied": int(reply.get("raftAppliedIndex") or 0),
            "counters": _metrics(metrics), "version": reply.get("version")}


class EtcdSystem(System):
    def __init__(self, serializable_reads: bool = False) -> None:
        super().__init__("etcd", frozenset({"leader", "counters", "durable"}))
        self.serializable_reads = serializable_reads
        self.names: dict[str, str] = {}  # member ids (decimal) to names, learned from a member
        self.extra_ports = (PEER,)
        self.workloads = ("register",)
        self.fsync_shim = False
        self.graceful_stop = False
        self.process_pattern = "(^|/)etcd( |$)"
        self.sender_header = "X-Server-From"

    def command(self, member: Member, extra: list[str]) -> list[str]:
        host, port = member.listen
        peer_host, peer_port = member.ports[PEER]
        advertised = member.advertised or {member.node: (peer_host, peer_port)}
        cluster = ",".join(f"{n}=http://{h}:{p}" for n, (h, p) in sorted(advertised.items()))
        mine = advertised.get(member.node, (peer_host, peer_port))
        # The controller's own etcd on the local backend; elsewhere the host's (the image's).
        program = (shutil.which("etcd") or "etcd") if member.python.startswith("/") else "etcd"
        return [program, "--name", member.node,
                "--data-dir", member.data_dir,
                "--listen-peer-urls", f"http://{peer_host}:{peer_port}",
                "--initial-advertise-peer-urls", f"http://{mine[0]}:{mine[1]}",
                "--listen-client-urls", f"http://{host}:{port}",
                "--advertise-client-urls", f"http://{host}:{port}",
                "--initial-cluster", cluster, "--initial-cluster-state", "new",
                "--initial-cluster-token", member.cluster_token or "paxos-harness",
                # A healed member must not force an election with the term it inflated alone.
                "--pre-vote", *extra]

    def route_names(self, advertised: dict[str, tuple[str, int]],
                    token: str) -> dict[str, str]:
        # A member's id is the first 8 bytes of SHA-1 over its peer URLs and the cluster token
        # (etcd's membership.NewMember for an initial cluster), printed in hex in the
        # X-Server-From header of every peer request.
        out = {}
        for node, (host, port) in advertised.items():
            digest = hashlib.sha1(f"http://{host}:{port}{token}".encode()).digest()
            out[format(int.from_bytes(digest[:8], "big"), "x")] = node
        return out

    def member_args(self, config: Any, node: str) -> list[str]:
        return ["--heartbeat-interval", str(config.heartbeat_ms),
                "--election-timeout", str(config.election_timeout_ms), *config.node_args]

    def client(self, address: tuple[str, int]) -> EtcdClient:
        return EtcdClient(address, self.serializable_reads)

    async def status(self, address: tuple[str, int], timeout: float) -> dict[str, Any] | None:
        return await asyncio.to_thread(_status_of, address, timeout, self.names)

    def leader_of(self, statuses: dict[str, dict[str, Any] | None]) -> str | None:
        best: tuple[int, str] | None = None
        for node, status in statuses.items():
            if status and status.get("role") == "leader":
                if best is None or status["term"] > best[0]:
                    best = (status["term"], node)
        return best[1] if best else None

    def serving(self, statuses: dict[str, dict[str, Any] | None]) -> str | None:
        return self.leader_of(statuses)
