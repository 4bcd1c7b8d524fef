"""The Maelstrom bridge: one unchanged Maelstrom node program, its stdio carried over real TCP.

A Maelstrom node reads newline-delimited `{"src", "dest", "body"}` messages on stdin and writes
them on stdout (Maelstrom's doc/protocol.md). The bridge starts the program in the member's
data directory, sends it `init`, and then routes every line it writes:

- to a peer node: over this member's own outbound TCP link to that peer, which the harness's
  proxies or the host's iptables can cut, slow or black-hole like any other packet;
- to a client (`c1`, `c2`, ...): back over that client's TCP connection to this bridge;
- to itself: straight back to its stdin.

Peer links prove the cluster secret both ways (node.auth), so nothing but a member of this
cluster can put a message into the program. The program's stderr is the member's log (at most
LOG_LIMIT bytes of it). What the bridge itself says starts with "bridge:".

The bridge stops the program (and exits with a status of its own) when the program breaks the
protocol: a line that is not a message, a line over MAX_LINE, a `src` that is not its id, a
message to one of Maelstrom's services (which the harness does not provide), or no `init_ok`
within --init-timeout. Standard library only (with node.auth): it is deployed next to the
program in containers and on hosts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import re
import signal
import sys
import time
from typing import Any

from node import auth

MAX_LINE = 1 << 20            # a Maelstrom message is small; a longer line is a broken node
PEER_BUFFER_BYTES = 8 << 20   # queued for a peer link; beyond it messages are lost (a network)
STDIN_BUFFER_BYTES = 16 << 20  # queued for a program that does not read its stdin
CLIENT_BUFFER_BYTES = 16 << 20
LOG_LIMIT = 64 << 20          # of the program's stderr kept in the member's log
HANDSHAKE_TIMEOUT_S = 2.0
REDIAL_S = 0.1

EXIT_NO_INIT = 4
EXIT_PROTOCOL = 5
EXIT_SERVICE = 6
EXIT_PROGRAM = 7

CLIENT_ID = re.compile(r"c[0-9]{1,9}")
# Maelstrom's services (doc/services.md): nodes a Maelstrom test provides beside the program's.
SERVICES = ("lin-kv", "seq-kv", "lww-kv", "lin-tso")
INIT_SRC = "c0"
# How the bridge's last words begin when the program broke the protocol, or needs what the
# harness does not offer (the run's analysis looks for them in the member's log).
VIOLATION = "protocol violation:"
UNSUPPORTED = "unsupported:"
INIT_MSG_ID = 1

_encode = json.JSONEncoder(separators=(",", ":")).encode


def log(text: str) -> None:
    sys.stderr.buffer.write(f"bridge: {text}\n".encode())
    sys.stderr.buffer.flush()


class Stop(Exception):
    """The program must stop: `code` is the bridge's exit status, `reason` what it logs."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


def _die_with_parent() -> None:
    # PR_SET_PDEATHSIG: the program dies with the bridge, whatever kills the bridge.
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)


def check_message(obj: Any, src: str | None = None) -> str | None:
    """What is wrong with a line as a Maelstrom message (None: nothing)."""
    if not isinstance(obj, dict):
        return "not a JSON object"
    for field, kind in (("src", str), ("dest", str), ("body", dict)):
        if not isinstance(obj.get(field), kind):
            return f"no {field} {'string' if kind is str else 'object'}"
    if not isinstance(obj["body"].get("type"), str):
        return "a body without a type string"
    if src is not None and obj["src"] != src:
        return f"src {obj['src']!r} where {src!r} was expected"
    return None


