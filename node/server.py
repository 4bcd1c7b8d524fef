"""The asyncio driver: sockets, timers and the disk around the sans-IO core.

One event loop owns the Replica. Every input (a client request, a peer message, a tick) is fed
to the core as it is read and schedules one *pump* at the end of the event-loop iteration, so
everything read in one pass over the ready sockets forms one batch: one Accept per peer, one
write-ahead-log write and one fsync (natural batching, no timer).

The pump does the core's work in order:

- early messages and early replies (Accepts, heartbeats and their acknowledgements, client
  replies; the core guarantees they depend on nothing unpersisted) leave at once, also while a
  write is in progress;
- one Ready at a time is made durable: its records are written and fdatasync'ed by a worker
  thread (group commit off the event loop) while the loop keeps taking input, which piles up
  into the next batch; once the write is durable, the Ready's other messages (Promises,
  Accepteds) and replies are sent and the core is told (advance). A write of at most
  INLINE_WRITE_BYTES (one or a few commands: a lightly loaded node) is done on the loop
  instead, which saves the two thread hand-offs on the latency path, but only while the last
  durable write took under INLINE_MAX_S: on a slow disk the loop must keep heartbeating.

Connections: every node listens on one port for clients, admin tools and peers. A node sends to
a peer over its own outbound connection, dialled at the address given with --peer (possibly a
proxy) and opened with a hello line naming the sender; it receives from that peer on the
peer's outbound connection, once both have proved they hold the cluster secret (node.auth). A
connection whose first line is not a hello is a client.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import errno
import fcntl
import functools
import gc
import json
import logging
import math
import os
import random
import resource
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from node import auth, protocol
from node.cli import Options, parse_args
from node.core import Config, Ready, Replica, fmt_ballot
from node.wal import WAL, WalCorruption, encode_record, read_snapshot, write_snapshot

log = logging.getLogger("node")

PEER_LINE_LIMIT = 256 << 20      # snapshots travel as one line (authenticated peers only)
MAX_CONNECTIONS = 4096           # inbound connections in all...
MAX_CONNECTIONS_PER_SOURCE = 2048  # ...and from one address (the harness's clients share one)
MAX_BUFFERED_BYTES = 64 << 20    # unfinished client lines, all connections together
MAX_HANDSHAKES = 32              # peer handshakes in progress at once
DIAL_HANDSHAKE_TIMEOUT_S = 1.5   # a dialer waits this long for the challenge (a cut link: never)
PEER_BUFFER_LIMIT = 8 << 20      # bytes buffered for a peer that does not read
CLIENT_BUFFER_LIMIT = 16 << 20   # a client that does not read its replies is dropped
BUGGY_FLUSH_S = 1.0              # reply-before-fsync: how long writes sit in the process
LAZY_FLUSH_S = 0.2               # how long re-learnable records may sit in the process
INLINE_WRITE_BYTES = 1024        # a durable write this small is done on the loop (low load)...
INLINE_MAX_S = 0.002             # ...while the last one took less than this (a healthy disk)

_encode = json.JSONEncoder(separators=(",", ":")).encode


class Conn(asyncio.Protocol):
    """One accepted connection: a client (or admin tool) unless its first line is a peer's
    hello; then, once the peer has proved it holds the cluster secret (node.auth), that peer's
    inbound link. Lines are split here, with a limit per kind (1 MiB for clients,
    MAX_HANDSHAKE_LINE during the handshake, PEER_LINE_LIMIT for an authenticated peer)."""

    def __init__(self, server: NodeServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.peer: str | None = None         # set once authenticated
        self.claimed: str | None = None      # the peer a hello claims, during the handshake
        self.nonces: tuple[str, str] = ("", "")
        self.source = ""
        self.started = False
        self.pending: set[Pending] = set()
        self.closed = False
        self.timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert hasattr(transport, "write")  # uvloop's transports are not asyncio.Transport
        self.transport = transport
        peername = transport.get_extra_info("peername")
        self.source = str(peername[0]) if peername else ""
        srv = self.server
        per_source = srv.sources.get(self.source, 0)
        if len(srv.conns) >= MAX_CONNECTIONS or per_source >= MAX_CONNECTIONS_PER_SOURCE:
            srv.log_limited("connections", f"refused a connection from {self.source}: "
                            f"{len(srv.conns)} open, {per_source} from there")
            self.closed = True
            transport.abort()
            return
        srv.sources[self.source] = per_source + 1
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        srv.conns.add(self)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        buf = self.buf
        # What is left in buf was scanned already (it holds no newline): a long line arriving
        # in many chunks is scanned once, not once per chunk.
        scanned = len(buf)
        buf += data
        try:
            self._lines(scanned)
        finally:
            srv = self.server
            srv.buffered += len(self.buf) - scanned
            if (srv.buffered > MAX_BUFFERED_BYTES and self.peer is None and not self.closed
                    and self.buf):
                # Many connections each holding part of a long line: the newest growth goes.
                srv.log_limited("buffered", f"closed a connection from {self.source}: "
                                f"{srv.buffered} bytes of unfinished lines buffered in all")
                self.close()

    def _lines(self, scanned: int) -> None:
        buf = self.buf
        start = 0
        while True:
            i = buf.find(b"\n", max(start, scanned))
            if i < 0:
                break
            if i - start > self._limit():
                self._too_long()
                return
            line = bytes(buf[start:i])
            start = i + 1
            self._line(line)
            if self.closed:
                return
        if start:
            del buf[:start]
        if len(buf) > self._limit():
            self._too_long()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        srv = self.server
        srv.buffered -= len(self.buf)
        self.buf = bytearray()
        if self in srv.conns:
            srv.conns.discard(self)
            left = srv.sources.get(self.source, 1) - 1
            if left > 0:
                srv.sources[self.source] = left
            else:
                srv.sources.pop(self.source, None)
        if self.claimed is not None and self.peer is None:
            srv.handshakes -= 1
        if self.peer is not None and srv.inbound.get(self.peer) is self:
            del srv.inbound[self.peer]
        self.closed = True
        core = srv.core
        for p in self.pending:
            p.done = True
            if core is not None:
                core.cancel(p)
        self.pending.clear()

    # -- lines ----------------------------------------------------------------------------
    def _limit(self) -> int:
        if self.peer is not None:
            return PEER_LINE_LIMIT
        if self.claimed is not None:
            return auth.MAX_HANDSHAKE_LINE
        return protocol.MAX_LINE

    def _line(self, line: bytes) -> None:
        srv = self.server
        if self.peer is not None:
            srv.on_peer_line(self.peer, line)
            return
        if self.claimed is not None:
            self._authenticate(line)
            return
        if not self.started:
            self.started = True
            hello = srv.hello_of(line)
            if hello is not None:
                self._challenge(*hello)
                return
        srv.handle_request(self, line)

    def _challenge(self, claimed: str, nonce: Any) -> None:
        """A hello: answer with our nonce and our proof, then wait for the dialer's proof."""
        srv = self.server
        if claimed not in srv.opts.peers or srv.secret is None:
            srv.log_limited(f"hello-{claimed}"[:80], f"refused a connection from {self.source} "
                            f"introducing itself as unknown node {claimed!r}")
            self.close()
            return
        if not auth.valid_nonce(nonce):
            srv.log_limited(f"nonce-{claimed}", f"refused a connection from {self.source} "
                            f"claiming to be {claimed}: its hello has no valid nonce")
            self.close()
            return
        if srv.handshakes >= MAX_HANDSHAKES:
            srv.log_limited("handshakes", f"refused a peer handshake from {self.source}: "
                            f"{srv.handshakes} in progress")
            self.close()
            return
        srv.handshakes += 1
        self.claimed = claimed
        ours = auth.new_nonce()
        self.nonces = (nonce, ours)
        proof = auth.proof(srv.secret, "accept", claimed, srv.opts.id, nonce, ours)
        self.send({"type": "challenge", "from": srv.opts.id, "to": claimed, "nonce": ours,
                   "proof": proof})
        assert srv.loop is not None
        self.timer = srv.loop.call_later(auth.HANDSHAKE_TIMEOUT_S, self._handshake_timeout)

    def _authenticate(self, line: bytes) -> None:
        srv = self.server
        claimed = self.claimed
        assert claimed is not None and srv.secret is not None
        try:
            obj = json.loads(line)
        except (ValueError, UnicodeDecodeError, RecursionError):
            obj = None
        expected = auth.proof(srv.secret, "dial", claimed, srv.opts.id, *self.nonces)
        if not isinstance(obj, dict) or obj.get("type") != "auth" or \
                not auth.check(expected, obj.get("proof")):
            srv.log_limited(f"auth-{claimed}", f"refused a connection from {self.source} "
                            f"claiming to be {claimed}: it failed the challenge")
            self.close()
            return
        if self.timer is not None:
            self.timer.cancel()
        srv.handshakes -= 1
        self.claimed = None
        self.peer = claimed
        old = srv.inbound.get(claimed)
        srv.inbound[claimed] = self
        if old is not None:
            old.close()  # the peer dialed again: its old link is dead to it

    def _handshake_timeout(self) -> None:
        if self.peer is None and not self.closed:
            self.server.log_limited(f"timeout-{self.claimed}", f"dropped a connection from "
                                    f"{self.source} claiming to be {self.claimed}: no answer "
                                    "to the challenge in time")
            self.close()

    def _too_long(self) -> None:
        if self.peer is not None:
            self.server.log(f"dropped the connection of peer {self.peer}: line over "
                            f"{PEER_LINE_LIMIT} bytes")
        elif self.claimed is None:
            self.send({"id": None, **protocol.error(
                protocol.MALFORMED, f"request line longer than {protocol.MAX_LINE} bytes")})
        self.close()

    # -- writing --------------------------------------------------------------------------
    def send(self, obj: dict[str, Any]) -> None:
        t = self.transport
        if self.closed or t is None:
            return
        if t.is_closing():
            self.close()
            return
        try:
            t.write(_encode(obj).encode() + b"\n")
            if t.get_write_buffer_size() > CLIENT_BUFFER_LIMIT:
                self.close()
        except (ConnectionError, RuntimeError):
            self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                # Flush what is queued (a last error reply), then close.
                with contextlib.suppress(Exception):
                    self.transport.close()


