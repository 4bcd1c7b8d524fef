"""The asyncio driver: sockets, timers and the disk around the sans-IO core.

One event loop owns the Replica. Inputs (peer messages, client requests, ticks) are fed to it as
they arrive; a single "ready loop" then carries out its Ready batches in order: send the early
messages, persist the records (write + fdatasync in a worker thread, so the loop keeps taking
input, which becomes the next batch: group commit), then send the messages and replies that
depend on those records, then advance.

Connections: every node listens on one port for clients, admin tools and peers. A node sends to
a peer over its own outbound connection, dialled at the address given with --peer (possibly a
proxy) and opened with a hello line naming the sender; it receives from that peer on the
peer's outbound connection. A connection whose first line is not a hello is a client.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fcntl
import json
import logging
import math
import os
import random
import signal
import socket
import sys
import time
import traceback
from typing import Any

from node import protocol
from node.cli import Options, parse_args
from node.core import Config, Ready, Replica, fmt_ballot
from node.wal import WAL, WalCorruption, encode_record, read_snapshot, write_snapshot

log = logging.getLogger("node")

PEER_LINE_LIMIT = 256 << 20      # snapshots travel as one line
PEER_BUFFER_LIMIT = 8 << 20      # bytes buffered for a peer that does not read
CLIENT_BUFFER_LIMIT = 16 << 20   # a client that does not read its replies is dropped
BUGGY_FLUSH_S = 1.0              # reply-before-fsync: how long writes sit in the process
LAZY_FLUSH_S = 0.2               # how long re-learnable records may sit in the process


class LineTooLong(Exception):
    pass


class LineReader:
    """Newline-delimited reading with a per-connection line limit (StreamReader's limit is fixed
    at connection time, but peers and clients share the port and need different limits)."""

    def __init__(self, reader: asyncio.StreamReader, limit: int) -> None:
        self.reader = reader
        self.limit = limit
        self.buf = bytearray()
        self.scan_from = 0

    async def readline(self) -> bytes | None:
        while True:
            i = self.buf.find(b"\n", self.scan_from)
            if i > self.limit:
                raise LineTooLong()
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[:i + 1]
                self.scan_from = 0
                return line
            self.scan_from = len(self.buf)
            if len(self.buf) > self.limit:
                raise LineTooLong()
            chunk = await self.reader.read(1 << 16)
            if not chunk:
                return None
            self.buf += chunk


class ClientConn:
    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.pending: set[Pending] = set()
        self.closed = False

    def send(self, obj: dict[str, Any]) -> None:
        if self.closed:
            return
        if self.writer.transport.is_closing():
            self.close()
            return
        try:
            self.writer.write(protocol.encode(obj))
            if self.writer.transport.get_write_buffer_size() > CLIENT_BUFFER_LIMIT:
                self.close()
        except (ConnectionError, RuntimeError):
            self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(Exception):
                self.writer.close()


class Pending:
    """A client request waiting for its reply; the core's token for it."""

    __slots__ = ("conn", "rid", "timer", "done")

    def __init__(self, conn: ClientConn, rid: Any) -> None:
        self.conn = conn
        self.rid = rid
        self.timer: asyncio.TimerHandle | None = None
        self.done = False

    def reply(self, body: dict[str, Any]) -> None:
        if self.done:
            return
        self.done = True
        if self.timer is not None:
            self.timer.cancel()
        self.conn.pending.discard(self)
        self.conn.send({"id": self.rid, **body})


class PeerLink:
    """Our outbound connection to one peer: reconnects forever, introduces us with a hello line,
    and writes messages straight to the socket. While the peer is unreachable (or not reading)
    messages are dropped: Paxos re-sends whatever still matters."""

    def __init__(self, server: NodeServer, peer_id: str, addr: tuple[str, int]) -> None:
        self.server = server
        self.peer_id = peer_id
        self.addr = addr
        self.writer: asyncio.StreamWriter | None = None
        self.connected = False
        self.dropped = 0
        self.task: asyncio.Task[None] | None = None

    def send(self, line: bytes) -> None:
        w = self.writer
        if w is None or w.transport.is_closing():
            self.dropped += 1
            return
        if w.transport.get_write_buffer_size() > PEER_BUFFER_LIMIT:
            self.dropped += 1
            return
        try:
            w.write(line)
        except (ConnectionError, RuntimeError):
            self.dropped += 1

    async def run(self) -> None:
        backoff = 0.02
        hello = protocol.encode({"type": "hello", "from": self.server.opts.id,
                                 "to": self.peer_id})
        while True:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(*self.addr), timeout=2.0)
            except (TimeoutError, OSError):
                if self.connected:
                    self.connected = False
                    self.server.log(f"lost connection to peer {self.peer_id}")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 0.5)
                continue
            backoff = 0.02
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if not self.connected:
                self.connected = True
                self.server.log(f"connected to peer {self.peer_id} at "
                                f"{self.addr[0]}:{self.addr[1]}")
            try:
                writer.write(hello)
                self.writer = writer
                # The peer never writes on this connection: EOF or an error means it is gone.
                await reader.read(1)
            except (OSError, ConnectionError):
                pass
            finally:
                self.writer = None
                with contextlib.suppress(Exception):
                    writer.close()
            await asyncio.sleep(backoff)


