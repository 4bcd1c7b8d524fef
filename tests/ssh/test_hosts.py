"""Reading --hosts: no Docker, no network."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.backends.base import BackendError
from harness.backends.ssh import Host, assign_hosts, parse_host, parse_hosts


def test_host_forms() -> None:
    assert parse_host("10.0.0.1") == Host("10.0.0.1")
    assert parse_host("db1=admin@10.0.0.1:2222") == Host("10.0.0.1", "admin", 2222, "db1")
    assert parse_host("n2  ops@h2.example  key=~/.ssh/k python=/usr/bin/python3.12") == Host(
        "h2.example", "ops", 22, "n2", "~/.ssh/k", "/usr/bin/python3.12")
    assert parse_host("root@[fd00::1]:22 node-port=7100") == Host("fd00::1", node_port=7100)
    assert parse_host("[fd00::1]").address == "fd00::1"
    assert Host("fd00::1", port=2200, name="n1").label() == "n1 (root@[fd00::1]:2200)"


@pytest.mark.parametrize("text", ["", "a b c", "=root@h", "@h", "h:0", "h:99999", "h:x",
                                  "[fd00::1]x", "key= h"])
def test_bad_hosts_are_one_line_errors(text: str) -> None:
    with pytest.raises(BackendError) as err:
        parse_host(text)
    assert "\n" not in str(err.value)


def test_comma_list_and_file(tmp_path: Path) -> None:
    assert [h.address for h in parse_hosts("a, root@b ,c:2")] == ["a", "b", "c"]
    hosts = tmp_path / "hosts"
    hosts.write_text("# the cluster\n\nn1 root@10.0.0.1 key=keys/id  # first\n"
                     "n2=root@10.0.0.2:2222\n")
    parsed = parse_hosts(str(hosts))
    assert parsed[0].key == str(tmp_path / "keys" / "id")
    assert (parsed[1].name, parsed[1].port) == ("n2", 2222)
    with pytest.raises(BackendError, match="does not exist"):
        parse_hosts(str(tmp_path / "missing" / "hosts"))
    (tmp_path / "empty").write_text("# nothing\n")
    with pytest.raises(BackendError, match="lists no host"):
        parse_hosts(str(tmp_path / "empty"))


def test_nodes_go_to_hosts_by_name_or_in_order() -> None:
    nodes = ["n1", "n2", "n3"]
    named = [Host("c", name="n3"), Host("a", name="n1"), Host("b", name="n2")]
    assert {n: h.address for n, h in assign_hosts(nodes, named).items()} == \
        {"n1": "a", "n2": "b", "n3": "c"}
    other = [Host("a", name="db1"), Host("b"), Host("c")]
    assigned = assign_hosts(nodes, other)
    assert [(n, h.address, h.name) for n, h in assigned.items()] == \
        [("n1", "a", "db1"), ("n2", "b", "n2"), ("n3", "c", "n3")]
    with pytest.raises(BackendError, match="lists 2 host"):
        assign_hosts(nodes, other[:2])

