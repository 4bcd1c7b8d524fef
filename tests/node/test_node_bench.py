"""`harness bench` end to end, briefly: both modes, writes and reads, JSON fields, counters, and
`--commands` with its memory samples. Figures are not checked (a benchmark, not a timed test),
only that the measurement measures what it says."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.commands.bench_floor import BackgroundLoad, fsync_latency, loopback_round_trip

ROOT = Path(__file__).resolve().parents[2]


def bench(*args: str, env: dict[str, str] | None = None) -> dict:
    r = subprocess.run([sys.executable, "-m", "harness", "bench", *args, "--json"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, **(env or {})})
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_bench_modes_ops_and_counters() -> None:
    # a cell of 1 s: a stall of the shared disk or CPU shorter than that still leaves ops
    out = bench("--seconds", "1", "--clients", "1,4")
    assert out["machine"]["cpus"] and out["loadavg_before"]
    rows = {(r["mode"], r["op"], r["clients"]): r for r in out["rows"]}
    assert set(rows) == {(m, o, c) for m in ("multi", "classic") for o in ("write", "read")
                         for c in (1, 4)}
    for r in rows.values():
        assert r["ops"] > 0 and r["errors"] == 0 and r["p50_ms"] > 0, r
        assert r["messages_per_op"] and r["messages_per_op"] > 0
    multi_write = rows[("multi", "write", 1)]
    assert multi_write["phase1_per_op"] == 0 and multi_write["commits_per_op"] >= 0.9
    assert multi_write["fsyncs_per_op"] >= 2          # the leader's and the followers'
    multi_read = rows[("multi", "read", 4)]
    assert multi_read["phase1_per_op"] == 0 and multi_read["fsyncs_per_op"] == 0
    assert multi_read["commits_per_op"] < 0.1         # ReadIndex: no log slot per read
    classic = rows[("classic", "write", 4)]
    assert classic["phase1_per_op"] > 0.9 and classic["batch"] == 1
    assert {r["op"] for r in out["ratios"]} == {"write", "read"}
    floor = out["floor"]
    assert floor["fsync"]["p50_ms"] > 0 and floor["loopback_rtt"]["p50_ms"] > 0
    assert floor["fsync_shared_by_3"]["samples"] == 600
    assert floor["write_p50_ms"] == pytest.approx(
        2 * floor["loopback_rtt"]["p50_ms"] + floor["fsync"]["p50_ms"])
    for r in rows.values():
        if r["clients"] == 1:
            assert r["floor_p50_ms"] == floor[f"{r['op']}_p50_ms"]
            assert r["p50_over_floor"] == pytest.approx(r["p50_ms"] / r["floor_p50_ms"])
        else:
            assert r["floor_p50_ms"] is None and r["p50_over_floor"] is None
    assert out["background_load"] == 0


def test_the_node_runs_on_the_standard_loop_when_told() -> None:
    """uvloop where installed (the test extras install it), asyncio when PAXOS_NODE_LOOP says
    so: both loops carry writes and reads, and the status says which one ran."""
    try:
        import uvloop  # noqa: F401
        default = "uvloop"
    except ImportError:
        default = "asyncio"
    for env, expected in (({}, default), ({"PAXOS_NODE_LOOP": "asyncio"}, "asyncio")):
        out = bench("--seconds", "0.3", "--clients", "1,4", "--modes", "multi", env=env)
        assert {r["event_loop"] for r in out["rows"]} == {expected}
        assert all(r["ops"] > 0 and r["errors"] == 0 for r in out["rows"])


def test_bench_shows_its_progress_on_a_terminal() -> None:
    """A live line names the cell being measured and counts the cells; the table replaces it."""
    from tests.harness.conftest import harness_on_a_terminal

    status, out, text = harness_on_a_terminal("bench", "--seconds", "1", "--clients", "1",
                                              "--modes", "multi", timeout=120)
    assert status == 0
    assert "multi: writes, 1 client" in text and "multi: reads, 1 client" in text
    assert "0/2" in text and "2/2" in text
    assert "bench" not in out.splitlines()[0]      # stdout has the table, not the bar
    assert "write" in out and "floor:" in out and "three processes syncing at once" in out


def _spinners() -> list[int]:
    """Pids of background-load processes still alive (their command line names the loop)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"200_000" in cmd and b"getppid" in cmd:
                found.append(int(entry.name))
    return found


def test_background_load_runs_during_the_bench_and_is_gone_after() -> None:
    out = bench("--seconds", "0.3", "--clients", "1", "--modes", "multi", "--ops", "write",
                "--background-load", "2")
    assert out["background_load"] == 2 and out["rows"][0]["ops"] > 0
    assert _spinners() == []
    with BackgroundLoad(2, 30) as load:
        time.sleep(0.3)
        assert all(p.poll() is None for p in load.procs)
        assert set(p.pid for p in load.procs) <= set(_spinners())
    assert _spinners() == []


def test_background_load_ends_when_its_bench_is_killed() -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", "import time\nfrom harness.commands.bench_floor import "
         "BackgroundLoad\nwith BackgroundLoad(1, 60):\n    print('up', flush=True)\n"
         "    time.sleep(60)\n"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "up\n"
        assert len(_spinners()) == 1
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)
    deadline = time.monotonic() + 10
    while _spinners() and time.monotonic() < deadline:
        time.sleep(0.1)
    left = _spinners()
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert left == []


def test_floor_measures_a_disk_and_a_round_trip(tmp_path: Path) -> None:
    disk = fsync_latency(str(tmp_path), samples=20)
    rtt = loopback_round_trip(samples=50)
    assert disk["samples"] == 20 and rtt["samples"] == 50
    assert 0 < disk["p50_ms"] <= disk["p99_ms"] and 0 < rtt["p50_ms"] <= rtt["p99_ms"]
    assert list(tmp_path.iterdir()) == []      # the probe file is gone


def test_bench_commands_reports_memory() -> None:
    out = bench("--commands", "3000", "--clients", "8")
    assert out["commands"] == 3000 and out["errors"] == 0
    samples = out["samples"]
    assert [s["commands"] for s in samples] == [0, *range(300, 3001, 300)]
    assert all(v and v > 5 for v in samples[-1]["rss_mb"].values())
    assert all(v and v > 1000 for v in samples[-1]["py_blocks"].values())
    assert out["leader_rss_mb_after"] > 5