class NodeServer:
    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.tick_s = _tick_ms(opts) / 1000.0
        self.config = Config(
            node_id=opts.id,
            peers=list(opts.peers),
            election_ticks=max(2, round(opts.election_timeout_ms / (self.tick_s * 1000))),
            heartbeat_ticks=max(1, round(opts.heartbeat_ms / (self.tick_s * 1000))),
            snapshot_every=opts.snapshot_every,
            classic=opts.classic,
            bugs=frozenset(opts.bugs),
        )
        self.core: Replica | None = None
        self.wal = WAL(opts.data_dir)
        self.io = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="wal")
        self.wake: asyncio.Event | None = None
        self.stopping: asyncio.Event | None = None
        self.links: dict[str, PeerLink] = {}
        self.tasks: list[asyncio.Task[Any]] = []
        self.conns: set[ClientConn] = set()
        self.pending: list[bytes] = []     # encoded records not yet written
        self.buggy = "reply-before-fsync" in opts.bugs
        self.io_busy = False
        self.exit_code = 0
        self.lock_fd: int | None = None
        self.started = time.monotonic()

    # -- logging ---------------------------------------------------------------------------
    def log(self, text: str) -> None:
        if self.core is not None:
            ballot = fmt_ballot(self.core.promised)
            role = self.core.role
        else:
            ballot, role = "-", "starting"
        log.info("%s ballot=%s role=%s %s", self.opts.id, ballot, role, text)

    # -- start-up --------------------------------------------------------------------------
    def recover(self) -> None:
        os.makedirs(self.opts.data_dir, exist_ok=True)
        self.lock_fd = os.open(os.path.join(self.opts.data_dir, "LOCK"),
                               os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise RuntimeError(f"data directory {self.opts.data_dir} is in use by another "
                               "process") from None
        snapshot = read_snapshot(self.opts.data_dir)
        records = self.wal.open()
        seed = self.opts.seed if self.opts.seed is not None else random.SystemRandom().randrange(
            1 << 62)
        self.core = Replica.restore(self.config, random.Random(seed), snapshot, records)
        if self.wal.truncated_bytes:
            self.log(f"recovery: cut a torn tail of {self.wal.truncated_bytes} bytes off "
                     f"{self.wal.path}")
        self.log(f"recovery: read {len(records)} log records"
                 + (f" and a snapshot through slot {snapshot[0]}" if snapshot else ""))

    async def serve(self) -> int:
        loop = asyncio.get_running_loop()
        self.wake = asyncio.Event()
        self.stopping = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        host, port = self.opts.listen
        try:
            server = await asyncio.start_server(self._on_connection, host, port,
                                                reuse_address=True, limit=1 << 16)
        except OSError as exc:
            self.log(f"FATAL: cannot listen on {host}:{port}: {exc.strerror or exc}")
            return 1
        peers = ", ".join(f"{p}={h}:{pt}" for p, (h, pt) in self.opts.peers.items()) or "none"
        self.log(f"listening on {host}:{port}; peers {peers}; election timeout "
                 f"{self.opts.election_timeout_ms} ms, heartbeat {self.opts.heartbeat_ms} ms, "
                 f"tick {self.tick_s * 1000:.0f} ms"
                 + ("; classic Phase 1 per batch" if self.opts.classic else ""))
        self.log("injected bugs: " + (", ".join(self.opts.bugs) if self.opts.bugs else "none"))
        for pid, addr in self.opts.peers.items():
            link = PeerLink(self, pid, addr)
            self.links[pid] = link
            link.task = asyncio.create_task(link.run())
            self.tasks.append(link.task)
        self.tasks.append(asyncio.create_task(self._tick_loop()))
        ready_task = asyncio.create_task(self._ready_loop())
        self.tasks.append(asyncio.create_task(self._flusher()))
        self.wake.set()
        stop_wait = asyncio.ensure_future(self.stopping.wait())
        await asyncio.wait({stop_wait, ready_task}, return_when=asyncio.FIRST_COMPLETED)
        code = self.exit_code
        if ready_task.done() and ready_task.exception() is not None:
            exc = ready_task.exception()
            assert exc is not None
            self._fatal(exc)
            code = 1
        self.log("shutting down")
        server.close()
        ready_task.cancel()
        for t in self.tasks:
            t.cancel()
        for c in list(self.conns):
            c.close()
        await asyncio.gather(ready_task, *self.tasks, return_exceptions=True)
        # Let a write in progress finish before closing the log under it.
        self.io.shutdown(wait=True)
        self._flush_pending(sync=True)  # a clean exit keeps everything, bug or not
        self.wal.close()
        self.log("stopped")
        return code

    # -- the ready loop --------------------------------------------------------------------
    async def _ready_loop(self) -> None:
        assert self.core is not None and self.wake is not None
        loop = asyncio.get_running_loop()
        core = self.core
        while True:
            await self.wake.wait()
            self.wake.clear()
            while core.has_ready():
                rd = core.ready()
                for e in rd.events:
                    self.log(e)
                for m in rd.early_messages:
                    self._send_peer(m)
                if rd.rewrite or rd.snapshot is not None:
                    # big writes go to the worker thread so the loop keeps serving
                    self.pending.clear()  # the rewritten log supersedes them
                    self.io_busy = True
                    try:
                        await loop.run_in_executor(self.io, self._persist, rd)
                    finally:
                        self.io_busy = False
                elif rd.records:
                    self.pending.extend(encode_record(r) for r in rd.records)
                    if rd.sync and not self.buggy:
                        # One group write and one fdatasync, inline: cheaper than two thread
                        # hand-offs, and input piles up meanwhile to form the next batch.
                        self._flush_pending(sync=True)
                    elif len(self.pending) > 512:
                        self._flush_pending(sync=self.buggy)
                for m in rd.messages:
                    self._send_peer(m)
                for token, body in rd.replies:
                    token.reply(body)
                core.advance(rd)

    def _persist(self, rd: Ready) -> None:
        if rd.snapshot is not None:
            write_snapshot(self.opts.data_dir, rd.snapshot.index, rd.snapshot.data)
        if rd.rewrite:
            self.wal.rewrite(rd.records)
        else:
            self.wal.append(rd.records, sync=rd.sync)

    def _flush_pending(self, sync: bool) -> None:
        """Write the records held in memory: the ones that may wait (learned chosen values,
        which can be learned again) ride along with the next durable write or the periodic
        flush; with the reply-before-fsync bug, all of them wait here."""
        if self.pending:
            data = b"".join(self.pending)
            self.pending.clear()
            self.wal.append_bytes(data, sync=sync)
        elif sync:
            self.wal.sync()

    async def _flusher(self) -> None:
        period = BUGGY_FLUSH_S if self.buggy else LAZY_FLUSH_S
        while True:
            await asyncio.sleep(period)
            if not self.io_busy:  # never touch the log while the worker rewrites it
                self._flush_pending(sync=self.buggy)

    def _poke(self) -> None:
        assert self.wake is not None
        self.wake.set()

    async def _tick_loop(self) -> None:
        assert self.core is not None
        loop = asyncio.get_running_loop()
        period = self.tick_s
        # Ticks fall on multiples of the period of the (system-wide) monotonic clock.
        next_t = math.ceil(loop.time() / period) * period
        cap = 2 * self.config.election_ticks + 1
        while True:
            await asyncio.sleep(max(0.0, next_t - loop.time()))
            now = loop.time()
            # After a pause (SIGSTOP, a stalled VM) the core sees the time that passed.
            n = min(cap, 1 + max(0, int((now - next_t) / period)))
            try:
                for _ in range(n):
                    self.core.tick()
            except Exception as exc:
                self._fatal(exc)
                return
            next_t += n * period
            if next_t < now:
                next_t = math.ceil(now / period) * period
            self._poke()

    # -- peers -----------------------------------------------------------------------------
    def _send_peer(self, m: dict[str, Any]) -> None:
        link = self.links.get(m["to"])
        if link is not None:
            link.send(json.dumps(m, separators=(",", ":")).encode() + b"\n")

    async def _serve_peer(self, peer_id: str, lr: LineReader) -> None:
        assert self.core is not None
        lr.limit = PEER_LINE_LIMIT
        while True:
            line = await lr.readline()
            if line is None:
                return
            try:
                msg = json.loads(line)
            except (ValueError, UnicodeDecodeError, RecursionError):
                self.log(f"dropped malformed message from peer {peer_id}: not JSON")
                continue
            if not isinstance(msg, dict) or msg.get("from") != peer_id:
                self.log(f"dropped message on {peer_id}'s connection claiming another sender")
                continue
            try:
                self.core.step(msg)
            except Exception as exc:  # a bug in the core: never limp on with broken state
                self._fatal(exc)
                return
            self._poke()

    # -- connections -----------------------------------------------------------------------
    async def _on_connection(self, reader: asyncio.StreamReader,
                             writer: asyncio.StreamWriter) -> None:
        # Swallow the cancellation at shutdown: asyncio's stream callback would log it.
        with contextlib.suppress(asyncio.CancelledError):
            await self._connection(reader, writer)

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        lr = LineReader(reader, protocol.MAX_LINE)
        conn = ClientConn(writer)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            first = await lr.readline()
            if first is None:
                return
            peer = self._hello_of(first)
            if peer is not None:
                if peer not in self.opts.peers:
                    self.log(f"refused a connection introducing itself as unknown node {peer!r}")
                    return
                await self._serve_peer(peer, lr)
                return
            self.conns.add(conn)
            line: bytes | None = first
            while line is not None and not conn.closed:
                self._handle_request(conn, line)
                line = await lr.readline()
        except LineTooLong:
            conn.send({"id": None, **protocol.error(
                protocol.MALFORMED, f"request line longer than {protocol.MAX_LINE} bytes")})
        except (ConnectionError, OSError):
            pass
        finally:
            self.conns.discard(conn)
            for p in list(conn.pending):
                p.done = True
                if p.timer is not None:
                    p.timer.cancel()
                if self.core is not None:
                    self.core.cancel(p)
            conn.pending.clear()
            conn.close()

    @staticmethod
    def _hello_of(line: bytes) -> str | None:
        if b'"hello"' not in line:
            return None
        try:
            obj = json.loads(line)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return None
        if not isinstance(obj, dict) or obj.get("type") != "hello":
            return None
        sender = obj.get("from")
        return sender if isinstance(sender, str) else None

    def _handle_request(self, conn: ClientConn, line: bytes) -> None:
        assert self.core is not None
        if not line.strip():
            return
        rid = None
        try:
            obj = protocol.decode_line(line)
            if isinstance(obj, dict):
                rid = obj.get("id")
            req = protocol.parse_request(obj)
        except protocol.MalformedRequest as exc:
            conn.send({"id": rid, **protocol.error(protocol.MALFORMED, str(exc))})
            return
        op = req["op"]
        if op == "status":
            # docs/internals.md: a status reply's "id" is the node id, so the request id is
            # echoed as "request_id" instead.
            conn.send({"request_id": rid, **self.status()})
            return
        if op == "log":
            conn.send({"id": rid, **self.core.log(req["from"], req["limit"])})
            return
        pending = Pending(conn, rid)
        try:
            reply = self.core.propose(req, pending)
        except Exception as exc:
            self._fatal(exc)
            return
        if reply is not None:
            pending.reply(reply)
            return
        conn.pending.add(pending)
        loop = asyncio.get_running_loop()
        pending.timer = loop.call_later(self.opts.request_timeout_ms / 1000.0,
                                        self._timeout, pending)
        self._poke()

    def _fatal(self, exc: BaseException) -> None:
        tb = "".join(traceback.format_exception(exc)).rstrip().replace("\n", "\n    ")
        self.log(f"FATAL: internal error, stopping: {tb}")
        self.exit_code = 1
        if self.stopping is not None:
            self.stopping.set()

    def _timeout(self, pending: Pending) -> None:
        if pending.done or self.core is None:
            return
        self.core.cancel(pending)
        pending.reply(protocol.error(protocol.TIMEOUT, "not known to be chosen in time"))

    def status(self) -> dict[str, Any]:
        assert self.core is not None
        st = self.core.status()
        st["peers"] = {p: link.connected for p, link in self.links.items()}
        st["uptime_s"] = round(time.monotonic() - self.started, 3)
        return st


def _tick_ms(opts: Options) -> int:
    return max(1, min(10, opts.heartbeat_ms // 2 or 1, opts.election_timeout_ms // 10))


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s.%(msecs)03d %(message)s", datefmt="%H:%M:%S")
    srv = NodeServer(opts)
    try:
        srv.recover()
    except WalCorruption as exc:
        srv.log(f"FATAL: {exc}")
        return 1
    except (RuntimeError, ValueError, OSError) as exc:
        srv.log(f"FATAL: cannot start: {exc}")
        return 1
    try:
        return asyncio.run(srv.serve())
    except KeyboardInterrupt:
        return 0