class Pending:
    """A client request waiting for its reply; the core's token for it."""

    __slots__ = ("conn", "rid", "deadline", "done")

    def __init__(self, conn: Conn, rid: Any, deadline: float) -> None:
        self.conn = conn
        self.rid = rid
        self.deadline = deadline
        self.done = False

    def reply(self, body: dict[str, Any]) -> None:
        if self.done:
            return
        self.done = True
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
                with contextlib.suppress(OSError, AttributeError):
                    # A link whose packets are dropped (a partition) would otherwise stay open
                    # in TCP's retransmission backoff, and after the heal carry nothing until
                    # the next retransmission, seconds later: give up on it instead and dial
                    # afresh, so a healed link carries messages within about a second.
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT,
                                    peer_user_timeout_ms(self.server.opts))
            if not self.connected:
                self.connected = True
                self.server.log(f"connected to peer {self.peer_id} at "
                                f"{self.addr[0]}:{self.addr[1]}")
            try:
                answer = await self._handshake(reader, writer)
                if answer == "ok":
                    self.writer = writer
                    # After the handshake the peer never writes on this connection: EOF or an
                    # error means it is gone.
                    await reader.read(1)
                elif answer == "impostor":
                    backoff = 0.5
                else:
                    # No answer (a proxy whose peer is not up yet, a cut link): dial again soon,
                    # as after a refused connection.
                    backoff = min(backoff * 2, 0.5)
            except (OSError, ConnectionError):
                pass
            finally:
                self.writer = None
                with contextlib.suppress(Exception):
                    writer.close()
            await asyncio.sleep(backoff)


    async def _handshake(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> str:
        """Prove we hold the cluster secret and check that the peer does (node.auth): "ok",
        "silent" (no challenge came) or "impostor" (a wrong proof)."""
        srv = self.server
        assert srv.secret is not None
        me, ours = srv.opts.id, auth.new_nonce()
        writer.write(protocol.encode({"type": "hello", "from": me, "to": self.peer_id,
                                      "nonce": ours}))
        try:
            line = await asyncio.wait_for(reader.readline(), DIAL_HANDSHAKE_TIMEOUT_S)
            obj = json.loads(line) if line.endswith(b"\n") else None
        except (TimeoutError, ValueError, UnicodeDecodeError, RecursionError,
                asyncio.LimitOverrunError):
            obj = None
        if not isinstance(obj, dict) or obj.get("type") != "challenge":
            return "silent"  # a cut link, a peer not up yet, or not a node of ours
        theirs = obj.get("nonce")
        expected = auth.proof(srv.secret, "accept", me, self.peer_id, ours, str(theirs))
        if not auth.valid_nonce(theirs) or not auth.check(expected, obj.get("proof")):
            srv.log_limited(f"peer-proof-{self.peer_id}", f"the node at {self.addr[0]}:"
                            f"{self.addr[1]} failed to prove it is {self.peer_id}: not sending "
                            "to it")
            return "impostor"
        writer.write(protocol.encode({
            "type": "auth", "proof": auth.proof(srv.secret, "dial", me, self.peer_id, ours,
                                                theirs)}))
        return "ok"


class NodeServer:
    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.tick_s = tick_seconds(opts)
        self.config = replica_config(opts)
        self.core: Replica | None = None
        self.wal = WAL(opts.data_dir)
        # One worker: every write to the log goes through it, in order (the loop writes only
        # when it is idle).
        self.io = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="wal")
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stopping: asyncio.Event | None = None
        self.links: dict[str, PeerLink] = {}
        self.tasks: list[asyncio.Task[Any]] = []
        self.conns: set[Conn] = set()
        self.sources: dict[str, int] = {}      # open connections per source address
        self.handshakes = 0                    # peer handshakes in progress
        self.buffered = 0                      # bytes of unfinished lines, all connections
        self.inbound: dict[str, Conn] = {}     # each peer's authenticated inbound link
        self.secret: bytes | None = None       # the cluster secret (node.auth)
        self.limited_logs: dict[str, int] = {} # log_limited: how often each kind came up
        self.pending: list[bytes] = []     # encoded records not yet written
        self.buggy = "reply-before-fsync" in opts.bugs
        self.writing: Ready | None = None  # the Ready whose records the worker is writing
        self.kicked = False                # a pump is scheduled
        self.dead = False                  # an internal error: stop touching the core
        self.timeouts: collections.deque[Pending] = collections.deque()  # by deadline
        self.request_timeout_s = opts.request_timeout_ms / 1000.0
        self.fsyncs = 0
        self.last_write_s = 0.0            # how long the last durable write took
        self._entries_obj: Any = None      # the last entries list encoded, and its text
        self._entries_text = ""
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

    def log_limited(self, kind: str, text: str) -> None:
        """Log the first of each kind of refusal, then only every 1000th: an attacker must not
        be able to fill the disk through our log."""
        n = self.limited_logs.get(kind, 0)
        if n == 0 and len(self.limited_logs) >= 4096:
            return
        self.limited_logs[kind] = n + 1
        if n % 1000 == 0:
            self.log(text + (f" ({n} more like it since)" if n else ""))

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
        self.loop = loop
        self.stopping = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        host, port = self.opts.listen
        try:
            server = await loop.create_server(lambda: Conn(self), host, port,
                                              reuse_address=True)
        except OSError as exc:
            self.log(f"FATAL: cannot listen on {host}:{port}: {exc.strerror or exc}")
            return 1
        peers = ", ".join(f"{p}={h}:{pt}" for p, (h, pt) in self.opts.peers.items()) or "none"
        self.log(f"listening on {host}:{port}; peers {peers}; election timeout "
                 f"{self.opts.election_timeout_ms} ms, heartbeat {self.opts.heartbeat_ms} ms, "
                 f"tick {self.tick_s * 1000:.0f} ms"
                 + ("; classic: Phase 1 before every slot" if self.opts.classic else ""))
        self.log("injected bugs: " + (", ".join(self.opts.bugs) if self.opts.bugs else "none"))
        for pid, addr in self.opts.peers.items():
            link = PeerLink(self, pid, addr)
            self.links[pid] = link
            link.task = asyncio.create_task(link.run())
            self.tasks.append(link.task)
        self.tasks.append(asyncio.create_task(self._tick_loop()))
        self.tasks.append(asyncio.create_task(self._flusher()))
        self.kick()
        await self.stopping.wait()
        code = self.exit_code
        self.log("shutting down")
        self.dead = True
        server.close()
        for t in self.tasks:
            t.cancel()
        for c in list(self.conns):
            c.close()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        # Let a write in progress finish before closing the log under it.
        self.io.shutdown(wait=True)
        self._flush_pending(sync=True)  # a clean exit keeps everything, bug or not
        self.wal.close()
        self.log("stopped")
        return code

    # -- the pump --------------------------------------------------------------------------
    def kick(self) -> None:
        """Input arrived: pump once at the end of this event-loop iteration, after everything
        read in the same pass (that is the batch)."""
        if not self.kicked and self.loop is not None:
            self.kicked = True
            self.loop.call_soon(self._pump)

    def _pump(self) -> None:
        self.kicked = False
        if self.dead:
            return
        try:
            self._drive()
        except Exception as exc:  # a bug in the core: never limp on with broken state
            self._fatal(exc)

    def _drive(self) -> None:
        assert self.core is not None
        core = self.core
        while True:
            msgs, replies = core.take_early()
            self._send_out(msgs, replies)
            if self.writing is not None:
                return   # the next Ready waits for this one to be durable
            if not core.has_ready():
                return
            rd = core.ready()
            for e in rd.events:
                self.log(e)
            self._send_out(rd.early_messages, rd.early_replies)
            if rd.rewrite or rd.snapshot is not None:
                self.pending.clear()  # the rewritten log supersedes them
                self._write_in_worker(functools.partial(self._persist, rd), rd)
                return
            if rd.records:
                self.pending.extend(encode_record(r) for r in rd.records)
                if rd.sync and not self.buggy:
                    data = b"".join(self.pending)
                    self.pending.clear()
                    if len(data) <= INLINE_WRITE_BYTES and self.last_write_s < INLINE_MAX_S:
                        # A small batch: little load, little to overlap; the two thread
                        # hand-offs would cost more than they save.
                        self._append(data)
                        self._finish(rd)
                        continue
                    self._write_in_worker(functools.partial(self._append, data), rd)
                    return
                if len(self.pending) > 512:
                    self._flush_pending(sync=self.buggy)
            self._finish(rd)

    def _send_out(self, msgs: list[dict[str, Any]],
                  replies: list[tuple[Any, dict[str, Any]]]) -> None:
        for m in msgs:
            self._send_peer(m)
        for token, body in replies:
            token.reply(body)

    def _finish(self, rd: Ready) -> None:
        """rd's records are durable: what depended on them may go, and the core may count."""
        assert self.core is not None
        self._send_out(rd.messages, rd.replies)
        self.core.advance(rd)

    def _write_in_worker(self, job: Callable[[], None], rd: Ready) -> None:
        assert self.loop is not None
        self.writing = rd
        fut = self.loop.run_in_executor(self.io, job)
        fut.add_done_callback(self._written)

    def _written(self, fut: asyncio.Future[None]) -> None:
        rd, self.writing = self.writing, None
        if self.dead or fut.cancelled():
            return
        exc = fut.exception()
        if exc is not None:
            self._fatal(exc)   # the disk failed us: promises cannot be kept
            return
        assert rd is not None
        try:
            self._finish(rd)
            self._drive()
        except Exception as exc:
            self._fatal(exc)

    # -- the disk (worker thread, or the loop when no worker job runs) ----------------------
    def _append(self, data: bytes) -> None:
        t = time.perf_counter()
        self.wal.append_bytes(data, sync=True)
        self.last_write_s = time.perf_counter() - t
        self.fsyncs += 1

    def _persist(self, rd: Ready) -> None:
        if rd.snapshot is not None:
            write_snapshot(self.opts.data_dir, rd.snapshot.index, rd.snapshot.data)
        if rd.rewrite:
            self.wal.rewrite(rd.records)
        else:
            self.wal.append(rd.records, sync=rd.sync)
        self.fsyncs += 1
        if rd.snapshot is not None and _malloc_trim is not None:
            # The log just dropped a snapshot interval's worth of commands: hand the freed heap
            # back (glibc keeps it otherwise, and the RSS creeps ~1 MB per million commands).
            _malloc_trim(0)

    def _flush_pending(self, sync: bool) -> None:
        """Write the records held in memory: the ones that may wait (learned chosen values,
        which can be learned again) ride along with the next durable write or the periodic
        flush; with the reply-before-fsync bug, all of them wait here. Only when the worker
        is idle."""
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
            if self.writing is None and not self.dead:  # never beside the worker's write
                self._flush_pending(sync=self.buggy)

    async def _tick_loop(self) -> None:
        assert self.core is not None
        loop = asyncio.get_running_loop()
        period = self.tick_s
        # Ticks fall on multiples of the period of the (system-wide) monotonic clock.
        next_t = math.ceil(loop.time() / period) * period
        cap = 2 * self.config.election_ticks + 1
        while True:
            await asyncio.sleep(max(0.0, next_t - loop.time()))
            if self.dead:
                return
            now = loop.time()
            # After a pause (SIGSTOP, a stalled VM) the core sees the time that passed.
            n = min(cap, 1 + max(0, int((now - next_t) / period)))
            try:
                for _ in range(n):
                    self.core.tick()
                self._expire(now)
            except Exception as exc:
                self._fatal(exc)
                return
            next_t += n * period
            if next_t < now:
                next_t = math.ceil(now / period) * period
            self.kick()

    def _expire(self, now: float) -> None:
        """Requests past their deadline get error 30 (indefinite: it may still be chosen)."""
        assert self.core is not None
        q = self.timeouts
        while q and q[0].deadline <= now:
            p = q.popleft()
            if not p.done:
                self.core.cancel(p)
                p.reply(protocol.error(protocol.TIMEOUT, "not known to be chosen in time"))

    # -- peers -----------------------------------------------------------------------------
    def _send_peer(self, m: dict[str, Any]) -> None:
        link = self.links.get(m["to"])
        if link is None:
            return
        entries = m.get("entries")
        if entries:
            # The core hands every peer the same entries list: encode it once per batch.
            if entries is not self._entries_obj:
                self._entries_obj = entries
                self._entries_text = _encode(entries)
            head = _encode({k: v for k, v in m.items() if k != "entries"})
            text = f'{head[:-1]},"entries":{self._entries_text}}}'
        else:
            text = _encode(m)
        link.send(text.encode() + b"\n")

    def on_peer_line(self, peer_id: str, line: bytes) -> None:
        if self.dead:
            return
        assert self.core is not None
        try:
            msg = json.loads(line.decode())
        except (ValueError, UnicodeDecodeError, RecursionError):
            self.log(f"dropped malformed message from peer {peer_id}: not JSON")
            return
        if not isinstance(msg, dict) or msg.get("from") != peer_id:
            self.log(f"dropped message on {peer_id}'s connection claiming another sender")
            return
        try:
            self.core.step(msg)
        except Exception as exc:  # a bug in the core: never limp on with broken state
            self._fatal(exc)
            return
        self.kick()

    # -- clients ---------------------------------------------------------------------------
    @staticmethod
    def hello_of(line: bytes) -> tuple[str, Any] | None:
        """(claimed node id, its nonce) if the line is a peer's hello."""
        if b'"hello"' not in line or len(line) > auth.MAX_HANDSHAKE_LINE:
            return None
        try:
            obj = json.loads(line)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return None
        if not isinstance(obj, dict) or obj.get("type") != "hello":
            return None
        sender = obj.get("from")
        return (sender[:64], obj.get("nonce")) if isinstance(sender, str) else None

    def handle_request(self, conn: Conn, line: bytes) -> None:
        assert self.core is not None and self.loop is not None
        if self.dead or not line.strip():
            return
        rid = None
        try:
            obj = protocol.decode_line(line)
            rid = protocol.request_id(obj)
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
        self.submit(conn, rid, req)

    def submit(self, conn: Any, rid: Any, req: dict[str, Any]) -> None:
        """A client command to the core; `conn.send` takes its reply, now or once chosen (or
        error 30 past the request timeout)."""
        assert self.core is not None and self.loop is not None
        pending = Pending(conn, rid, self.loop.time() + self.request_timeout_s)
        try:
            reply = self.core.propose(req, pending)
        except Exception as exc:
            self._fatal(exc)
            return
        if reply is not None:
            pending.reply(reply)
            return
        conn.pending.add(pending)
        self.timeouts.append(pending)
        self.kick()

    def _fatal(self, exc: BaseException) -> None:
        if isinstance(exc, OSError):
            # The disk, not the code: say which disk and what it said (ENOSPC, EIO, ...).
            name = errno.errorcode.get(exc.errno or 0, "")
            self.log(f"FATAL: the data directory {self.opts.data_dir} failed"
                     f"{' (' + name + ')' if name else ''}: {exc.strerror or exc}; stopping")
        else:
            tb = "".join(traceback.format_exception(exc)).rstrip().replace("\n", "\n    ")
            self.log(f"FATAL: internal error, stopping: {tb}")
        self.dead = True
        self.exit_code = 1
        if self.stopping is not None:
            self.stopping.set()

    def status(self) -> dict[str, Any]:
        assert self.core is not None
        st = self.core.status()
        st["counters"]["fsyncs"] = self.fsyncs
        st["peers"] = {p: link.connected for p, link in self.links.items()}
        st["uptime_s"] = round(time.monotonic() - self.started, 3)
        st["event_loop"] = EVENT_LOOP
        # Memory: the process's resident set (Linux) and the Python objects' blocks in use
        # (flat blocks under a growing RSS is allocator fragmentation, not a leak).
        st["memory"] = {"rss_kb": _rss_kb(), "py_blocks": sys.getallocatedblocks()}
        return st


