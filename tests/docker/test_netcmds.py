"""The iptables/tc/pkill command builder shared by the Docker and SSH backends (no root, no
Docker: commands are checked as text, and scripts are run against stub binaries)."""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
from pathlib import Path

import pytest

from harness.backends import netcmds
from harness.backends.netcmds import Netem, NodeNetwork

ADDRS = {"n1": "10.9.0.11", "n2": "10.9.0.12", "n3": "10.9.0.13"}


def test_drop_rules_match_source_and_peer_port() -> None:
    assert netcmds.drop_from("10.9.0.12", 7000) == [
        "iptables", "-w", "5", "-A", "PAXOS-HARNESS", "-s", "10.9.0.12", "-p", "tcp",
        "--dport", "7000", "-j", "DROP"]
    assert netcmds.drop_from("10.9.0.12") == [
        "iptables", "-w", "5", "-A", "PAXOS-HARNESS", "-s", "10.9.0.12", "-j", "DROP"]
    assert netcmds.drop_to("10.9.0.13", 7000)[4:8] == ["PAXOS-HARNESS", "-d", "10.9.0.13", "-p"]


def test_names_and_bad_ports_are_refused() -> None:
    # iptables would resolve a name once, silently; addresses only.
    with pytest.raises(ValueError):
        netcmds.drop_from("n2", 7000)
    with pytest.raises(ValueError):
        netcmds.drop_from("10.9.0.12", 70000)


def test_node_enforces_edges_into_it_and_delays_out_of_it() -> None:
    cut = {("n2", "n1"), ("n1", "n3"), ("n3", "n1"), ("n1", "n1")}
    delays = {("n1", "n2"): 0.05, ("n3", "n1"): 0.02}
    n1 = netcmds.node_network("n1", ADDRS, cut, delays, port=7000)
    assert n1.drop_from == ("10.9.0.12", "10.9.0.13")
    assert n1.netem == (("10.9.0.12", Netem(delay_s=0.05)),)
    n3 = netcmds.node_network("n3", ADDRS, cut, delays, port=7000)
    assert n3.drop_from == ("10.9.0.11",)
    assert n3.netem == (("10.9.0.11", Netem(delay_s=0.02)),)
    n2 = netcmds.node_network("n2", ADDRS, cut, delays, port=7000)
    assert n2.empty


def test_one_way_cut_is_only_on_the_receiver() -> None:
    cut = {("n1", "n2"), ("n1", "n3")}  # nobody hears n1; n1 hears everyone
    assert netcmds.node_network("n1", ADDRS, cut).empty
    assert netcmds.node_network("n2", ADDRS, cut).drop_from == ("10.9.0.11",)


def test_apply_script_replaces_the_whole_state_and_heal_is_a_flush() -> None:
    state = netcmds.node_network("n1", ADDRS, {("n2", "n1")}, port=7000)
    lines = netcmds.apply_script(state, "eth0", manage_qdisc=False).splitlines()
    assert lines[0] == "set -e"
    assert lines.index("iptables -w 5 -F PAXOS-HARNESS") < lines.index(
        "iptables -w 5 -A PAXOS-HARNESS -s 10.9.0.12 -p tcp --dport 7000 -j DROP")
    heal = netcmds.apply_script(NodeNetwork(), "eth0", manage_qdisc=False).splitlines()
    assert heal[-1] == "iptables -w 5 -F PAXOS-HARNESS"
    assert not any("-A PAXOS-HARNESS" in line for line in heal)
    with pytest.raises(ValueError):
        netcmds.apply_script(NodeNetwork(netem=(("10.9.0.12", Netem(0.01)),)), "eth0",
                             manage_qdisc=False)


def test_netem_per_destination_tree() -> None:
    cmds = netcmds.netem_per_destination("eth0", {"10.9.0.13": Netem(0.02, loss=0.1),
                                                  "10.9.0.12": Netem(0.05, 0.01)})
    text = [shlex.join(c) for c in cmds]
    assert text[0].startswith("tc qdisc add dev eth0 root handle 1: prio bands 5 priomap")
    assert text[1] == "tc qdisc add dev eth0 parent 1:4 handle 10: netem delay 50000us 10000us"
    assert text[2] == ("tc filter add dev eth0 parent 1: protocol ip prio 1 u32 match ip dst "
                       "10.9.0.12/32 flowid 1:4")
    assert text[3] == ("tc qdisc add dev eth0 parent 1:5 handle 11: netem delay 20000us "
                       "loss 10.0000%")
    assert netcmds.netem_per_destination("eth0", {"10.9.0.12": Netem()}) == []
    many = {f"10.9.1.{i}": Netem(0.01) for i in range(14)}
    with pytest.raises(ValueError):
        netcmds.netem_per_destination("eth0", many)


