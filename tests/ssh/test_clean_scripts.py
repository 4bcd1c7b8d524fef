"""The shell scripts `harness clean --hosts` runs on a host, run here with sh: no SSH needed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from harness.backends.ssh.clean import _instances_script, _remove_instance_script


def sh(script: str) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30)


def test_instances_are_listed_with_owner_and_live_node(tmp_path: Path) -> None:
    root = tmp_path / "home dir" / ".paxos-harness"
    live, dead = root / "run-a", root / "run-b"
    for d in (live, dead):
        (d / "data").mkdir(parents=True)
    (live / "owner").write_text("run-a\nhost:123\n")
    # A stand-in node: its command line names the instance's data directory, as a node's does.
    node = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)",
                             "--data-dir", str(live / "data")])
    try:
        (live / "node.pid").write_text(str(node.pid))
        (dead / "node.pid").write_text(str(node.pid))  # a pid that is not this instance's node
        res = sh(_instances_script(str(root)))
        assert res.returncode == 0, res.stderr
        rows = sorted(line.split("\t") for line in res.stdout.splitlines())
        assert rows == [["instance", str(live), "run-a", "host:123", str(node.pid)],
                        ["instance", str(dead), "", "", ""]]

        res = sh(_remove_instance_script(str(live), str(node.pid)))
        assert res.returncode == 0, res.stderr
        assert node.wait(timeout=10) < 0
        assert not live.exists() and dead.exists()
    finally:
        if node.poll() is None:
            node.kill()
            node.wait()


def test_a_pid_that_is_no_longer_the_node_is_not_signalled(tmp_path: Path) -> None:
    base = tmp_path / "run-c"
    (base / "data").mkdir(parents=True)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        res = sh(_remove_instance_script(str(base), str(other.pid)))
        assert res.returncode == 0, res.stderr
        assert other.poll() is None, "a process that is not the node was killed"
        assert not base.exists()
    finally:
        other.kill()
        other.wait()
