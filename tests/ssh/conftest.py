"""Fixtures for the SSH backend's tests: N containers running sshd stand in for real hosts.

Each container makes its own host key at start; the client key is generated here; known_hosts is
built from the host keys read through the Docker engine (not over the network, so it is
trustworthy). Everything carries the label LABEL=<session> and is removed at the end; the tests
are skipped, with the reason, where there is no Docker engine.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SSHD_DIR = REPO / "docker" / "sshd"
FAKE_NODE = Path(__file__).resolve().parent / "fakenode"
LABEL = "paxos-harness.ssh-test"
SSHD_IMAGE = "paxos-sshd:latest"
SSHD_PACKAGES = ("openssh-server", "sudo")
NODES = 3
# The first N serve as the cluster; one more is a spare for tests that break a host.
CONTAINERS = NODES + 1


def engine_or_skip() -> Any:
    try:
        import docker
    except ImportError:
        pytest.skip("the docker Python package is not installed (pip install -e '.[test]')")
    try:
        import paramiko  # noqa: F401
    except ImportError:
        pytest.skip("paramiko is not installed (pip install -e '.[test]')")
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as exc:  # noqa: BLE001 - whatever it is, there is no engine to test with
        pytest.skip(f"no Docker engine reachable: {type(exc).__name__}: {exc}")
    return client


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    client = engine_or_skip()
    yield client
    client.close()


def ensure_sshd_image(client: Any) -> str:
    """docker/sshd on the offline base with openssh-server and sudo added (built once with the
    docker engineer's builder, then reused); the Dockerfile layer itself is cached by Docker."""
    import docker.errors

    from harness.commands.image import ImageError, build_offline_base, host_codename, image_size

    base = f"paxos-sshd-base:{host_codename()}"
    if image_size(client, base) is None:
        print(f"building the offline base {base} with {', '.join(SSHD_PACKAGES)} ...",
              file=sys.stderr)
        try:
            build_offline_base(base, extra_packages=SSHD_PACKAGES)
        except ImageError as exc:
            pytest.fail(f"cannot build the sshd test image's base: {exc}")
    try:
        client.images.build(path=str(SSHD_DIR), tag=SSHD_IMAGE, buildargs={"BASE": base},
                            pull=False, rm=True, forcerm=True, labels={LABEL: "image"})
    except (docker.errors.BuildError, docker.errors.APIError) as exc:
        pytest.fail(f"cannot build {SSHD_IMAGE}: {exc}")
    return SSHD_IMAGE


@pytest.fixture(scope="session")
def sshd_image(docker_client: Any) -> str:
    return ensure_sshd_image(docker_client)


def make_key(path: Path) -> str:
    """A fresh Ed25519 key pair at path (OpenSSH format); returns the public key line."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.OpenSSH,
                                       serialization.NoEncryption()))
    path.chmod(0o600)
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    path.with_suffix(".pub").write_text(public + " paxos-test\n")
    return public


def wait_for_ssh(address: str, port: int = 22, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((address, port), timeout=1.0) as sock:
                sock.settimeout(2.0)
                if sock.recv(64).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"sshd on {address}:{port} did not answer within {timeout:g} s")
        time.sleep(0.1)


@dataclass
class Cluster:
    """The sshd containers standing in for hosts, and the client's files for reaching them."""

    client: Any
    tag: str
    network: str
    names: list[str]
    addresses: list[str]
    containers: list[str]
    key: Path
    known_hosts: Path
    host_keys: list[str] = field(default_factory=list)  # "ssh-ed25519 AAAA..." per container

    def hosts_spec(self, user: str = "root", count: int = NODES) -> str:
        items = [f"{name}={user}@{address}" for name, address in
                 zip(self.names[:count], self.addresses[:count], strict=True)]
        return ",".join(items)

    def hosts_file(self, path: Path, user: str = "root", count: int = NODES) -> Path:
        lines = ["# name  user@address[:port]  options"]
        lines += [f"{name}  {user}@{address}:22  key={self.key}" for name, address in
                  zip(self.names[:count], self.addresses[:count], strict=True)]
        path.write_text("\n".join(lines) + "\n")
        return path

    def exec(self, index: int, *argv: str, user: str = "root") -> tuple[int, str]:
        result = self.client.containers.get(self.containers[index]).exec_run(list(argv),
                                                                             user=user)
        return result.exit_code, result.output.decode(errors="replace")

    def host_key(self, index: int) -> str:
        code, out = self.exec(index, "cat", "/etc/ssh/ssh_host_ed25519_key.pub")
        assert code == 0, out
        return " ".join(out.split()[:2])

    def write_known_hosts(self, path: Path | None = None,
                          keys: dict[int, str] | None = None) -> Path:
        path = path or self.known_hosts
        keys = keys or {}
        path.write_text("".join(f"{address} {keys.get(i, self.host_keys[i])}\n"
                                for i, address in enumerate(self.addresses)))
        return path

    def node_processes(self) -> dict[str, str]:
        """Per host, any python process (a node) still running there."""
        found = {}
        for i, name in enumerate(self.names):
            code, out = self.exec(i, "sh", "-c", "ps -eo pid,stat,args | grep '[p]ython' || true")
            if out.strip():
                found[name] = out.strip()
        return found

    def leftovers(self, index: int) -> str:
        """What a run may leave on a host: our chain, a netem qdisc, uploaded files."""
        script = ("iptables -w 5 -S PAXOS-HARNESS 2>/dev/null; "
                  "tc qdisc show dev eth0 | grep netem; "
                  "ls -A /root/.paxos-harness /home/ops/.paxos-harness 2>/dev/null; true")
        return self.exec(index, "sh", "-c", script)[1].strip()


def _subnet(client: Any) -> str:
    """A free /24 for the test network (the Docker backend's own way of finding one)."""
    from harness.backends.docker import _used_subnets, candidate_subnets

    return str(candidate_subnets(f"ssh-test-{os.getpid()}", _used_subnets(client))[0])


def remove_labelled(client: Any, tag: str) -> None:
    api = client.api
    for c in api.containers(all=True, filters={"label": f"{LABEL}={tag}"}):
        api.remove_container(c["Id"], force=True)
    for n in api.networks(filters={"label": f"{LABEL}={tag}"}):
        api.remove_network(n["Id"])


@pytest.fixture(scope="session")
def cluster(docker_client: Any, sshd_image: str, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Cluster]:
    import docker.types

    tag = f"{os.getpid()}-{os.urandom(3).hex()}"
    files = tmp_path_factory.mktemp("ssh")
    key = files / "id_ed25519"
    public = make_key(key)
    api = docker_client.api
    subnet = _subnet(docker_client)
    hosts = list(__import__("ipaddress").ip_network(subnet).hosts())
    network = f"paxos-ssh-test-{tag}"
    try:
        for _ in range(5):
            try:
                ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(
                    subnet=subnet, gateway=str(hosts[0]))])
                api.create_network(network, driver="bridge", ipam=ipam,
                                   labels={LABEL: tag})
                break
            except docker.errors.APIError as exc:
                if "overlap" not in str(exc).lower():
                    raise
                subnet = _subnet(docker_client)
                hosts = list(__import__("ipaddress").ip_network(subnet).hosts())
        names = [f"n{i + 1}" for i in range(CONTAINERS)]
        addresses = [str(hosts[20 + i]) for i in range(CONTAINERS)]
        containers = []
        for name, address in zip(names, addresses, strict=True):
            networking = api.create_networking_config({network: api.create_endpoint_config(
                ipv4_address=address)})
            cid = api.create_container(
                sshd_image, hostname=name, name=f"{network}-{name}", labels={LABEL: tag},
                environment={"AUTHORIZED_KEY": public},
                host_config=api.create_host_config(cap_add=["NET_ADMIN"], init=True,
                                                   network_mode=network),
                networking_config=networking)["Id"]
            containers.append(cid)
            api.start(cid)
        for address in addresses:
            wait_for_ssh(address)
        cl = Cluster(docker_client, tag, network, names, addresses, containers, key,
                     files / "known_hosts")
        cl.host_keys = [cl.host_key(i) for i in range(CONTAINERS)]
        cl.write_known_hosts()
        yield cl
    finally:
        remove_labelled(docker_client, tag)
    left = (api.containers(all=True, filters={"label": f"{LABEL}={tag}"}),
            api.networks(filters={"label": f"{LABEL}={tag}"}))
    assert not any(left), f"test containers or network left behind: {left}"


def harness(*args: str, timeout: float = 240, **kwargs: Any) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO, env=env, **kwargs)