LOOP_ENV = "PAXOS_NODE_LOOP"   # "asyncio": the standard loop even where uvloop is installed


def event_loop_name() -> str:
    if os.environ.get(LOOP_ENV) == "asyncio":
        return "asyncio"
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def event_loop_runner() -> Callable[[Any], Any]:
    """uvloop where it is installed (`harness bench`, two alternating rounds: one-client writes
    0.66-0.76 ms p50 against 0.78-0.81, 64-client reads 47,400-48,600/s against 41,200-41,300),
    else the standard loop: the node needs only the standard library."""
    if event_loop_name() == "uvloop":
        import uvloop

        return uvloop.run
    return asyncio.run


EVENT_LOOP = event_loop_name()


def _find_malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, where there is one (best effort: None elsewhere)."""
    try:
        import ctypes

        return ctypes.CDLL(None).malloc_trim  # type: ignore[no-any-return]
    except (OSError, AttributeError, ImportError):
        return None


_malloc_trim = _find_malloc_trim()


def _rss_kb() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
    except (OSError, ValueError, IndexError):
        return None


def peer_user_timeout_ms(opts: Options) -> int:
    """How long data sent to a peer may stay unacknowledged before the link is dropped and
    re-dialled: well above any round trip the delay faults make, well below a partition."""
    return max(1000, 3 * opts.election_timeout_ms)


def replica_config(opts: Options) -> Config:
    """The core's configuration for these options (timeouts counted in ticks)."""
    tick_ms = _tick_ms(opts)
    return Config(
        node_id=opts.id,
        peers=list(opts.peers),
        election_ticks=max(2, round(opts.election_timeout_ms / tick_ms)),
        heartbeat_ticks=max(1, round(opts.heartbeat_ms / tick_ms)),
        snapshot_every=opts.snapshot_every,
        classic=opts.classic,
        bugs=frozenset(opts.bugs),
    )


