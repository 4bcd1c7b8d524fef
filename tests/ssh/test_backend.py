"""The SSH backend against sshd containers: commands, deploy, faults, errors, clean-up."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from harness.backends.base import BackendError
from harness.backends.ssh import SshBackend
from tests.ssh.conftest import FAKE_NODE, NODES, Cluster, make_key

pytestmark = [pytest.mark.docker, pytest.mark.slow]

NODE_IDS = [f"n{i + 1}" for i in range(NODES)]


def backend(cluster: Cluster, tmp_path: Path, user: str = "root", **kwargs) -> SshBackend:
    options = {"hosts": cluster.hosts_spec(user), "known_hosts": str(cluster.known_hosts),
               "ssh_key": str(cluster.key), "node_code": FAKE_NODE, "command_timeout": 10.0,
               **kwargs}
    return SshBackend(NODE_IDS, tmp_path / "run", ["--heartbeat-ms", "50"], "ssh-test",
                      **options)


def ask(address: tuple[str, int], request: dict, timeout: float = 2.0) -> dict | None:
    async def go() -> dict | None:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(*address), timeout)
            writer.write((json.dumps(request) + "\n").encode())
            line = await asyncio.wait_for(reader.readline(), timeout)
            writer.close()
            return json.loads(line) if line else None
        except (TimeoutError, OSError):
            return None

    return asyncio.run(go())


def wait_status(b: SshBackend, node: str, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reply = ask(b.client_address(node), {"op": "status"}, 1.0)
        if reply:
            return reply
        time.sleep(0.1)
    raise AssertionError(f"{node} never answered; log: {b.log_tail(node)}")


def one_line(message: str) -> str:
    assert "\n" not in message.strip(), message
    return message


# -- commands ----------------------------------------------------------------------------------


def test_commands_read_all_output_quote_and_keep_deadlines(cluster: Cluster,
                                                           tmp_path: Path) -> None:
    b = backend(cluster, tmp_path)
    try:
        b.probe(set())
        # Large, interleaved stdout and stderr, then an exit status: nothing lost at the end.
        script = ("python3 -c 'import sys\nfor i in range(200):\n"
                  "    sys.stdout.write(\"o\" * 9999 + \"\\n\"); sys.stderr.write(\"e\" * 2499 + "
                  "\"\\n\")\nsys.stdout.flush(); sys.exit(7)'")
        res = b.run("n1", script)
        assert res.code == 7
        assert len(res.out) == 200 * 10000 and len(res.err) == 200 * 2500
        # The very last bytes before the end of stream arrive too, many times over.
        for i in range(20):
            res = b.run("n2", f"printf 'last-{i}'; printf 'err-{i}' >&2; exit {i}")
            assert (res.code, res.out, res.err) == (i, f"last-{i}", f"err-{i}")
        # Every argument is quoted: a hostile one comes back byte for byte.
        hostile = "a b'c\"d $(touch /tmp/pwned) `id` ; rm -rf / \\ * \n end"
        from harness.backends.netcmds import quote

        res = b.run("n1", f"printf %s {quote([hostile])}")
        assert res.out == hostile
        assert cluster.exec(0, "test", "-e", "/tmp/pwned")[0] != 0
        # A command that overstays its deadline is stopped there and reported here.
        start = time.monotonic()
        with pytest.raises(BackendError) as err:
            b.run("n3", "sleep 60", timeout=1.0)
        assert time.monotonic() - start < 8
        assert "n3" in one_line(str(err.value)) and "1 s" in str(err.value)
        assert "sleep 60" not in cluster.exec(2, "ps", "-eo", "args")[1]
        # A connection the server cut is re-opened for the next command.
        before = b.sessions["n1"].client
        cluster.exec(0, "sh", "-c", "pkill -KILL -f 'sshd: root'")
        time.sleep(0.3)
        assert b.run("n1", "echo back").out == "back\n"
        assert b.sessions["n1"].client is not before
    finally:
        b.teardown()


# -- deploy and faults -------------------------------------------------------------------------


def test_lifecycle_as_sudo_user(cluster: Cluster, tmp_path: Path) -> None:
    """Deploy, partition one way and heal, pause and resume, kill and restart on the same data
    directory, collect, tear down, as a user who needs sudo for iptables."""
    b = backend(cluster, tmp_path, user="ops")
    try:
        b.probe({"partition", "pause", "kill"})
        assert all(b.facts[n].uid != 0 and b.facts[n].sudo for n in NODE_IDS)
        b.setup()
        for node in NODE_IDS:
            assert b.is_running(node)
            assert wait_status(b, node)["starts"] == 1
        assert wait_status(b, "n1")["extra"] == ["--heartbeat-ms", "50"]

        # One way: n1's messages do not reach n2; n2's still reach n1.
        b.set_network({("n1", "n2")}, {})
        assert ask(b.client_address("n1"), {"op": "reach", "to": "n2"}, 5) == {"ok": False}
        assert ask(b.client_address("n2"), {"op": "reach", "to": "n1"}, 5) == {"ok": True}
        assert ask(b.client_address("n1"), {"op": "reach", "to": "n3"}, 5) == {"ok": True}
        assert "DROP" in b.run("n2", "iptables -w 5 -S PAXOS-HARNESS", root=True).out
        b.set_network(set(), {})
        assert ask(b.client_address("n1"), {"op": "reach", "to": "n2"}, 5) == {"ok": True}

        b.pause("n3")
        assert ask(b.client_address("n3"), {"op": "status"}, 1.0) is None
        assert b.is_running("n3")
        b.resume("n3")
        assert wait_status(b, "n3")["id"] == "n3"

        pid = b.pids["n2"]
        b.kill("n2")
        assert not b.is_running("n2")
        b.kill("n2")  # harmless when dead
        b.pause("n2")
        assert "n2" not in b.paused
        b.restart("n2")
        assert b.pids["n2"] != pid
        assert wait_status(b, "n2")["starts"] == 2, "a restart must reuse the data directory"
        b.restart("n2")  # harmless when running
        assert wait_status(b, "n2")["starts"] == 2

        b.collect()
        log = (tmp_path / "run" / "nodes" / "n2" / "node.log").read_text()
        assert "n2 start 1" in log and "n2 start 2" in log
        host = json.loads((tmp_path / "run" / "nodes" / "n2" / "host.json").read_text())
        assert host["user"] == "ops" and host["address"] == cluster.addresses[1]
        assert "n1 start 1" in b.log_tail("n1", 5)
        b.pause("n1")  # a paused node is stopped too
    finally:
        b.teardown()
    b.teardown()  # twice is harmless
    assert not cluster.node_processes()
    for i in range(NODES):
        assert not cluster.leftovers(i), cluster.leftovers(i)


def test_delay_when_the_kernel_has_netem(cluster: Cluster, tmp_path: Path) -> None:
    b = backend(cluster, tmp_path)
    try:
        if "delay" not in b.capabilities():
            pytest.skip(f"no tc netem in this kernel: {b._caps.reasons['delay']}")
        b.probe({"delay"})
        b.setup()
        wait_status(b, "n1")
        b.set_network(set(), {("n1", "n2"): 0.3})
        assert "netem" in b.run("n1", f"tc qdisc show dev {b.facts['n1'].dev}").out
        start = time.monotonic()
        assert ask(b.client_address("n1"), {"op": "reach", "to": "n2"}, 5) == {"ok": True}
        assert time.monotonic() - start > 0.3
        b.set_network(set(), {})
        assert "netem" not in b.run("n1", f"tc qdisc show dev {b.facts['n1'].dev}").out
    finally:
        b.teardown()
    for i in range(NODES):
        assert not cluster.leftovers(i), cluster.leftovers(i)


# -- errors a person understands ---------------------------------------------------------------


def probe_error(b: SshBackend, faults: set[str] | None = None) -> str:
    try:
        with pytest.raises(BackendError) as err:
            b.probe(faults or set())
    finally:
        b.teardown()
    return one_line(str(err.value))


def test_unknown_host_key_is_refused_and_accept_new_is_explicit(cluster: Cluster,
                                                                tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(f"{cluster.addresses[0]} {cluster.host_keys[0]}\n")
    message = probe_error(backend(cluster, tmp_path, known_hosts=str(known)))
    assert "host n2 (root@" in message and "is not in" in message
    assert "--ssh-accept-new-host-keys" in message
    # Trust on first use only when asked: the keys are then remembered in the file.
    b = backend(cluster, tmp_path, known_hosts=str(known), accept_new_host_keys=True)
    try:
        b.probe(set())
    finally:
        b.teardown()
    lines = known.read_text().splitlines()
    assert len(lines) == NODES
    assert f"{cluster.addresses[1]} {cluster.host_keys[1]}" in lines


def test_changed_host_key_is_refused_even_with_accept_new(cluster: Cluster,
                                                          tmp_path: Path) -> None:
    other = make_key(tmp_path / "impostor").split()[:2]
    known = cluster.write_known_hosts(tmp_path / "known_hosts", {1: " ".join(other)})
    for accept in (False, True):
        message = probe_error(backend(cluster, tmp_path, known_hosts=str(known),
                                      accept_new_host_keys=accept))
        assert "host n2 (root@" in message and "HOST KEY MISMATCH" in message


def test_authentication_failure(cluster: Cluster, tmp_path: Path) -> None:
    make_key(tmp_path / "stranger")
    message = probe_error(backend(cluster, tmp_path, ssh_key=str(tmp_path / "stranger")))
    assert "authentication failed" in message and "host n1 (root@" in message


def test_unreachable_host(cluster: Cluster, tmp_path: Path) -> None:
    spec = cluster.hosts_spec() + ""
    spec = spec.replace(f"@{cluster.addresses[2]}", f"@{cluster.addresses[2]}:2222")
    message = probe_error(backend(cluster, tmp_path, hosts=spec))
    assert f"host n3 (root@{cluster.addresses[2]}:2222): unreachable" in message
    assert "refused" in message


def test_not_root_and_no_sudo(cluster: Cluster, tmp_path: Path) -> None:
    message = probe_error(backend(cluster, tmp_path, user="plain"), {"partition", "kill"})
    assert "host n1 (plain@" in message and "not root" in message and "sudo" in message
    # Pause and kill need no root: the same hosts are fine for them.
    b = backend(cluster, tmp_path, user="plain")
    try:
        b.probe({"pause", "kill"})
    finally:
        b.teardown()


def test_iptables_missing(cluster: Cluster, tmp_path: Path) -> None:
    spare = NODES  # a container outside the cluster: this test breaks it for a moment
    spec = ",".join(f"{name}=root@{address}" for name, address in
                    zip(cluster.names[:2] + [cluster.names[spare]],
                        cluster.addresses[:2] + [cluster.addresses[spare]], strict=True))
    assert cluster.exec(spare, "mv", "/usr/sbin/iptables", "/usr/sbin/iptables.away")[0] == 0
    try:
        message = probe_error(backend(cluster, tmp_path, hosts=spec), {"partition", "pause"})
    finally:
        cluster.exec(spare, "mv", "/usr/sbin/iptables.away", "/usr/sbin/iptables")
    assert f"host n4 (root@{cluster.addresses[spare]}:22): iptables is not installed" in message
