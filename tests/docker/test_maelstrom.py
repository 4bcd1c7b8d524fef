"""Maelstrom nodes in containers (issue 16): the bridge carries each program's stdio over real
TCP between containers, so iptables partitions act on real packets; a program given as a file
is copied next to the bridge in each container."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.docker.conftest import REPO, assert_nothing_left, harness, read_results

pytestmark = [pytest.mark.docker, pytest.mark.slow]

NODES = REPO / "tests" / "systems" / "maelstrom_nodes"
BUNDLED = ["--bin", "python3", "--bin-arg=-m", "--bin-arg=node", "--bin-arg=--maelstrom"]


def _run(store: Path, *args: str) -> tuple[int, Path, dict]:
    proc = harness("run", "--system", "maelstrom", "--backend", "docker", "--store",
                   str(store), "--quiet", *args, timeout=300)
    run_dir = (store / "latest").resolve()
    assert (run_dir / "results.json").exists(), proc.stdout + proc.stderr
    return proc.returncode, run_dir, read_results(run_dir)


def test_bundled_node_in_maelstrom_mode_is_valid_in_docker(docker_client: Any, node_image: str,
                                                           tmp_path: Path) -> None:
    code, run_dir, results = _run(tmp_path / "store", *BUNDLED,
                                  "--nemesis", "partition,pause,kill", "--time-limit", "18",
                                  "--nemesis-interval", "1.5", "--seed", "4")
    assert code == 0, results
    assert results["valid"] is True and results["checkers"]["protocol"]["valid"] is True
    assert results["run"].get("backend", "docker") == "docker"
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    done = {op["f"] for op in history if op["process"] == "nemesis" and op["type"] == "info"}
    assert {"start-partition", "pause", "kill"} <= done, done
    assert sum(op["type"] == "ok" for op in history) > 50
    assert "answered init" in (run_dir / "nodes" / "n1" / "node.log").read_text()
    assert_nothing_left(docker_client, run_dir.name)


def test_wrong_node_from_a_file_is_caught_in_docker(docker_client: Any, node_image: str,
                                                   tmp_path: Path) -> None:
    code, run_dir, results = _run(tmp_path / "store", "--bin", str(NODES / "local_reads.py"),
                                  "--nemesis", "partition", "--time-limit", "12",
                                  "--nemesis-interval", "1.5", "--seed", "1")
    assert code == 1, results
    assert results["checkers"]["linearizability"]["valid"] is False
    # the program ran from its copy next to the bridge
    assert "/opt/paxos/bin/local_reads.py" in (run_dir / "nodes" / "n1" / "node.log").read_text()
    assert_nothing_left(docker_client, run_dir.name)