def tick_seconds(opts: Options) -> float:
    """How often the driver ticks the core."""
    return _tick_ms(opts) / 1000.0


def _tick_ms(opts: Options) -> int:
    return max(1, min(10, opts.heartbeat_ms // 2 or 1, opts.election_timeout_ms // 10))


def _no_sync(fd: int) -> None:
    return None


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s.%(msecs)03d %(message)s", datefmt="%H:%M:%S")
    with contextlib.suppress(ValueError, OSError):
        # Room for the connection limits below the process's file limit.
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = MAX_CONNECTIONS + 256
        if soft != resource.RLIM_INFINITY and soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    if opts.unsafe_no_fsync:
        os.fsync = os.fdatasync = _no_sync  # test-only: a node that never syncs
    # Every command allocates a few dicts and lists, none in reference cycles: collecting the
    # young generation every 700 allocations costs ~10-20 % of the fast path for nothing.
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    if opts.maelstrom:
        from node import maelstrom

        return maelstrom.main(opts)
    srv = NodeServer(opts)
    if opts.unsafe_no_fsync:
        srv.log("UNSAFE: --unsafe-no-fsync: nothing is ever synced (for tests of the harness)")
    if opts.secret_file:
        try:
            srv.secret = auth.load_secret(opts.secret_file)
        except auth.SecretError as exc:
            srv.log(f"FATAL: cannot start: {exc}")
            return 1
    try:
        srv.recover()
    except WalCorruption as exc:
        srv.log(f"FATAL: {exc}")
        return 1
    except (RuntimeError, ValueError, OSError) as exc:
        srv.log(f"FATAL: cannot start: {exc}")
        return 1
    try:
        return event_loop_runner()(srv.serve())
    except KeyboardInterrupt:
        return 0
