"""Compaction in a default run: snapshots taken and installed, and every checker still decides."""

from __future__ import annotations

import json
from pathlib import Path

from tests.harness.conftest import harness, node_processes


def test_default_run_takes_and_installs_snapshots_and_every_checker_decides(
        tmp_path: Path) -> None:
    store = tmp_path / "store"
    proc = harness("run", "--time-limit", "20", "--seed", "2", "--rate", "300", "--store",
                   str(store), "--quiet", timeout=300)
    run_dir = (store / "latest").resolve()
    results = json.loads((run_dir / "results.json").read_text())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    config = json.loads((run_dir / "config.json").read_text())
    assert config["snapshot_every"] == 100 and "disk:lose-unsynced/power-cut" in config["nemesis"]
    for name, checker in results["checkers"].items():
        assert checker["valid"] is True, (name, checker.get("reason"))
    samples = json.loads((run_dir / "status-samples.json").read_text())
    finals = [json.loads((run_dir / "nodes" / n / "status.json").read_text())
              for n in ("n1", "n2", "n3")]
    counters = [s["counters"] for sample in samples for s in sample["nodes"].values() if s]
    counters += [s["counters"] for s in finals if s]
    assert max(c["snapshots_taken"] for c in counters) > 0
    assert max(c["snapshots_installed"] for c in counters) > 0, \
        "no member installed a snapshot: no lagging or restarted member was behind one"
    eo = results["checkers"]["exactly-once"]
    assert eo["log_complete"] and eo["acknowledged_found"] == eo["acknowledged"] > 100
    logs = [json.loads((run_dir / "nodes" / n / "log.json").read_text()) for n in ("n1", "n2")]
    assert all(log["polls"] > 10 for log in logs)
    assert not node_processes(run_dir.name)
