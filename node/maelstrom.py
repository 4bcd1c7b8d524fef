"""The Maelstrom driver: the same sans-IO core and write-ahead log behind Maelstrom's stdio.

`python -m node --maelstrom [--data-dir DIR] [timing options]` reads Maelstrom messages on stdin
and writes them on stdout (jepsen-io/maelstrom doc/protocol.md), so the node runs in Maelstrom
itself (`maelstrom test -w lin-kv --bin ...`) and under the harness's `--system maelstrom`.

- `init` gives the node its id and its peers; it answers `init_ok` once its log is recovered
  (a restart after a crash recovers from the data directory, `./paxos-data-<id>` by default).
- Peer messages are the core's own, carried as bodies `{"type": "paxos", "m": ...}`.
- `read`, `write`, `cas` (lin-kv) are the core's commands, with the client's `src` and
  `msg_id` as its session and sequence number; replies are `read_ok` / `write_ok` / `cas_ok` or
  Maelstrom errors: 11 (not the leader: definite), 20, 22, 12, and 0 (timeout: indefinite).

Everything else (batching, fsync before the messages that depend on it, ticks) is
node.server's: this module only replaces the sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from typing import Any

from node import protocol
from node.cli import Options
from node.server import NodeServer, Pending

MAX_LINE = 1 << 20
OPS = {"read": "read", "write": "write", "cas": "cas"}
# Our wire codes to Maelstrom's (doc/protocol.md): our 30 is an indefinite timeout, which is
# Maelstrom's 0 (its 30 is a definite txn-conflict).
CODES = {protocol.UNAVAILABLE: 11, protocol.MALFORMED: 12, protocol.KEY_DOES_NOT_EXIST: 20,
         protocol.PRECONDITION_FAILED: 22, protocol.TIMEOUT: 0}

_encode = json.JSONEncoder(separators=(",", ":")).encode


class Stdout:
    """Where messages leave: one line each on stdout, flushed once per event-loop pass."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self.scheduled = False

    def send(self, src: str, dest: str, body: dict[str, Any]) -> None:
        self.lines.append(_encode({"src": src, "dest": dest, "body": body}).encode() + b"\n")
        if not self.scheduled and self.loop is not None:
            self.scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        self.scheduled = False
        if self.lines:
            view, self.lines = memoryview(b"".join(self.lines)), []
            while view:  # blocking: a reader that stalls stalls us, as Maelstrom's stdout would
                view = view[os.write(sys.stdout.fileno(), view):]


class Client:
    """A Maelstrom client as the server's connection: replies become Maelstrom bodies."""

    __slots__ = ("server", "src", "op", "pending", "closed")

    def __init__(self, server: MaelstromNode, src: str, op: str) -> None:
        self.server, self.src, self.op = server, src, op
        self.pending: set[Pending] = set()
        self.closed = False

    def send(self, reply: dict[str, Any]) -> None:
        rid = reply.get("id")
        if reply.get("ok"):
            body = {"type": f"{self.op}_ok", "in_reply_to": rid}
            if self.op == "read":
                body["value"] = reply.get("value")
        else:
            code = reply.get("code")
            text = reply.get("message") or reply.get("error") or "error"
            if code == protocol.UNAVAILABLE and reply.get("leader"):
                text = f"{text}: the leader is {reply['leader']}"
            mapped = CODES.get(code, 14 if reply.get("definite") else 13)
            body = {"type": "error", "in_reply_to": rid, "code": mapped, "text": str(text)}
        self.server.out.send(self.server.opts.id, self.src, body)


