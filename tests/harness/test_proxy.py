"""The per-edge proxies: a cut edge passes nothing, the other direction flows, heal restores."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from harness.backends.proxy import ProxyMesh


class Sink:
    """A TCP server that collects every line it receives."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.address = self.sock.getsockname()
        self.lines: list[bytes] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as f:
            for line in f:
                with self.lock:
                    self.lines.append(line.strip())

    def received(self) -> list[bytes]:
        with self.lock:
            return list(self.lines)


def send(address, payload: bytes) -> socket.socket:
    sock = socket.create_connection(address, timeout=2)
    sock.sendall(payload)
    return sock


def wait_for(predicate, timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


@pytest.fixture
def mesh():
    m = ProxyMesh()
    yield m
    m.close()


def test_cut_is_one_way_and_heal_restores_both(mesh: ProxyMesh) -> None:
    a, b = Sink(), Sink()
    a_to_b = mesh.add_edge(("a", "b"), b.address)
    b_to_a = mesh.add_edge(("b", "a"), a.address)

    s1 = send(a_to_b, b"one\n")
    assert wait_for(lambda: b"one" in b.received())

    mesh.set_cut({("a", "b")})
    # The established connection was closed by the cut, and a new one goes into a black hole.
    s2 = send(a_to_b, b"two\n")
    s3 = send(b_to_a, b"back\n")
    assert wait_for(lambda: b"back" in a.received())
    time.sleep(0.3)
    assert b"two" not in b.received()

    mesh.set_cut(set())
    s4 = send(a_to_b, b"three\n")
    s5 = send(b_to_a, b"again\n")
    assert wait_for(lambda: b"three" in b.received())
    assert wait_for(lambda: b"again" in a.received())
    assert b"two" not in b.received()
    for s in (s1, s2, s3, s4, s5):
        s.close()


def test_delay_slows_one_edge(mesh: ProxyMesh) -> None:
    b = Sink()
    edge = mesh.add_edge(("a", "b"), b.address)
    mesh.set_delay({("a", "b"): 0.4})
    start = time.monotonic()
    s = send(edge, b"slow\n")
    time.sleep(0.2)
    s.sendall(b"later\n")
    assert wait_for(lambda: b"later" in b.received(), timeout=3)
    elapsed = time.monotonic() - start
    # Each chunk waits 0.4 s from its arrival: a delay, not a throttle that adds up.
    assert 0.55 <= elapsed < 0.75, elapsed
    assert b.received() == [b"slow", b"later"]
    s.close()


def test_unknown_edge_is_refused(mesh: ProxyMesh) -> None:
    with pytest.raises(ValueError, match="unknown edges"):
        mesh.set_cut({("x", "y")})


def test_lossy_edge_drops_whole_lines_only() -> None:
    from harness.backends.proxy import _EdgeProxy

    proxy = _EdgeProxy(("n1", "n2"), ("127.0.0.1", 1))
    proxy.loss = 0.5
    sent = [f'{{"m": {i}}}'.encode() for i in range(2000)]
    stream = b"\n".join(sent) + b"\n"
    out, partial = b"", b""
    for i in range(0, len(stream), 777):  # chunks that cut lines anywhere
        kept, partial = proxy._lossy(partial + stream[i:i + 777])
        out += kept
    assert partial == b""
    lines = out.split(b"\n")[:-1]
    assert set(lines) <= set(sent)  # every line that arrives is whole
    assert 800 < len(lines) < 1200 and proxy.lost_messages == 2000 - len(lines)
    assert lines == sorted(lines, key=lambda b: int(b[6:-1]))  # in order
    proxy.loss = 0.0
    kept, partial = proxy._lossy(b'{"m": 1}\n{"m"')
    assert (kept, partial) == (b'{"m": 1}\n', b'{"m"')
