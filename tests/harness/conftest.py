from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def harness(*args: str, timeout: float = 180, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO, env=env, **kwargs)


def harness_on_a_terminal(*args: str, timeout: float = 180) -> tuple[int, str, str]:
    """Run the harness with stderr on a pseudo-terminal (so live progress lines are drawn)
    and stdout on a pipe: (exit status, stdout, what the terminal showed)."""
    import pty
    import select
    import time

    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "harness", *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=slave, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + timeout
    out = ""
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if select.select([master], [], [], 0.2)[0]:
                try:
                    seen += os.read(master, 65536)
                except OSError:
                    break
        out, _ = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out, seen.decode(errors="replace")


def read_history(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]


def assert_well_formed(history: list[dict]) -> None:
    """Every invocation has at most one completion, on the same process, after it; a process
    that crashed (info) never invokes again; indices are 0, 1, 2, ..."""
    assert [op["index"] for op in history] == list(range(len(history)))
    open_ops: dict = {}
    crashed: set = set()
    for op in history:
        p = op["process"]
        if p == "nemesis":
            continue
        if op["type"] == "invoke":
            assert p not in crashed, f"process {p} invoked after an info: {op}"
            assert p not in open_ops, f"process {p} has two operations open: {op}"
            open_ops[p] = op
        else:
            assert p in open_ops, f"completion without invocation: {op}"
            inv = open_ops.pop(p)
            assert inv["f"] == op["f"] and inv.get("key") == op.get("key")
            if op["type"] == "info":
                crashed.add(p)
                assert op["value"] == inv["value"], "an info must keep its invoked value"


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store"


def node_processes(run_id: str | None = None) -> list[int]:
    from harness.backends.local import RUN_ENV

    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = (entry / "environ").read_bytes()
        except OSError:
            continue
        marker = f"{RUN_ENV}={run_id}".encode() if run_id else f"{RUN_ENV}=".encode()
        if marker in env:
            pids.append(int(entry.name))
    return pids
