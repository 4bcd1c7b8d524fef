"""`harness bench` end to end, briefly: both modes, writes and reads, JSON fields, counters, and
`--commands` with its memory samples. Figures are not checked (a benchmark, not a timed test),
only that the measurement measures what it says."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def bench(*args: str) -> dict:
    r = subprocess.run([sys.executable, "-m", "harness", "bench", *args, "--json"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_bench_modes_ops_and_counters() -> None:
    out = bench("--seconds", "0.4", "--clients", "1,4")
    assert out["machine"]["cpus"] and out["loadavg_before"]
    rows = {(r["mode"], r["op"], r["clients"]): r for r in out["rows"]}
    assert set(rows) == {(m, o, c) for m in ("multi", "classic") for o in ("write", "read")
                         for c in (1, 4)}
    for r in rows.values():
        assert r["ops"] > 0 and r["errors"] == 0 and r["p50_ms"] > 0
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


def test_bench_commands_reports_memory() -> None:
    out = bench("--commands", "3000", "--clients", "8")
    assert out["commands"] == 3000 and out["errors"] == 0
    samples = out["samples"]
    assert [s["commands"] for s in samples] == [0, *range(300, 3001, 300)]
    assert all(v and v > 5 for v in samples[-1]["rss_mb"].values())
    assert all(v and v > 1000 for v in samples[-1]["py_blocks"].values())
    assert out["leader_rss_mb_after"] > 5
