"""The Docker backend against a stand-in node (tests/docker/fakenode): real containers, real
iptables in their kernels, real signals. Needs a Docker engine."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.backends.base import BackendError
from harness.backends.docker import DockerBackend, clean_docker, leftovers
from tests.docker.conftest import FAKE_NODE, REPO, assert_nothing_left

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def ask(address: tuple[str, int], request: dict, timeout: float = 2.0) -> dict | None:
    try:
        with socket.create_connection(address, timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall((json.dumps(request) + "\n").encode())
            line = sock.makefile().readline()
    except OSError:
        return None
    return json.loads(line) if line else None


def wait_answering(backend: DockerBackend, node: str, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reply = ask(backend.client_address(node), {"op": "status"}, 0.5)
        if reply:
            return reply
        time.sleep(0.05)
    raise AssertionError(f"{node} never answered; log: {backend.log_tail(node)}")


def send(backend: DockerBackend, src: str, dst: str, text: str) -> bool:
    reply = ask(backend.client_address(src), {"op": "send", "to": dst, "text": text}, 4.0)
    assert reply is not None, f"{src} did not answer the controller"
    return bool(reply["ok"])


def received(backend: DockerBackend, node: str) -> list[str]:
    reply = ask(backend.client_address(node), {"op": "received"})
    assert reply is not None
    return [note["text"] for note in reply["notes"]]


@pytest.fixture
def cluster(docker_client: Any, node_image: str, tmp_path: Path) -> Iterator[DockerBackend]:
    run_id = f"test-backend-{os.getpid()}-{time.monotonic_ns()}"
    backend = DockerBackend(["n1", "n2", "n3"], tmp_path, ["--election-timeout-ms", "300"],
                            run_id, per_node_args={"n3": ["--bug", "x"]}, image=node_image,
                            node_code=FAKE_NODE)
    try:
        yield backend
    finally:
        volumes = {m.get("Name") for cid in backend.containers.values()
                   for m in docker_client.api.inspect_container(cid)["Mounts"]}
        backend.teardown()
        backend.teardown()  # twice is harmless
        assert_nothing_left(docker_client, run_id)
        # Anonymous volumes carry no label: look for the ones the containers had.
        names = {v.name for v in docker_client.volumes.list()}
        assert not (volumes - {None}) & names


def test_cluster_partitions_pause_kill_and_logs(cluster: DockerBackend, tmp_path: Path) -> None:
    backend = cluster
    assert {"partition", "pause", "kill"} <= backend.capabilities()
    backend.setup()
    for node in backend.node_ids:
        assert wait_answering(backend, node)["id"] == node
    assert wait_answering(backend, "n3")["extra"] == ["--bug", "x"]
    assert wait_answering(backend, "n1")["extra"] == ["--election-timeout-ms", "300"]

    # Containers as promised: own hostnames and fixed addresses, NET_ADMIN only.
    api = backend.client.api
    for node in backend.node_ids:
        info = api.inspect_container(backend.containers[node])
        assert info["Config"]["Hostname"] == node
        assert info["HostConfig"]["CapAdd"] == ["NET_ADMIN"]
        assert not info["HostConfig"]["Privileged"]
        networks = info["NetworkSettings"]["Networks"]
        assert networks[backend.network_name]["IPAddress"] == backend.addresses[node]

    assert send(backend, "n1", "n2", "before")

    # One-way: n1's messages no longer reach n2; n2's still reach n1; the controller reaches all.
    backend.set_network({("n1", "n2")}, {})
    assert not send(backend, "n1", "n2", "cut")
    assert send(backend, "n2", "n1", "other-way")
    assert send(backend, "n1", "n3", "unaffected")
    assert wait_answering(backend, "n2", 2.0)

    # A killed node keeps its data volume, and gets the wanted network state back on restart.
    backend.kill("n2")
    assert not backend.is_running("n2")
    backend.restart("n2")
    assert backend.is_running("n2")
    wait_answering(backend, "n2")
    assert received(backend, "n2") == ["before"]
    assert not send(backend, "n1", "n2", "cut-after-restart")

    # Heal by flushing.
    backend.set_network(set(), {})
    assert send(backend, "n1", "n2", "healed")
    assert received(backend, "n2") == ["before", "healed"]
    code, rules = backend.exec("n2", ["iptables", "-S", "PAXOS-HARNESS"])
    assert code == 0 and "DROP" not in rules

    # Pause is SIGSTOP: the node does not answer, but exec (and so partitions) still work.
    backend.pause("n3")
    assert ask(backend.client_address("n3"), {"op": "status"}, 1.0) is None
    backend.set_network({("n1", "n3")}, {})
    backend.resume("n3")
    assert wait_answering(backend, "n3", 3.0)
    assert not send(backend, "n1", "n3", "cut-while-paused")
    backend.set_network(set(), {})

    # A paused node can be killed and restarted.
    backend.pause("n1")
    backend.kill("n1")
    backend.restart("n1")
    assert wait_answering(backend, "n1")
    assert backend.log_tail("n1", 5).strip()

    backend.collect()
    log = (tmp_path / "nodes" / "n2" / "node.log").read_text()
    assert log.count("n2 starting") == 2, log
    assert "n2 got healed from n1" in log
    state = json.loads((tmp_path / "nodes" / "n2" / "container.json").read_text())
    assert state["address"] == backend.addresses["n2"]


def test_delay_is_refused_or_works(cluster: DockerBackend) -> None:
    backend = cluster
    caps = backend.capabilities()
    if "delay" not in caps:
        with pytest.raises(BackendError, match="cannot do delay.*netem"):
            backend.probe({"partition", "delay"})
        backend.probe({"partition", "pause", "kill"})
        return
    backend.setup()
    for node in backend.node_ids:
        wait_answering(backend, node)
    backend.set_network(set(), {("n1", "n2"): 0.2})
    start = time.monotonic()
    assert send(backend, "n1", "n2", "slow")
    assert time.monotonic() - start >= 0.2
    backend.set_network(set(), {})


def test_missing_image_is_refused_clearly(docker_client: Any, tmp_path: Path) -> None:
    backend = DockerBackend(["n1"], tmp_path, [], "test-noimage", image="paxos-node:no-such-tag")
    with pytest.raises(BackendError, match="harness image build"):
        backend.probe({"partition"})
    backend.teardown()


def test_node_that_cannot_start_is_reported_and_cleaned(docker_client: Any, node_image: str,
                                                        tmp_path: Path) -> None:
    bad = tmp_path / "badnode"
    bad.mkdir()
    (bad / "__main__.py").write_text("import sys\nprint('boom', file=sys.stderr)\nsys.exit(3)\n")
    run_id = f"test-bad-{os.getpid()}"
    backend = DockerBackend(["n1", "n2"], tmp_path, [], run_id, image=node_image, node_code=bad)
    try:
        backend.setup()
        deadline = time.monotonic() + 10
        while backend.is_running("n1") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not backend.is_running("n1")
        assert backend.exit_status("n1") == 3
        assert "boom" in backend.log_tail("n1")
    finally:
        backend.teardown()
    assert_nothing_left(docker_client, run_id)


_ORPHAN = """
import sys, time
from pathlib import Path
sys.path.insert(0, {repo!r})
from harness.backends.docker import DockerBackend
b = DockerBackend(["n1", "n2"], Path({run_dir!r}), [], {run_id!r}, image={image!r},
                  node_code=Path({code!r}))
b.setup()
print("up", flush=True)
time.sleep(600)
"""


def test_clean_removes_what_a_killed_controller_left(docker_client: Any, node_image: str,
                                                     tmp_path: Path) -> None:
    run_id = f"test-orphan-{os.getpid()}"
    script = _ORPHAN.format(repo=str(REPO), run_dir=str(tmp_path), run_id=run_id,
                            image=node_image, code=str(FAKE_NODE))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "up"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    left = leftovers(docker_client, run_id)
    assert len(left["containers"]) == 2 and len(left["networks"]) == 1
    assert len(left["volumes"]) == 2
    orphans = left["containers"]
    # `harness clean` without --run: removes runs whose controller is gone, keeps live ones.
    live = DockerBackend(["n1"], tmp_path / "live", [], f"{run_id}-live", image=node_image,
                         node_code=FAKE_NODE)
    try:
        live.setup()
        description = clean_docker(None)
        assert all(name in description for name in orphans), description
        assert_nothing_left(docker_client, run_id)
        assert leftovers(docker_client, f"{run_id}-live")["containers"]
    finally:
        live.teardown()
        clean_docker(run_id)
    assert_nothing_left(docker_client, f"{run_id}-live")