def test_quoting_survives_hostile_arguments() -> None:
    argv = ["echo", "a b", "$(rm -rf /)", "it's", ";", "`x`"]
    assert shlex.split(netcmds.quote(argv)) == argv


def test_signal_and_deadline_commands() -> None:
    assert netcmds.signal_node("SIGSTOP")[:3] == ["pkill", "-STOP", "-f"]
    assert netcmds.signal_pid("cont", 42) == ["kill", "-CONT", "42"]
    with pytest.raises(ValueError):
        netcmds.signal_node("SEGV")
    assert netcmds.with_deadline(["true"], 10) == ["timeout", "-k", "2", "10", "true"]


@pytest.mark.parametrize("cmdline,matches", [
    ("python3 -m node --id n1", True), ("/usr/bin/python3.11 -m node --id n1", True),
    ("python -m node", True), ("sh -c exec python3 -m nodes", False),
    ("pkill -STOP -f python3 -m node", False)])
def test_node_pattern(cmdline: str, matches: bool) -> None:
    proc = subprocess.run(["grep", "-Eq", netcmds.NODE_PATTERN], input=cmdline, text=True)
    assert (proc.returncode == 0) == matches


def test_probe_parsing() -> None:
    found = netcmds.parse_probe("ok iptables\nok pkill\nnoise\nok ip\n")
    assert found == {"iptables", "pkill", "ip"}
    caps = netcmds.faults_from_probe(found)
    assert caps.faults == {"partition", "pause", "kill"}
    assert "netem" in caps.reasons["delay"]
    assert netcmds.parse_route_dev("10.9.0.12 via 10.9.0.1 dev ens3 src 10.9.0.2 uid 0") == "ens3"
    assert netcmds.parse_route_dev("garbage") is None


def _stub_bin(tmp_path: Path, names: list[str], fail_check: bool) -> Path:
    """iptables/tc/pkill stand-ins that record their argv; `iptables -C` fails (not hooked yet)
    when fail_check, as on a fresh container."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name in names:
        path = bindir / name
        check = 'case " $* " in *" -C "*) exit 1;; esac\n' if fail_check else ""
        check += 'case " $* " in *" -D "*) exit 1;; esac\n'
        path.write_text(f'#!/bin/sh\necho "{name} $*" >> "$CALLS"\n{check}exit 0\n')
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return bindir


def _run(script: str, tmp_path: Path, fail_check: bool) -> list[str]:
    bindir = _stub_bin(tmp_path, ["iptables", "tc", "pkill"], fail_check)
    calls = tmp_path / "calls"
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "CALLS": str(calls)}
    proc = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return calls.read_text().splitlines()


def test_apply_script_runs_under_sh(tmp_path: Path) -> None:
    state = netcmds.node_network("n1", ADDRS, {("n2", "n1")}, {("n1", "n3"): 0.03}, port=7000)
    calls = _run(netcmds.apply_script(state, "eth0"), tmp_path, fail_check=True)
    assert calls[:4] == [
        "iptables -w 5 -N PAXOS-HARNESS",
        "iptables -w 5 -C INPUT -j PAXOS-HARNESS",
        "iptables -w 5 -I INPUT 1 -j PAXOS-HARNESS",
        "iptables -w 5 -F PAXOS-HARNESS",
    ]
    assert "iptables -w 5 -A PAXOS-HARNESS -s 10.9.0.12 -p tcp --dport 7000 -j DROP" in calls
    assert calls[-1].startswith("tc filter add dev eth0")


def test_apply_script_is_idempotent_when_hooked(tmp_path: Path) -> None:
    calls = _run(netcmds.apply_script(NodeNetwork(), "eth0"), tmp_path, fail_check=False)
    assert "iptables -w 5 -I INPUT 1 -j PAXOS-HARNESS" not in calls


def test_cleanup_and_probe_scripts_run_under_sh(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    calls = _run(netcmds.cleanup_script("eth0"), tmp_path / "a", fail_check=False)
    assert "iptables -w 5 -X PAXOS-HARNESS" in calls
    assert "tc qdisc del dev eth0 root" in calls
    (tmp_path / "b").mkdir()
    bindir = _stub_bin(tmp_path / "b", ["iptables", "tc", "pkill"], False)
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "CALLS": "/dev/null"}
    out = subprocess.run(["sh", "-c", netcmds.probe_script()], env=env, capture_output=True,
                         text=True)
    assert {"iptables", "netem", "pkill"} <= netcmds.parse_probe(out.stdout)
