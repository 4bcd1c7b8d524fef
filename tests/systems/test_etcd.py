"""etcd, a system nobody here wrote, under the harness: real etcd 3.4 members on loopback
(Debian's etcd-server), real faults, real verdicts (issue 15)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from tests.harness.conftest import harness, node_processes

pytestmark = pytest.mark.skipif(shutil.which("etcd") is None,
                                reason="etcd is not installed (apt-get install etcd-server)")


def _run(store: Path, *args: str, timeout: float = 180):
    proc = harness("run", "--system", "etcd", "--store", str(store), "--quiet", *args,
                   timeout=timeout)
    run_dir = (store / "latest").resolve()
    results = json.loads((run_dir / "results.json").read_text())
    return proc, run_dir, results


def _etcd_processes() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "etcd":
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


@pytest.mark.slow
@pytest.mark.parametrize("nemesis", ["partition", "pause", "kill", "partition,pause,kill"])
def test_etcd_is_valid_under_each_fault(tmp_path: Path, nemesis: str) -> None:
    before = set(_etcd_processes())
    proc, run_dir, results = _run(tmp_path / "store", "--nemesis", nemesis,
                                  "--time-limit", "12", "--nemesis-interval", "1.5",
                                  "--seed", "3")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert results["valid"] is True
    assert results["run"]["system"] == "etcd"
    checkers = results["checkers"]
    assert checkers["linearizability"]["valid"] is True
    assert checkers["linearizability"]["ok"] > 100
    # the checkers that need a chosen log say they do not apply: never a silent pass
    assert checkers["agreement"]["valid"] == "n/a" and "not applicable" in \
        checkers["agreement"]["reason"]
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    faults = [op for op in history if op["process"] == "nemesis" and op["type"] == "info"
              and op["f"] not in ("heal",) and not op["f"].startswith(("stop", "resume",
                                                                        "restart"))]
    assert faults, "no fault was applied"
    assert not (set(_etcd_processes()) - before), "etcd members left running"
    assert not node_processes(run_dir.name)


@pytest.mark.slow
def test_partitions_reach_etcd_and_the_leader_changes(tmp_path: Path) -> None:
    proc, run_dir, results = _run(tmp_path / "store", "--nemesis", "partition:isolate-leader",
                                  "--time-limit", "12", "--nemesis-interval", "3",
                                  "--seed", "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # etcd's own logs: a leader elected in a later term than the first one (the isolated
    # leader's followers moved on without it)
    terms = {int(m) for n in ("n1", "n2", "n3")
             for m in re.findall(r"elected leader \w+ at term (\d+)",
                                 (run_dir / "nodes" / n / "node.log").read_text())}
    assert len(terms) >= 2, (terms, results["perf"]["windows"]["faults"]["counters"])


@pytest.mark.slow
def test_serializable_reads_are_caught_stale_under_partitions(tmp_path: Path) -> None:
    # Long isolations and many clients: a member cut off keeps answering serializable reads
    # from its own state while the others go on writing. Whether one such read lands after an
    # acknowledged write depends on real etcd's timing, so up to three seeds are tried (each
    # caught it alone when measured; seed 4 once missed on a busy CI machine); every run that
    # ends must be a real verdict, never a harness failure.
    caught = None
    outcomes = []
    for seed in ("4", "6", "7"):
        proc, run_dir, results = _run(tmp_path / f"store-{seed}", "--serializable-reads",
                                      "--nemesis", "partition:isolate-one/isolate-leader",
                                      "--nemesis-interval", "5", "--time-limit", "25",
                                      "--concurrency", "12", "--rate", "300", "--seed", seed)
        assert proc.returncode in (0, 1), proc.stdout + proc.stderr
        outcomes.append((seed, proc.returncode))
        if proc.returncode == 1:
            caught = results
            break
    assert caught is not None, f"no stale serializable read caught: {outcomes}"
    lin = caught["checkers"]["linearizability"]
    assert lin["valid"] is False
    op = lin["failure"]["op"]
    assert op["f"] == "read" and op["node"] in ("n1", "n2", "n3")
    assert f"(served by {op['node']})" in lin["reason"]


def test_what_etcd_cannot_do_is_refused_with_one_line(tmp_path: Path) -> None:
    for args, words in ((["--bug", "read-local"], "--bug needs a system that can inject"),
                        (["--workload", "set"], "system etcd cannot run workload 'set'"),
                        (["--nemesis", "disk"], "cannot do disk"),
                        (["--backend", "ssh", "--hosts", "a,b,c"],
                         "runs on the local and docker backends only")):
        proc = harness("run", "--system", "etcd", "--store", str(tmp_path / "s"), *args,
                       timeout=60)
        assert proc.returncode == 3, proc.stdout + proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and words in lines[0], proc.stderr
        assert not (tmp_path / "s").exists()


def test_message_loss_is_refused_for_etcd(tmp_path: Path) -> None:
    """etcd's peer links are HTTP streams: a proxy cannot drop one message whole."""
    proc = harness("run", "--system", "etcd", "--nemesis", "delay:lossy-links", "--store",
                   str(tmp_path / "store"), "--quiet")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "cannot do loss for system etcd" in proc.stderr
    assert not (tmp_path / "store").exists()