class MaelstromNode(NodeServer):
    def __init__(self, opts: Options) -> None:
        super().__init__(opts)
        self.out = Stdout()

    async def serve(self) -> int:  # type: ignore[override]
        raise NotImplementedError("run() serves a Maelstrom node")

    def _send_peer(self, m: dict[str, Any]) -> None:
        self.out.send(self.opts.id, m["to"], {"type": "paxos", "m": m})

    def on_message(self, msg: dict[str, Any]) -> None:
        body = msg["body"]
        kind = body.get("type")
        if kind == "paxos" and isinstance(body.get("m"), dict):
            self.on_peer_line(msg["src"], _encode(body["m"]).encode())
            return
        if kind not in OPS or self.core is None or self.loop is None:
            if "msg_id" in body:
                self.out.send(self.opts.id, msg["src"], {
                    "type": "error", "in_reply_to": body["msg_id"], "code": 10,
                    "text": f"unsupported message type {kind!r}"})
            return
        request = {"op": OPS[kind], "key": body.get("key"), "client": msg["src"],
                   "seq": body.get("msg_id")}
        if kind == "write":
            request["value"] = body.get("value")
        elif kind == "cas":
            request["from"], request["to"] = body.get("from"), body.get("to")
        client = Client(self, msg["src"], kind)
        try:
            cmd = protocol.parse_request(request)
        except protocol.MalformedRequest as exc:
            client.send({"id": body.get("msg_id"), **protocol.error(protocol.MALFORMED,
                                                                    str(exc))})
            return
        self.submit(client, body.get("msg_id"), cmd)

    async def run(self, reader: asyncio.StreamReader) -> int:
        loop = asyncio.get_running_loop()
        self.loop = self.out.loop = loop
        self.stopping = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        self.log(f"Maelstrom node; peers {', '.join(self.opts.peers) or 'none'}; data in "
                 f"{self.opts.data_dir}")
        self.tasks.append(asyncio.create_task(self._tick_loop()))
        self.tasks.append(asyncio.create_task(self._flusher()))
        reading = asyncio.create_task(read_messages(reader, self.on_message))
        stop = asyncio.create_task(self.stopping.wait())
        await asyncio.wait({reading, stop}, return_when=asyncio.FIRST_COMPLETED)
        self.dead = True
        for t in (*self.tasks, reading, stop):
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.io.shutdown(wait=True)
        self._flush_pending(sync=True)
        self.wal.close()
        self.out.flush()
        self.log("stopped")
        return self.exit_code


async def read_messages(reader: asyncio.StreamReader, handle: Any) -> None:
    while True:
        try:
            line = await reader.readline()
        except (ValueError, asyncio.LimitOverrunError):
            print("maelstrom: an input line over 1 MiB; stopping", file=sys.stderr)
            return
        if not line:
            return
        try:
            msg = json.loads(line)
        except (ValueError, UnicodeDecodeError, RecursionError):
            print(f"maelstrom: dropped an input line that is not JSON: {line[:80]!r}",
                  file=sys.stderr)
            continue
        if isinstance(msg, dict) and isinstance(msg.get("src"), str) and \
                isinstance(msg.get("body"), dict):
            handle(msg)


async def _stdin() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_LINE)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def _wait_init(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    """The init message (any other message before it has nobody to serve it)."""
    found: list[dict[str, Any]] = []

    def take(msg: dict[str, Any]) -> None:
        if msg["body"].get("type") == "init" and not found:
            found.append(msg)
            raise _Found

    with contextlib.suppress(_Found):
        await read_messages(reader, take)
    return found[0] if found else None


class _Found(Exception):
    pass


async def serve(template: Options) -> int:
    reader = await _stdin()
    init = await _wait_init(reader)
    if init is None:
        print("maelstrom: stdin closed before init", file=sys.stderr)
        return 1
    body = init["body"]
    me, ids = body.get("node_id"), body.get("node_ids")
    if not isinstance(me, str) or not isinstance(ids, list) or me not in ids:
        print(f"maelstrom: an init without a node_id among its node_ids: {body}",
              file=sys.stderr)
        return 1
    data_dir = template.data_dir or f"paxos-data-{me}"
    opts = Options(**{**template.__dict__, "id": me, "data_dir": data_dir,
                      "peers": {p: ("", 0) for p in ids if p != me}})
    node = MaelstromNode(opts)
    try:
        node.recover()
    except (RuntimeError, ValueError, OSError) as exc:
        node.log(f"FATAL: cannot start: {exc}")
        return 1
    node.out.send(me, init["src"], {"type": "init_ok", "in_reply_to": body.get("msg_id")})
    node.out.flush()
    return await node.run(reader)


def main(opts: Options) -> int:
    try:
        return asyncio.run(serve(opts))
    except KeyboardInterrupt:
        return 0