class PeerLink:
    """This member's outbound link to one peer: dialled, authenticated, then one message per
    line. Messages queued while it is down are lost when it fails, as a network loses them."""

    def __init__(self, bridge: Bridge, peer: str, address: tuple[str, int]) -> None:
        self.bridge, self.peer, self.address = bridge, peer, address
        self.queue: list[bytes] = []
        self.queued = 0
        self.ready = asyncio.Event()
        self.connected = False

    def send(self, line: bytes) -> None:
        if self.queued + len(line) > PEER_BUFFER_BYTES:
            self.bridge.count("peer_dropped")
            return
        self.queue.append(line)
        self.queued += len(line)
        self.ready.set()

    async def run(self) -> None:
        while True:
            writer = None
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(*self.address), HANDSHAKE_TIMEOUT_S)
                if await self._handshake(reader, writer):
                    self.connected = True
                    await self._pump(writer)
            except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError):
                pass
            finally:
                self.connected = False
                if writer is not None:
                    writer.close()
            self.bridge.count("peer_dropped", len(self.queue))
            self.queue.clear()
            self.queued = 0
            await asyncio.sleep(REDIAL_S)

    async def _handshake(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> bool:
        me, ours, secret = self.bridge.node, auth.new_nonce(), self.bridge.secret
        writer.write(_encode({"type": "hello", "from": me, "to": self.peer,
                              "nonce": ours}).encode() + b"\n")
        line = await asyncio.wait_for(reader.readline(), HANDSHAKE_TIMEOUT_S)
        obj = json.loads(line) if line.endswith(b"\n") else None
        if not isinstance(obj, dict) or obj.get("type") != "challenge":
            return False
        theirs = str(obj.get("nonce"))
        expected = auth.proof(secret, "accept", me, self.peer, ours, theirs)
        if not auth.valid_nonce(theirs) or not auth.check(expected, obj.get("proof")):
            self.bridge.log_once(f"impostor-{self.peer}", f"the member at {self.address} failed "
                                 f"to prove it is {self.peer}: not sending to it")
            return False
        writer.write(_encode({"type": "auth", "proof": auth.proof(
            secret, "dial", me, self.peer, ours, theirs)}).encode() + b"\n")
        return True

    async def _pump(self, writer: asyncio.StreamWriter) -> None:
        while True:
            await self.ready.wait()
            self.ready.clear()
            lines, self.queue, self.queued = self.queue, [], 0
            writer.write(b"".join(lines))
            await writer.drain()


class Bridge:
    def __init__(self, args: argparse.Namespace, secret: bytes) -> None:
        self.node: str = args.id
        self.nodes: list[str] = args.nodes
        self.listen: tuple[str, int] = args.listen
        self.secret = secret
        self.data_dir: str = args.data_dir
        self.program: list[str] = args.program
        self.init_timeout: float = args.init_timeout
        self.links = {peer: PeerLink(self, peer, addr) for peer, addr in args.peers.items()}
        self.clients: dict[str, asyncio.StreamWriter] = {}
        # From zero, so that a status sample taken before the first message still counts.
        self.counters: dict[str, int] = dict.fromkeys(
            ("messages", "messages_received", "messages_self", "requests", "replies",
             "peer_dropped", "stdin_dropped", "client_replies_lost", "unknown_dest"), 0)
        self.proc: asyncio.subprocess.Process | None = None
        self.initialized = asyncio.Event()
        self.stop: asyncio.Future[Stop] | None = None
        self.logged: set[str] = set()
        self.started = time.monotonic()

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    def log_once(self, kind: str, text: str) -> None:
        if kind not in self.logged and len(self.logged) < 1024:
            self.logged.add(kind)
            log(text)

    def fail(self, code: int, reason: str) -> None:
        if self.stop is not None and not self.stop.done():
            self.stop.set_result(Stop(code, reason))

    # -- the program -----------------------------------------------------------------------
    def to_program(self, obj: dict[str, Any]) -> None:
        proc = self.proc
        if proc is None or proc.stdin is None or proc.stdin.is_closing():
            return
        transport = proc.stdin.transport
        if transport.get_write_buffer_size() > STDIN_BUFFER_BYTES:
            self.count("stdin_dropped")
            self.log_once("stdin", f"the node does not read its stdin ({STDIN_BUFFER_BYTES} "
                          "bytes queued): messages to it are dropped")
            return
        proc.stdin.write(_encode(obj).encode() + b"\n")

    async def read_stdout(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        out = self.proc.stdout
        lines = 0
        while True:
            lines += 1
            if lines % 64 == 0:
                await asyncio.sleep(0)  # buffered lines never suspend readline: let others run
            try:
                line = await out.readline()
            except (ValueError, asyncio.LimitOverrunError):
                self.fail(EXIT_PROTOCOL, f"{VIOLATION} {self.node} wrote a line over "
                          f"{MAX_LINE} bytes on stdout: not a Maelstrom message")
                return
            if not line:
                return
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except (ValueError, UnicodeDecodeError, RecursionError):
                obj = None
            problem = "not JSON" if obj is None else check_message(obj, self.node)
            if problem:
                shown = line[:120].decode(errors="replace").rstrip()
                self.fail(EXIT_PROTOCOL, f"{VIOLATION} {self.node} wrote a line on stdout that "
                          f"is not a Maelstrom message ({problem}): {shown!r}")
                return
            self.route(obj)

    async def copy_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        kept = 0
        while chunk := await self.proc.stderr.read(65536):
            if kept < LOG_LIMIT:
                chunk = chunk[:LOG_LIMIT - kept]
                kept += len(chunk)
                sys.stderr.buffer.write(chunk)
                sys.stderr.buffer.flush()
                if kept >= LOG_LIMIT:
                    log(f"the node's stderr passed {LOG_LIMIT} bytes: the rest is not kept")

    def route(self, obj: dict[str, Any]) -> None:
        dest, body = obj["dest"], obj["body"]
        if dest in self.links:
            self.count("messages")
            self.links[dest].send(_encode(obj).encode() + b"\n")
        elif dest == self.node:
            self.count("msgs_self")
            self.to_program(obj)
        elif dest == INIT_SRC and body.get("type") == "init_ok" and \
                body.get("in_reply_to") == INIT_MSG_ID and not self.initialized.is_set():
            self.initialized.set()
            log(f"{self.node} answered init")
        elif CLIENT_ID.fullmatch(dest):
            writer = self.clients.get(dest)
            if writer is None or writer.is_closing():
                self.count("client_replies_lost")
                return
            self.count("replies")
            writer.write(_encode(obj).encode() + b"\n")
            if writer.transport.get_write_buffer_size() > CLIENT_BUFFER_BYTES:
                writer.close()
        elif dest in SERVICES:
            self.fail(EXIT_SERVICE, f"{UNSUPPORTED} {self.node} sent a message to {dest}, a "
                      "Maelstrom service this harness does not provide: a node that needs a "
                      "Maelstrom service cannot run here")
        else:
            self.count("unknown_dest")
            self.log_once(f"dest-{dest}"[:80], f"{self.node} sent a message to {dest!r}, which "
                          "is neither a node nor a client: dropped")

    # -- connections -----------------------------------------------------------------------
    async def accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            first = await reader.readline()
            obj = json.loads(first) if first.strip() else None
            if isinstance(obj, dict) and obj.get("type") == "hello":
                await self.serve_peer(obj, reader, writer)
            elif isinstance(obj, dict) and obj.get("harness") == "status":
                writer.write(_encode(self.status()).encode() + b"\n")
                await writer.drain()
            elif obj is not None:
                await self.serve_client(obj, reader, writer)
        except (OSError, ValueError, UnicodeDecodeError, RecursionError, TimeoutError,
                asyncio.LimitOverrunError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass  # the bridge is stopping (a cancelled handler would be logged as an error)
        finally:
            writer.close()

    async def serve_peer(self, hello: dict[str, Any], reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        peer, nonce = hello.get("from"), hello.get("nonce")
        if peer not in self.links or not auth.valid_nonce(nonce):
            self.log_once(f"hello-{str(peer)[:40]}", f"refused a connection introducing itself "
                          f"as {str(peer)[:40]!r}")
            return
        ours = auth.new_nonce()
        writer.write(_encode({"type": "challenge", "from": self.node, "to": peer, "nonce": ours,
                              "proof": auth.proof(self.secret, "accept", peer, self.node, nonce,
                                                  ours)}).encode() + b"\n")
        line = await asyncio.wait_for(reader.readline(), HANDSHAKE_TIMEOUT_S)
        obj = json.loads(line)
        expected = auth.proof(self.secret, "dial", peer, self.node, nonce, ours)
        if not isinstance(obj, dict) or not auth.check(expected, obj.get("proof")):
            self.log_once(f"auth-{peer}", f"refused a connection claiming to be {peer}: it "
                          "failed the challenge")
            return
        while line := await reader.readline():
            msg = json.loads(line)
            if check_message(msg, peer) is None and msg["dest"] == self.node:
                self.count("messages_received")
                self.to_program(msg)

    async def serve_client(self, obj: Any, reader: asyncio.StreamReader,
                           writer: asyncio.StreamWriter) -> None:
        client = None
        while True:
            problem = check_message(obj)
            if problem is None and not CLIENT_ID.fullmatch(obj["src"]):
                problem = f"src {obj['src']!r} is not a client id (c1, c2, ...)"
            if problem is not None:
                writer.write(_encode({"error": f"not a client message: {problem}"}).encode()
                             + b"\n")
                return
            if client is None:
                client = obj["src"]
                old = self.clients.get(client)
                self.clients[client] = writer
                if old is not None and old is not writer:
                    old.close()
            elif obj["src"] != client:
                return
            self.count("requests")
            self.to_program({**obj, "dest": self.node})
            line = await reader.readline()
            if not line:
                break
            obj = json.loads(line)
        if client is not None and self.clients.get(client) is writer:
            del self.clients[client]

    def status(self) -> dict[str, Any]:
        return {"node": self.node, "init": "ok" if self.initialized.is_set() else "pending",
                "pid": self.proc.pid if self.proc else None,
                "peers": {p: link.connected for p, link in self.links.items()},
                "counters": dict(self.counters),
                "uptime_s": round(time.monotonic() - self.started, 3)}

    # -- the whole -------------------------------------------------------------------------
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self.stop = loop.create_future()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.fail, 0, "stopping (signal)")
        os.makedirs(self.data_dir, exist_ok=True)
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self.program, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, cwd=self.data_dir, limit=MAX_LINE + 1,
                preexec_fn=_die_with_parent)
        except OSError as exc:
            log(f"cannot start the node program {self.program[0]!r}: {exc.strerror or exc}")
            return EXIT_PROGRAM
        log(f"{self.node}: started {' '.join(self.program)} (pid {self.proc.pid}) in "
            f"{self.data_dir}")
        tasks = [asyncio.ensure_future(c) for c in
                 (self.read_stdout(), self.copy_stderr(), self.proc.wait(), self.watch_init())]
        server = await asyncio.start_server(self.accept, *self.listen, limit=MAX_LINE + 1,
                                            reuse_address=True)
        tasks += [asyncio.ensure_future(link.run()) for link in self.links.values()]
        self.to_program({"src": INIT_SRC, "dest": self.node, "body": {
            "type": "init", "msg_id": INIT_MSG_ID, "node_id": self.node,
            "node_ids": self.nodes}})
        tasks[2].add_done_callback(lambda t: self.fail(
            EXIT_PROGRAM, f"the node program exited with status {t.result()}"))
        stop = await self.stop
        server.close()
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 2.0)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(tasks[1], 1.0)  # the program's last words
        for task in tasks:
            task.cancel()
        log(stop.reason)
        return stop.code

    async def watch_init(self) -> None:
        try:
            await asyncio.wait_for(self.initialized.wait(), self.init_timeout)
        except TimeoutError:
            self.fail(EXIT_NO_INIT, f"{VIOLATION} {self.node} did not answer init within "
                      f"{self.init_timeout:g} s")


def _hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return host, int(port)


def _peer(text: str) -> tuple[str, tuple[str, int]]:
    name, sep, address = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=HOST:PORT")
    return name, _hostport(address)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bridge", description=__doc__.split("\n")[0])
    parser.add_argument("--id", required=True)
    parser.add_argument("--nodes", required=True, type=lambda s: s.split(","))
    parser.add_argument("--listen", required=True, type=_hostport)
    parser.add_argument("--peer", action="append", default=[], type=_peer, dest="peer_list")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--secret-file", required=True)
    parser.add_argument("--init-timeout", type=float, default=10.0)
    parser.add_argument("program", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    args.peers = dict(args.peer_list)
    if args.program[:1] == ["--"]:
        args.program = args.program[1:]
    if not args.program:
        parser.error("no node program given (after --)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # The bridge leads the process group its program joins: the harness pauses and kills a
    # member by signalling that group.
    with contextlib.suppress(OSError):
        if os.getpgrp() != os.getpid():
            os.setpgid(0, 0)
    try:
        secret = auth.load_secret(args.secret_file)
    except auth.SecretError as exc:
        log(f"cannot start: {exc}")
        return 2
    try:
        return asyncio.run(Bridge(args, secret).run())
    except OSError as exc:
        log(f"cannot start: {exc.strerror or exc}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
