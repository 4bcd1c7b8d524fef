"""Talking to a node: newline-delimited JSON over TCP (DESIGN.md wire protocol)."""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

_MAX_LINE = 16 * 1024 * 1024


class NotSent(OSError):
    """The request never left: connecting failed. The operation definitely did not happen."""


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
