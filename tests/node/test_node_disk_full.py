"""A node whose disk fills up stops with a FATAL line that names its data directory and the
error, not "internal error" and a traceback (issue 13)."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from .node_procs import Cluster, Conn


@pytest.fixture
def small_disk(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    data = tmp_path / "n1"
    data.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(data)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield tmp_path
    finally:
        subprocess.run(["umount", "-l", str(data)], capture_output=True)


def test_full_disk_is_named_in_the_fatal_line(small_disk):
    with Cluster(str(small_disk), n=1) as cluster:
        cluster.start()
        cluster.wait_leader()
        conn = Conn(cluster.ports["n1"], timeout=3.0)
        errors = 0
        try:
            for seq in range(1000):  # 256 KiB fill up in about 130 writes of 2 KiB
                reply = conn.call({"client": "c", "seq": seq, "op": "write", "key": seq,
                                   "value": "x" * 2048})
                if not reply.get("ok"):
                    errors += 1
                    break
        except (OSError, ConnectionError):
            errors += 1
        finally:
            conn.close()
        assert errors, "the disk never filled"
        deadline = time.monotonic() + 10
        while cluster.procs["n1"].poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert cluster.procs["n1"].poll() == 1
        log = cluster.log_text("n1")
        fatal = [line for line in log.splitlines() if "FATAL" in line]
        assert fatal and "the data directory" in fatal[0] and "ENOSPC" in fatal[0], log[-2000:]
        assert str(small_disk / "n1") in fatal[0]
        assert "Traceback" not in log and "internal error" not in log
