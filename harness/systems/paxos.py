"""The bundled Multi-Paxos node as a system: its command line, its wire protocol
(newline-delimited JSON over TCP, DESIGN.md), its status and chosen log.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path
from typing import Any

from harness.systems.base import Member, NotSent, Outcome, System

_MAX_LINE = 16 * 1024 * 1024
LOG_PAGE = 2000
REPO_ROOT = Path(__file__).resolve().parents[2]

# Error codes of the wire protocol (DESIGN.md).
UNAVAILABLE, MALFORMED, NO_KEY, PRECONDITION, TIMEOUT = 11, 12, 20, 22, 30

__all__ = ["NodeConnection", "NotSent", "PaxosSystem", "one_request", "statuses"]


class NodeConnection:
    """One connection to one node, one request at a time. Any error closes it; the next
    request reconnects, so a late reply to a timed-out request is never taken for a new one."""

    _ids = itertools.count(1)

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _connect(self, timeout: float) -> None:
        self.reader, self.writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port, limit=_MAX_LINE), timeout
        )

    async def request(self, message: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send and await the reply. Raises NotSent (nothing sent), OSError (connection lost
        after sending), asyncio.TimeoutError or ValueError (unparseable reply)."""
        try:
            return await asyncio.wait_for(self._request(message, timeout), timeout)
        except BaseException:
            self.close()
            raise

    async def _request(self, message: dict[str, Any], timeout: float) -> dict[str, Any]:
        if self.writer is None:
            try:
                await self._connect(timeout)
            except (TimeoutError, OSError) as exc:
                raise NotSent(f"cannot connect to {self.host}:{self.port}: {exc}") from None
        assert self.reader is not None and self.writer is not None
        request_id = next(self._ids)
        self.writer.write(json.dumps({**message, "id": request_id}).encode() + b"\n")
        await self.writer.drain()
        while True:
            line = await self.reader.readline()
            if not line:
                raise ConnectionResetError("connection closed by the node")
            reply = json.loads(line)
            # A status reply's "id" is the node's id; it echoes the request's as "request_id".
            if reply.get("request_id", reply.get("id")) == request_id:
                return reply

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def one_request(address: tuple[str, int], message: dict[str, Any],
                      timeout: float = 1.0) -> dict[str, Any] | None:
    """One request on a fresh connection; None when the node does not answer."""
    conn = NodeConnection(*address)
    try:
        return await conn.request(message, timeout)
    except (TimeoutError, OSError, ValueError):
        return None
    finally:
        conn.close()


async def statuses(addresses: dict[str, tuple[str, int]],
                   timeout: float = 0.5) -> dict[str, dict[str, Any] | None]:
    """Every node's `status` reply, None for a node that does not answer."""
    replies = await asyncio.gather(*(one_request(a, {"op": "status"}, timeout)
                                     for a in addresses.values()))
    return dict(zip(addresses, replies, strict=True))


# -- the system ------------------------------------------------------------------------------


def wire_request(op: dict[str, Any]) -> dict[str, Any]:
    """The node's request for an operation (without id, client and seq)."""
    f = op["f"]
    if f == "cas":
        return {"op": "cas", "key": op["key"], "from": op["value"][0], "to": op["value"][1]}
    return {"op": f, "key": op["key"], "value": op["value"]}


def outcome_of(op: dict[str, Any], reply: dict[str, Any]) -> Outcome:
    """A node's reply as an outcome. The invoked value is kept unless the reply says what was
    read."""
    if reply.get("ok"):
        return Outcome("ok", reply.get("value") if op["f"] == "read" else op["value"])
    code, error = reply.get("code"), reply.get("error") or "error"
    if code == TIMEOUT:
        # Proposed, fate unknown: the same (client, seq) elsewhere is safe to retry, the
        # session table applies it at most once.
        return Outcome("retry", op["value"], error)
    if code == UNAVAILABLE:
        return Outcome("unavailable", op["value"], error, reply.get("leader"))
    if op["f"] == "read":
        if code == NO_KEY:
            return Outcome("ok", None)
        # A read has no effect: whatever went wrong, it did not happen.
        return Outcome("fail", None, error)
    if op["f"] == "cas" and code in (NO_KEY, PRECONDITION):
        return Outcome("fail", op["value"], error, compare_failed=True)
    if reply.get("definite") or code in (MALFORMED, NO_KEY, PRECONDITION):
        return Outcome("fail", op["value"], error)
    return Outcome("info", op["value"], error)


class PaxosClient:
    """One worker's connection to one node."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.conn = NodeConnection(*address)

    async def invoke(self, op: dict[str, Any], client: str, seq: int,
                     timeout: float) -> Outcome:
        reply = await self.conn.request({**wire_request(op), "client": client, "seq": seq},
                                        timeout)
        return outcome_of(op, reply)

    def close(self) -> None:
        self.conn.close()


class PaxosSystem(System):
    """`python -m node`: the bundled Multi-Paxos key-value node."""

    def __init__(self) -> None:
        super().__init__("paxos", frozenset({"leader", "log", "counters", "durable", "bugs"}))
        self.deduplicates = True
        self.peer_framing = "lines"

    def code(self) -> Path:
        return REPO_ROOT / "node"

    def command(self, member: Member, extra: list[str]) -> list[str]:
        host, port = member.listen
        argv = [member.python, "-m", "node", "--id", member.node, "--listen", f"{host}:{port}",
                "--data-dir", member.data_dir]
        if member.secret_file:
            argv += ["--secret-file", member.secret_file]
        for peer, (phost, pport) in member.peers.items():
            argv += ["--peer", f"{peer}={phost}:{pport}"]
        return argv + list(extra)

    def member_args(self, config: Any, node: str) -> list[str]:
        args = ["--election-timeout-ms", str(config.election_timeout_ms),
                "--heartbeat-ms", str(config.heartbeat_ms),
                "--snapshot-every", str(config.snapshot_every)]
        if config.bugs and (not config.bug_nodes or node in config.bug_nodes):
            for bug in config.bugs:
                args += ["--bug", bug]
        return args + list(config.node_args)

    def client(self, address: tuple[str, int]) -> PaxosClient:
        return PaxosClient(address)

    async def status(self, address: tuple[str, int], timeout: float) -> dict[str, Any] | None:
        return await one_request(address, {"op": "status"}, timeout)

    def leader_of(self, statuses: dict[str, dict[str, Any] | None]) -> str | None:
        best: tuple[Any, str] | None = None
        for node, status in statuses.items():
            if status and status.get("role") == "leader":
                ballot = tuple(status.get("ballot") or (0, ""))
                if best is None or ballot > best[0]:
                    best = (ballot, node)
        return best[1] if best else None

    def serving(self, statuses: dict[str, dict[str, Any] | None]) -> str | None:
        for node, status in statuses.items():
            if status and status.get("role") == "leader" and status.get("serving", True):
                return node
        return None

    async def fetch_log(self, address: tuple[str, int], start: int = 0,
                        timeout: float = 5.0) -> dict[str, Any] | None:
        entries: list[dict] = []
        first = None
        while True:
            reply = await one_request(address, {"op": "log", "from": start, "limit": LOG_PAGE},
                                      timeout)
            if not reply or not reply.get("ok"):
                return None
            if first is None:
                first = reply.get("first", 0)
            page = reply.get("entries") or []
            entries.extend(page)
            if len(page) < LOG_PAGE:
                return {"first": first, "entries": entries}
            start = page[-1]["slot"] + 1
