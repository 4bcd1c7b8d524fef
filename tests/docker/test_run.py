"""Real `harness run --backend docker` runs of the real node: valid under partition, pause and
kill; an injected bug caught; Ctrl-C and a failing start leave nothing behind."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests import sigint_as_in_a_terminal
from tests.docker.conftest import REPO, assert_nothing_left, harness, read_results

pytestmark = [
    pytest.mark.docker,
    pytest.mark.slow,
    pytest.mark.skipif(not (REPO / "node" / "__main__.py").exists(),
                       reason="the node (node/__main__.py) is not there yet"),
]

KINDS = "partition,pause,kill"
TIME_LIMIT = 15
INTERVAL = 1.2


def seed_covering(kinds: str, tmp_path: Path) -> int:
    """A seed whose fault plan has every kind in `kinds` (the plan is fixed by the seed)."""
    from harness.run.config import RunConfig
    from harness.run.controller import Controller

    for seed in range(1, 200):
        config = RunConfig(backend="docker", nemesis=kinds, time_limit=TIME_LIMIT, seed=seed,
                           nemesis_interval=INTERVAL)
        scratch = tmp_path / f"plan-{seed}"
        scratch.mkdir()
        controller = Controller(config, scratch, progress=False)
        controller.history_close()
        if {f.kind for f in controller.plan} >= set(config.nemesis_kinds()):
            return seed
    raise AssertionError(f"no seed below 200 plans all of {kinds}")


def run_dir_of(store: Path) -> Path:
    return (store / "latest").resolve()


def docker_run(store: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return harness("run", "--backend", "docker", "--store", str(store), "--quiet", *args,
                   timeout=timeout)


def test_run_under_partition_pause_and_kill_is_valid(docker_client: Any, node_image: str,
                                                     tmp_path: Path) -> None:
    seed = seed_covering(KINDS, tmp_path)
    store = tmp_path / "store"
    proc = docker_run(store, "--nodes", "3", "--nemesis", KINDS, "--time-limit", str(TIME_LIMIT),
                      "--nemesis-interval", str(INTERVAL), "--seed", str(seed))
    run_dir = run_dir_of(store)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = read_results(run_dir)
    assert results["valid"] is True
    assert results["checkers"]["linearizability"]["valid"] is True
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    done = {op["f"] for op in history if op["process"] == "nemesis" and op["type"] == "info"
            and "error" not in (op.get("value") or {})}
    assert {"start-partition", "pause", "kill", "restart", "heal"} <= done, done
    assert sum(op["type"] == "ok" for op in history) > 50
    for node in ("n1", "n2", "n3"):
        node_dir = run_dir / "nodes" / node
        # on its own cluster address, not every interface (issue 14)
        log = (node_dir / "node.log").read_text()
        assert "listening on 0.0.0.0" not in log
        assert re.search(r"listening on \d+\.\d+\.\d+\.\d+:", log), log[:500]
        assert json.loads((node_dir / "status.json").read_text())["ok"]
        assert json.loads((node_dir / "container.json").read_text())["image"] == node_image
    assert_nothing_left(docker_client, run_dir.name)


def test_injected_bug_is_caught(docker_client: Any, node_image: str, tmp_path: Path) -> None:
    store = tmp_path / "store"
    proc = docker_run(store, "--nodes", "3", "--nemesis", "partition:isolate-leader/halves",
                      "--bug", "small-quorum", "--time-limit", str(TIME_LIMIT),
                      "--concurrency", "6", "--rate", "200", "--nemesis-interval", "1.5",
                      "--seed", "1")
    run_dir = run_dir_of(store)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    results = read_results(run_dir)
    assert results["valid"] is False
    assert "harness_error" not in results
    caught = {name for name, verdict in results["checkers"].items() if verdict["valid"] is False}
    assert caught & {"linearizability", "agreement"}, results["checkers"]
    assert_nothing_left(docker_client, run_dir.name)


def test_power_cuts_in_docker_lose_exactly_the_unsynced_writes(docker_client: Any,
                                                               node_image: str,
                                                               tmp_path: Path) -> None:
    """The correct node survives power cuts in containers; one that never syncs does not."""
    store = tmp_path / "store"
    proc = docker_run(store, "--nemesis", "disk:power-cut,pause", "--time-limit", "15",
                      "--seed", "3")
    run_dir = run_dir_of(store)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    logs = "".join((run_dir / "nodes" / n / "node.log").read_text() for n in ("n1", "n2", "n3"))
    assert "power cut: unsynced writes dropped" in logs
    assert_nothing_left(docker_client, run_dir.name)
    store = tmp_path / "store-unsafe"
    proc = docker_run(store, "--nemesis", "disk:power-cut", "--time-limit", "15", "--seed", "3",
                      "--node-arg=--unsafe-no-fsync")
    run_dir = run_dir_of(store)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    results = read_results(run_dir)
    assert "harness_error" not in results and results["valid"] is False
    assert_nothing_left(docker_client, run_dir.name)


def test_ctrl_c_leaves_nothing(docker_client: Any, node_image: str, tmp_path: Path) -> None:
    from harness.backends.docker import leftovers

    store = tmp_path / "store"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", "--backend", "docker",
                             "--time-limit", "60", "--store", str(store), "--quiet", "--seed",
                             "9"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=sigint_as_in_a_terminal)
    run_id = None
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if (store / "latest").exists():
                run_dir = run_dir_of(store)
                history = run_dir / "history.jsonl"
                if history.exists() and len(history.read_text().splitlines()) > 40:
                    run_id = run_dir.name
                    break
            time.sleep(0.2)
        assert run_id is not None, "the run never got going"
        assert len(leftovers(docker_client, run_id)["containers"]) == 3
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, out + err
    assert_nothing_left(docker_client, run_id)
    results = read_results(run_dir_of(store))
    assert results["incomplete"] is True
    clean = harness("clean", "--run", run_id, timeout=60)
    assert clean.returncode == 0 and "docker: removed 0 containers" in clean.stdout, clean.stdout


def test_node_failing_to_start_is_a_harness_error(docker_client: Any, node_image: str,
                                                  tmp_path: Path) -> None:
    store = tmp_path / "store"
    # The node parses this, but cannot start with it (options are checked up front, issue 13).
    proc = docker_run(store, "--nemesis", "none", "--time-limit", "5",
                      "--node-arg=--secret-file=/no/such/secret", timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 3, out
    assert "exited during start-up" in out and "/no/such/secret" in out, out
    assert_nothing_left(docker_client, run_dir_of(store).name)


def test_etcd_in_docker_is_valid_and_leaves_nothing(docker_client: Any, node_image: str,
                                                     tmp_path: Path) -> None:
    """etcd from the image's Debian package, one member per container, under the default mix;
    its peer links go through the harness's routed proxies on the bridge (issue 15)."""
    store = tmp_path / "store"
    proc = docker_run(store, "--system", "etcd", "--time-limit", "15", "--nemesis-interval",
                      "1.5", "--seed", "3", timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_dir = run_dir_of(store)
    results = json.loads((run_dir / "results.json").read_text())
    assert results["valid"] is True
    assert results["run"]["system"] == "etcd" and results["run"]["backend"] == "docker"
    assert results["checkers"]["linearizability"]["ok"] > 50
    # the faults moved the leader: etcd's own logs show later terms
    terms = {int(m) for n in ("n1", "n2", "n3")
             for m in re.findall(r"elected leader \w+ at term (\d+)",
                                 (run_dir / "nodes" / n / "node.log").read_text())}
    assert len(terms) >= 2, terms
    assert_nothing_left(docker_client, run_dir.name)
