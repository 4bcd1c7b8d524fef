"""Real node processes on loopback for integration tests: start, talk to, kill."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class Conn:
    """A blocking newline-JSON client connection."""

    def __init__(self, port: int, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.file = self.sock.makefile("rb")
        self.next_id = 0

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv(self) -> dict[str, Any] | None:
        line = self.file.readline()
        if not line:
            return None
        return json.loads(line)

    def call(self, req: dict[str, Any]) -> dict[str, Any]:
        self.next_id += 1
        req = {"id": self.next_id, **req}
        self.send_raw(json.dumps(req).encode() + b"\n")
        while True:
            reply = self.recv()
            if reply is None:
                raise ConnectionError("closed")
            if reply.get("id") == self.next_id or reply.get("request_id") == self.next_id:
                return reply

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()
            self.sock.close()


def request(port: int, req: dict[str, Any], timeout: float = 3.0) -> dict[str, Any] | None:
    try:
        c = Conn(port, timeout)
    except OSError:
        return None
    try:
        return c.call(req)
    except (OSError, ValueError, ConnectionError):
        return None
    finally:
        c.close()


class Cluster:
    def __init__(self, tmpdir: str, n: int = 3, *, election_ms: int = 300,
                 heartbeat_ms: int = 50, extra: dict[str, list[str]] | None = None,
                 common: list[str] | None = None) -> None:
        self.ids = [f"n{i + 1}" for i in range(n)]
        self.ports = dict(zip(self.ids, free_ports(n), strict=True))
        self.tmpdir = tmpdir
        self.election_ms = election_ms
        self.heartbeat_ms = heartbeat_ms
        self.extra = extra or {}
        self.common = common or []
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, str] = {}
        # The cluster secret peers authenticate with (node.auth), readable by its owner only.
        self.secret_file = os.path.join(tmpdir, "cluster.secret")
        if not os.path.exists(self.secret_file):
            fd = os.open(self.secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))

    def args(self, nid: str) -> list[str]:
        a = [sys.executable, "-m", "node", "--id", nid,
             "--listen", f"127.0.0.1:{self.ports[nid]}",
             "--data-dir", os.path.join(self.tmpdir, nid),
             "--election-timeout-ms", str(self.election_ms),
             "--heartbeat-ms", str(self.heartbeat_ms), "--secret-file", self.secret_file]
        for p in self.ids:
            if p != nid:
                a += ["--peer", f"{p}=127.0.0.1:{self.ports[p]}"]
        return a + self.common + self.extra.get(nid, [])

    def start(self, nid: str | None = None) -> None:
        for i in [nid] if nid else self.ids:
            path = os.path.join(self.tmpdir, f"{i}.log")
            self.logs[i] = path
            with open(path, "ab") as logf:
                self.procs[i] = subprocess.Popen(self.args(i), cwd=ROOT, stdout=logf,
                                                 stderr=subprocess.STDOUT,
                                                 stdin=subprocess.DEVNULL)
        for i in [nid] if nid else self.ids:
            self.wait_port(i)

    def wait_port(self, nid: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.procs[nid].poll() is not None:
                raise RuntimeError(f"{nid} exited: {self.log_text(nid)[-2000:]}")
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", self.ports[nid]), timeout=0.2).close()
                return
            time.sleep(0.02)
        raise RuntimeError(f"{nid} did not listen")

    def log_text(self, nid: str) -> str:
        with open(self.logs[nid], errors="replace") as f:
            return f.read()

    def kill(self, nid: str, sig: int = signal.SIGKILL) -> None:
        p = self.procs.get(nid)
        if p is not None and p.poll() is None:
            p.send_signal(sig)
            p.wait(timeout=10)

    def stop_all(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(timeout=10)

    def status(self, nid: str) -> dict[str, Any] | None:
        return request(self.ports[nid], {"op": "status"}, timeout=1.0)

    def leader(self, among: list[str] | None = None) -> str | None:
        for nid in among or self.ids:
            p = self.procs.get(nid)
            if p is None or p.poll() is not None:
                continue
            st = self.status(nid)
            if st and st.get("role") == "leader" and st.get("serving"):
                return nid
        return None

    def wait_leader(self, timeout: float = 10.0, among: list[str] | None = None) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ld = self.leader(among)
            if ld:
                return ld
            time.sleep(0.02)
        raise TimeoutError("no serving leader")

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


def peer_link(port: int, me: str, to: str, secret: bytes | None, timeout: float = 3.0
              ) -> socket.socket | None:
    """Dial a node as peer `me` through the handshake of node.auth; None if it refuses (no
    secret, a wrong one, or the node closed the connection)."""
    from node import auth

    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    nonce = auth.new_nonce()
    sock.sendall(json.dumps({"type": "hello", "from": me, "to": to, "nonce": nonce}).encode()
                 + b"\n")
    reader = sock.makefile("rb")
    try:
        line = reader.readline()
    except OSError:
        line = b""
    challenge = json.loads(line) if line.endswith(b"\n") else None
    if not isinstance(challenge, dict) or challenge.get("type") != "challenge":
        sock.close()
        return None
    proof = (auth.proof(secret, "dial", me, to, nonce, challenge["nonce"]) if secret
             else "0" * 64)
    sock.sendall(json.dumps({"type": "auth", "proof": proof}).encode() + b"\n")
    return sock


def cluster_secret(cluster: Cluster) -> bytes:
    with open(cluster.secret_file, "rb") as f:
        return f.read().strip()
