"""`harness run --backend ssh` end to end, against sshd containers standing in for three hosts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import sigint_as_in_a_terminal
from tests.ssh.conftest import NODES, REPO, Cluster, harness

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def ssh_run(cluster: Cluster, tmp_path: Path, *extra: str, known_hosts: Path | None = None,
            seed: int = 3) -> tuple[object, Path]:
    store = tmp_path / "store"
    hosts = cluster.hosts_file(tmp_path / "hosts")
    proc = harness("run", "--backend", "ssh", "--hosts", str(hosts),
                   "--ssh-known-hosts", str(known_hosts or cluster.known_hosts),
                   "--time-limit", "12", "--nemesis", "partition,pause,kill",
                   "--nemesis-interval", "1.2", "--seed", str(seed), "--quiet",
                   "--store", str(store), *extra)
    return proc, (store / "latest").resolve()


def assert_hosts_clean(cluster: Cluster) -> None:
    assert not cluster.node_processes(), cluster.node_processes()
    for i in range(NODES):
        assert not cluster.leftovers(i), f"{cluster.names[i]}: {cluster.leftovers(i)}"


def test_short_run_under_partition_pause_kill_is_valid(cluster: Cluster, tmp_path: Path) -> None:
    proc, run_dir = ssh_run(cluster, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "verdict: valid" in proc.stdout
    results = json.loads((run_dir / "results.json").read_text())
    assert results["valid"] is True
    history = [json.loads(line) for line in
               (run_dir / "history.jsonl").read_text().splitlines()]
    assert sum(op["type"] == "ok" for op in history) > 20
    planned = {f["kind"] for f in json.loads((run_dir / "plan.json").read_text())}
    done = {op["f"] for op in history if op["process"] == "nemesis" and op["type"] == "info"}
    wanted = {"partition": "start-partition", "pause": "pause", "kill": "kill"}
    assert {wanted[k] for k in planned} | {"heal"} <= done, (planned, done)
    assert not [op for op in history if op["process"] == "nemesis"
                and "error" in (op.get("value") or {})], "a fault failed"
    for node in ("n1", "n2", "n3"):
        log = (run_dir / "nodes" / node / "node.log").read_text()
        assert log.strip(), f"{node}'s log was not fetched"
        assert json.loads((run_dir / "nodes" / node / "status.json").read_text())["ok"]
        host = json.loads((run_dir / "nodes" / node / "host.json").read_text())
        assert host["address"] == cluster.addresses[int(node[1:]) - 1]
    assert_hosts_clean(cluster)


def test_changed_host_key_is_refused_before_anything_starts(cluster: Cluster,
                                                            tmp_path: Path) -> None:
    """n2 gets a new host key (a reinstalled host, or someone in between): the run stops before
    it starts, with one line naming n2, and no host is touched."""
    index = 1
    old = cluster.host_keys[index]
    script = ("rm -f /etc/ssh/ssh_host_ed25519_key* && "
              "ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key && "
              "pkill -HUP -x sshd")
    code, out = cluster.exec(index, "sh", "-c", script)
    assert code == 0, out
    try:
        from tests.ssh.conftest import wait_for_ssh

        wait_for_ssh(cluster.addresses[index])
        new = cluster.host_key(index)
        assert new != old
        proc, run_dir = ssh_run(cluster, tmp_path)
        assert proc.returncode == 3, proc.stdout + proc.stderr
        # Refused before anything starts: one line, and no run directory (issue 13).
        error = proc.stderr.strip().splitlines()
        assert len(error) == 1, proc.stderr
        assert f"host n2 (root@{cluster.addresses[index]}:22): HOST KEY MISMATCH" in error[0]
        assert not (tmp_path / "store").exists()
        assert_hosts_clean(cluster)
    finally:
        # The rest of the session knows the host by its new key.
        cluster.host_keys[index] = cluster.host_key(index)
        cluster.write_known_hosts()


def test_ctrl_c_stops_everything_on_the_hosts(cluster: Cluster, tmp_path: Path) -> None:
    """Hosts as a comma list with --ssh-key; Ctrl-C mid-run: exit 130, the partial history kept,
    and the hosts as they were."""
    store = tmp_path / "store"
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", "--backend", "ssh",
         "--hosts", cluster.hosts_spec(), "--ssh-key", str(cluster.key),
         "--ssh-known-hosts", str(cluster.known_hosts), "--time-limit", "60",
         "--nemesis", "partition,pause", "--nemesis-interval", "1", "--quiet",
         "--store", str(store)],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, preexec_fn=sigint_as_in_a_terminal)
    try:
        deadline = time.monotonic() + 60
        history = None
        while time.monotonic() < deadline:
            history = store / "latest" / "history.jsonl"
            if history.exists() and len(history.read_text().splitlines()) > 40 \
                    and '"nemesis"' in history.read_text():
                break
            time.sleep(0.2)
        assert history is not None and history.exists(), "the run never started"
        assert cluster.node_processes(), "no node running mid-run"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, out + err
    results = json.loads((store / "latest" / "results.json").read_text())
    assert results["incomplete"] is True
    assert_hosts_clean(cluster)


def _start_run(cluster: Cluster, store: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", "--backend", "ssh",
         "--hosts", cluster.hosts_spec(), "--ssh-key", str(cluster.key),
         "--ssh-known-hosts", str(cluster.known_hosts), "--time-limit", "60",
         "--nemesis", "partition", "--nemesis-interval", "1", "--quiet", "--store", str(store)],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, preexec_fn=sigint_as_in_a_terminal)
    deadline = time.monotonic() + 60
    history = store / "latest" / "history.jsonl"
    while time.monotonic() < deadline and proc.poll() is None:
        if history.exists() and '"nemesis"' in history.read_text():
            return proc
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("the run never reached its faults: " + proc.communicate()[1][-2000:])


def _pids(cluster: Cluster) -> dict[str, set[str]]:
    return {host: {line.split()[0] for line in out.splitlines()}
            for host, out in cluster.node_processes().items()}


def _clean(cluster: Cluster) -> subprocess.CompletedProcess:
    return harness("clean", "--hosts", cluster.hosts_spec(), "--ssh-key", str(cluster.key),
                   "--ssh-known-hosts", str(cluster.known_hosts), timeout=120)


def test_clean_removes_what_a_killed_controller_left_and_keeps_a_live_run(
        cluster: Cluster, tmp_path: Path) -> None:
    """A controller killed with SIGKILL cannot tear down: its nodes keep running on the hosts,
    with its files and firewall rules. `harness clean --hosts` removes them; a run whose
    controller is alive is left alone."""
    dead = _start_run(cluster, tmp_path / "a")
    dead.kill()
    dead.communicate()
    assert len(cluster.node_processes()) == NODES, "the killed controller's nodes are gone"
    assert all(cluster.leftovers(i) for i in range(NODES))
    proc = _clean(cluster)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("killed node pid") == NODES, proc.stdout
    assert_hosts_clean(cluster)

    live = _start_run(cluster, tmp_path / "b")
    try:
        running = _pids(cluster)
        proc = _clean(cluster)
        assert proc.returncode == 0 and "ssh: nothing left behind" in proc.stdout, proc.stdout
        assert len(running) == NODES and _pids(cluster) == running, "clean touched a live run"
        live.send_signal(signal.SIGINT)
        live.communicate(timeout=60)
    finally:
        if live.poll() is None:
            live.kill()
            live.communicate()
    assert live.returncode == 130
    assert_hosts_clean(cluster)


def test_clean_with_bad_hosts_is_one_line(tmp_path: Path) -> None:
    proc = harness("clean", "--hosts", "root@127.0.0.1:1", "--ssh-known-hosts",
                   str(tmp_path / "none"), timeout=60)
    assert proc.returncode == 3
    assert proc.stderr.count("\n") == 1 and "known_hosts" in proc.stderr, proc.stderr


def test_maelstrom_node_runs_on_the_hosts(cluster: Cluster, tmp_path: Path) -> None:
    """The bundled node in Maelstrom mode under the bridge, deployed on each host (issue 16):
    pause and kill reach the bridge and its program together (its process group)."""
    proc, run_dir = ssh_run(cluster, tmp_path, "--system", "maelstrom", "--bin", "python3",
                            "--bin-arg=-m", "--bin-arg=node", "--bin-arg=--maelstrom")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads((run_dir / "results.json").read_text())
    assert results["valid"] is True and results["checkers"]["protocol"]["valid"] is True
    history = [json.loads(line) for line in
               (run_dir / "history.jsonl").read_text().splitlines()]
    assert sum(op["type"] == "ok" for op in history) > 20
    assert not [op for op in history if op["process"] == "nemesis"
                and "error" in (op.get("value") or {})], "a fault failed"
    assert "answered init" in (run_dir / "nodes" / "n1" / "node.log").read_text()
    assert_hosts_clean(cluster)
