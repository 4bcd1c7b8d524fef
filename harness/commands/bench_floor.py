"""What this machine allows: the floor under `harness bench`'s figures, and a reproducible load.

The floor of a one-client write is a client round trip, one peer round trip (the Accepts; the
leader's own fsync runs beside them) and one fsync; of a one-client read, the two round trips
(ReadIndex confirms leadership with one heartbeat round, no disk). Both are measured here before
the cells run, with the same kinds of parts the nodes use: an append plus `fdatasync` in the data
root, and a blocking request/reply over TCP on loopback between two Python processes (so one
process wake-up on each side is in the floor, as it is in every hop of the node). Beside it, the
fsync as three processes syncing at once see it: the members of a local cluster share one disk,
and that, not the lone fsync, is what a follower's vote waits for.

`BackgroundLoad` runs N CPU-bound processes during the measurement, so the figures for a busy
machine can be taken again on purpose instead of waiting for one.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_ECHO = r"""
import socket, sys
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(1)
srv.settimeout(10)
print(srv.getsockname()[1], flush=True)
conn, _ = srv.accept()
conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
conn.settimeout(10)
while True:
    data = conn.recv(4096)
    if not data:
        break
    conn.sendall(data)
"""

# A spinning process that ends on its own when the bench that started it is gone (or after its
# lifetime), even if that bench was killed before it could stop it.
_SPIN = r"""
import os, sys, time
parent, end = int(sys.argv[2]), time.monotonic() + float(sys.argv[1])
while time.monotonic() < end and os.getppid() == parent:
    for _ in range(200_000):
        pass
"""


def _quantiles(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    n = len(values)
    return {"p50_ms": values[n // 2] * 1000, "p99_ms": values[min(n - 1, int(0.99 * n))] * 1000,
            "samples": n}


def fsync_times(directory: str | None, samples: int) -> list[float]:
    """Seconds of each of `samples` appends of 64 bytes plus `fdatasync`, in a fresh file under
    `directory` (removed after)."""
    fd, path = tempfile.mkstemp(prefix="bench-floor-", dir=directory)
    try:
        times = []
        record = b"x" * 63 + b"\n"
        for _ in range(samples):
            t0 = time.perf_counter()
            os.write(fd, record)
            os.fdatasync(fd)
            times.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
        os.unlink(path)
    return times


def fsync_latency(directory: str | None, samples: int = 200) -> dict[str, float]:
    return _quantiles(fsync_times(directory, samples))


# One of the processes syncing at once: they start together at a wall-clock instant.
_FSYNC_PEER = r"""
import json, sys, time
from harness.commands.bench_floor import fsync_times
start = float(sys.argv[2])
while time.time() < start:
    time.sleep(0.001)
print(json.dumps(fsync_times(sys.argv[1] or None, int(sys.argv[3]))))
"""


def fsync_latency_shared(directory: str | None, members: int = 3,
                         samples: int = 200) -> dict[str, float]:
    """The same append and `fdatasync` by `members` processes at once on one file system, as
    the members of a local cluster do for every write: what one of them waits when all sync."""
    start = time.time() + 0.3
    root = str(Path(__file__).resolve().parents[2])   # the peers import this module
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [root, os.environ.get("PYTHONPATH")]))}
    procs = [subprocess.Popen([sys.executable, "-c", _FSYNC_PEER, directory or "", str(start),
                               str(samples)], stdout=subprocess.PIPE, text=True, env=env)
             for _ in range(members)]
    times: list[float] = []
    try:
        for proc in procs:
            out, _ = proc.communicate(timeout=120)
            if proc.returncode != 0:
                raise OSError(f"the fsync probe in {directory or tempfile.gettempdir()} failed")
            times += json.loads(out)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(timeout=10)
    return _quantiles(times)


def loopback_round_trip(samples: int = 2000) -> dict[str, float]:
    """A 64-byte request and its echo over TCP on 127.0.0.1, to another Python process."""
    proc = subprocess.Popen([sys.executable, "-c", _ECHO], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.strip().isdigit():
            raise OSError("the loopback echo process did not start listening on 127.0.0.1")
        port = int(line)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            request = b"y" * 63 + b"\n"
            times = []
            for _ in range(samples):
                t0 = time.perf_counter()
                sock.sendall(request)
                got = 0
                while got < len(request):
                    chunk = sock.recv(4096)
                    if not chunk:
                        raise OSError("the loopback echo process closed its connection")
                    got += len(chunk)
                times.append(time.perf_counter() - t0)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    return _quantiles(times)


def measure_floor(data_root: str | None) -> dict[str, Any]:
    fsync = fsync_latency(data_root)
    rtt = loopback_round_trip()
    return {"fsync": fsync, "fsync_shared_by_3": fsync_latency_shared(data_root),
            "loopback_rtt": rtt,
            "write_p50_ms": 2 * rtt["p50_ms"] + fsync["p50_ms"],
            "read_p50_ms": 2 * rtt["p50_ms"],
            "data_root": data_root or tempfile.gettempdir()}


class BackgroundLoad:
    """`count` processes each spinning on a core for at most `lifetime` seconds."""

    def __init__(self, count: int, lifetime: float) -> None:
        self.count = count
        self.lifetime = lifetime
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> BackgroundLoad:
        for _ in range(self.count):
            self.procs.append(subprocess.Popen(
                [sys.executable, "-c", _SPIN, str(self.lifetime), str(os.getpid())],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL))
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            proc.kill()
        for proc in self.procs:
            proc.wait(timeout=10)
        self.procs = []
