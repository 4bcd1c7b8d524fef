"""Maelstrom nodes, unchanged, under the harness (issue 16): the reply mapping against
Maelstrom's error table, the bridge with a real program and real sockets, the bundled node's
Maelstrom mode on its stdio, real runs that judge a right and a wrong node, and programs that
break the protocol in every way we could think of."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.systems.maelstrom import MaelstromClient, MaelstromSystem, outcome_of, wire_key
from tests.harness.conftest import REPO, harness, node_processes, read_history

NODES = Path(__file__).resolve().parent / "maelstrom_nodes"
LOCAL_READS = NODES / "local_reads.py"
MISBEHAVING = NODES / "misbehaving.py"
BUNDLED = ["--bin", "python3", "--bin-arg=-m", "--bin-arg=node", "--bin-arg=--maelstrom"]


def run(store: Path, *args: str, timeout: float = 180) -> tuple[subprocess.CompletedProcess,
                                                                Path, dict]:
    proc = harness("run", "--system", "maelstrom", "--store", str(store), "--quiet", *args,
                   timeout=timeout)
    run_dir = (store / "latest").resolve()
    results = json.loads((run_dir / "results.json").read_text())
    return proc, run_dir, results


# -- the mapping -------------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "write_kind", "read_kind"), [
    (1, "fail", "fail"), (10, "fail", "fail"), (11, "unavailable", "fail"), (12, "fail", "fail"),
    (14, "fail", "fail"), (21, "fail", "fail"), (30, "fail", "fail"),
    (0, "info", "fail"), (13, "info", "fail"), (1000, "info", "fail"), (None, "info", "fail"),
])
def test_error_codes_follow_maelstroms_table(code: object, write_kind: str,
                                             read_kind: str) -> None:
    write = {"f": "write", "key": "k1", "value": 3}
    read = {"f": "read", "key": "k1", "value": None}
    body = {"type": "error", "code": code, "text": "why"}
    assert outcome_of(write, body).kind == write_kind
    # a read changes nothing: whatever its error, it did not happen
    assert outcome_of(read, body).kind == read_kind


def test_observations_in_replies() -> None:
    read = {"f": "read", "key": "k1", "value": None}
    cas = {"f": "cas", "key": "k1", "value": [1, 2]}
    assert (outcome_of(read, {"type": "read_ok", "value": 4}).kind,
            outcome_of(read, {"type": "read_ok", "value": 4}).value) == ("ok", 4)
    absent = outcome_of(read, {"type": "error", "code": 20})
    assert (absent.kind, absent.value) == ("ok", None)  # the register held nothing
    for code in (20, 22):
        out = outcome_of(cas, {"type": "error", "code": code})
        assert out.kind == "fail" and out.compare_failed
    assert outcome_of(cas, {"type": "cas_ok"}).kind == "ok"
    # a reply of another operation's type is not an acknowledgement
    assert outcome_of(cas, {"type": "write_ok"}).kind == "info"
    assert wire_key("k12") == 12 and wire_key("x") == "x"


def test_a_missing_program_is_refused_in_one_line(tmp_path: Path) -> None:
    proc = harness("run", "--system", "maelstrom", "--bin", str(tmp_path / "nope"),
                   "--store", str(tmp_path / "store"), "--quiet")
    assert proc.returncode == 3  # bad input (README: exit status)
    assert proc.stderr.strip().count("\n") == 0 and "no such file" in proc.stderr
    proc = harness("run", "--system", "maelstrom", "--store", str(tmp_path / "store"))
    assert proc.returncode == 3 and "--bin PROGRAM" in proc.stderr
    assert not (tmp_path / "store").exists()


# -- the bridge, by hand -----------------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _secret(tmp_path: Path) -> Path:
    path = tmp_path / "secret"
    path.write_text("s" * 32)
    path.chmod(0o600)
    return path


def _bridge(tmp_path: Path, node: str, port: int, peers: dict[str, int],
            program: list[str]) -> subprocess.Popen:
    system = MaelstromSystem(program[0], program[1:])
    from harness.systems import Member

    member = Member(node=node, listen=("127.0.0.1", port),
                    peers={p: ("127.0.0.1", pp) for p, pp in peers.items()},
                    data_dir=str(tmp_path / node), secret_file=str(_secret(tmp_path)),
                    python=sys.executable)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(system.command(member, []), env=env, stderr=subprocess.PIPE,
                            start_new_session=True)


async def _until(check, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


def test_bridge_carries_a_program_between_members_and_clients(tmp_path: Path) -> None:
    from harness.systems.maelstrom import bridge_status

    ports = {"n1": _free_port(), "n2": _free_port()}
    procs = [_bridge(tmp_path, n, ports[n], {p: ports[p] for p in ports if p != n},
                     [str(LOCAL_READS)]) for n in ports]

    async def scenario() -> None:
        for n in ports:
            await _until(lambda n=n: _inited(("127.0.0.1", ports[n])))
        c1 = MaelstromClient(("127.0.0.1", ports["n1"]))
        c2 = MaelstromClient(("127.0.0.1", ports["n2"]))
        w = await c1.invoke({"f": "write", "key": "k1", "value": 7}, "c1", 1, 5)
        assert w.kind == "ok"
        # the program replicated over the bridges' peer link: n2 has it
        read = {"f": "read", "key": "k1", "value": None}
        got = await _until(lambda: _value(c2, read))
        assert got == 7
        status = await bridge_status(("127.0.0.1", ports["n1"]), 2)
        assert status and status["counters"]["messages"] >= 1 and status["peers"]["n2"]
        c1.close()
        c2.close()

    async def _inited(address):
        status = await bridge_status(address, 1)
        return status and status["init"] == "ok"

    async def _value(client, op):
        out = await client.invoke(op, "c2", 1, 2)
        return out.value if out.kind == "ok" else None

    try:
        asyncio.run(scenario())
    finally:
        for p in procs:
            p.terminate()
        logs = [p.communicate(timeout=10)[1].decode() for p in procs]
    assert all(p.returncode == 0 for p in procs), logs
    assert "n1 handled write" in logs[0]  # the program's stderr is the member's log
    assert "bridge: n1 answered init" in logs[0]


def test_bridge_refuses_a_peer_without_the_secret(tmp_path: Path) -> None:
    port = _free_port()
    proc = _bridge(tmp_path, "n1", port, {"n2": _free_port()}, [str(LOCAL_READS)])

    async def impostor() -> bytes:
        await asyncio.sleep(0.5)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(json.dumps({"type": "hello", "from": "n2", "to": "n1",
                                 "nonce": "0" * 32}).encode() + b"\n")
        await reader.readline()  # the challenge
        writer.write(b'{"type": "auth", "proof": "forged"}\n')
        writer.write(json.dumps({"src": "n2", "dest": "n1", "body": {
            "type": "replicate", "key": 1, "value": 666}}).encode() + b"\n")
        await writer.drain()
        rest = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        return rest

    try:
        assert asyncio.run(impostor()) == b""  # closed on it
        # the forged message never reached the program
        client = MaelstromClient(("127.0.0.1", port))
        out = asyncio.run(client.invoke({"f": "read", "key": "k1", "value": None}, "c1", 1, 3))
        assert (out.kind, out.value) == ("ok", None)
    finally:
        proc.terminate()
        log = proc.communicate(timeout=10)[1].decode()
    assert "failed the challenge" in log


# -- the bundled node's Maelstrom mode, on its stdio --------------------------------------------


def _node(data_dir: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "node", "--maelstrom", "--data-dir",
                             str(data_dir)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)


def _say(proc: subprocess.Popen, src: str, body: dict) -> None:
    assert proc.stdin is not None
    proc.stdin.write(json.dumps({"src": src, "dest": "n1", "body": body}).encode() + b"\n")
    proc.stdin.flush()


def _reply(proc: subprocess.Popen, in_reply_to: int) -> dict:
    assert proc.stdout is not None
    while True:
        line = proc.stdout.readline()
        assert line, proc.stderr.read().decode() if proc.stderr else "no output"
        msg = json.loads(line)
        if msg["body"].get("in_reply_to") == in_reply_to:
            assert msg["src"] == "n1"
            return msg["body"]


_ids = iter(range(100, 1_000_000))


def _call(proc: subprocess.Popen, src: str, body: dict) -> dict:
    """A request, again while the node answers 11 (no leader yet: definitely not done)."""
    for _ in range(200):
        msg_id = next(_ids)
        _say(proc, src, {**body, "msg_id": msg_id})
        reply = _reply(proc, msg_id)
        if reply.get("code") != 11:
            reply.pop("in_reply_to")
            return reply
        time.sleep(0.05)
    raise AssertionError("the node never served")


def test_node_speaks_maelstrom_and_keeps_its_data(tmp_path: Path) -> None:
    init = {"type": "init", "msg_id": 1, "node_id": "n1", "node_ids": ["n1"]}
    proc = _node(tmp_path / "data")
    try:
        _say(proc, "c0", init)
        assert _reply(proc, 1)["type"] == "init_ok"
        assert _call(proc, "c1", {"type": "read", "key": 5})["code"] == 20  # key-does-not-exist
        assert _call(proc, "c1", {"type": "write", "key": 5, "value": 9}) == {"type": "write_ok"}
        # precondition-failed, then a cas that holds
        assert _call(proc, "c1", {"type": "cas", "key": 5, "from": 1, "to": 2})["code"] == 22
        assert _call(proc, "c1", {"type": "cas", "key": 5, "from": 9, "to": 2}) == \
            {"type": "cas_ok"}
        assert _call(proc, "c1", {"type": "read", "key": 5}) == {"type": "read_ok", "value": 2}
        assert _call(proc, "c1", {"type": "echo"})["code"] == 10  # not-supported
    finally:
        proc.kill()
        proc.wait(timeout=10)
    # killed, then a fresh process and a fresh init: the acknowledged state is on disk
    proc = _node(tmp_path / "data")
    try:
        _say(proc, "c0", init)
        assert _reply(proc, 1)["type"] == "init_ok"
        assert _call(proc, "c2", {"type": "read", "key": 5}) == {"type": "read_ok", "value": 2}
    finally:
        proc.kill()
        proc.wait(timeout=10)


# -- real runs ---------------------------------------------------------------------------------


def test_bundled_node_in_maelstrom_mode_is_valid_under_faults(tmp_path: Path) -> None:
    proc, run_dir, results = run(tmp_path / "store", *BUNDLED,
                                 "--nemesis", "partition,pause,kill", "--time-limit", "14",
                                 "--nemesis-interval", "1.2", "--seed", "5")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert results["valid"] is True
    checkers = results["checkers"]
    assert checkers["linearizability"]["valid"] is True and checkers["linearizability"]["ok"] > 50
    assert checkers["protocol"]["valid"] is True
    history = read_history(run_dir)
    done = {op["f"] for op in history if op["process"] == "nemesis" and op["type"] == "info"}
    assert {"start-partition", "pause", "kill", "restart"} <= done, done
    # every restart was a new process given a fresh init, on the same data directory
    log = (run_dir / "nodes" / "n1" / "node.log").read_text()
    assert log.count("answered init") >= 1 and "recovery: read" in log
    # Maelstrom's net figure: messages between members per operation, in the windows
    warmup = results["perf"]["windows"]["warmup"]["counters"]
    assert warmup["messages"] > 0 and warmup["messages_per_op"] > 0
    assert not node_processes(run_dir.name)


def test_wrong_node_is_caught_with_the_stale_read(tmp_path: Path) -> None:
    proc, run_dir, results = run(tmp_path / "store", "--bin", str(LOCAL_READS),
                                 "--nemesis", "partition", "--time-limit", "10",
                                 "--nemesis-interval", "1.5", "--seed", "1")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lin = results["checkers"]["linearizability"]
    assert lin["valid"] is False
    # the explanation names the read that saw what it could not have, and where it was served
    assert "read(" in lin["reason"] and "cannot be linearized" in lin["reason"]
    assert "served by n" in lin["reason"]
    assert not node_processes(run_dir.name)


@pytest.mark.parametrize(("mode", "exit_code", "protocol", "says"), [
    ("garbage", 3, False, "not a Maelstrom message (not JSON)"),
    ("long-line", 3, False, "a line over 1048576 bytes"),
    pytest.param("silent", 3, False, "did not answer init", marks=pytest.mark.slow),
    ("service", 3, "unknown", "lin-kv, a Maelstrom service"),
    ("crash", 3, True, "exited with status 9"),
])
def test_broken_programs_get_a_clear_answer_and_leave_nothing(tmp_path: Path, mode: str,
                                                               exit_code: int, protocol: object,
                                                               says: str) -> None:
    started = time.monotonic()
    proc, run_dir, results = run(tmp_path / "store", "--bin", str(MISBEHAVING),
                                 f"--bin-arg={mode}", "--nemesis", "none", "--time-limit", "5",
                                 timeout=90)
    assert proc.returncode == exit_code, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert results["checkers"]["protocol"]["valid"] == protocol
    assert says in (results.get("harness_error") or "") + results["checkers"]["protocol"][
        "reason"]
    assert results["valid"] is not True
    assert time.monotonic() - started < 60
    assert not node_processes(run_dir.name)
    assert "Traceback" not in (run_dir / "nodes" / "n1" / "node.log").read_text()


@pytest.mark.slow
def test_a_flooding_program_is_judged_not_hung(tmp_path: Path) -> None:
    proc, run_dir, results = run(tmp_path / "store", "--bin", str(MISBEHAVING),
                                 "--bin-arg=flood", "--nemesis", "none", "--time-limit", "5",
                                 "--op-timeout", "0.5", timeout=90)
    # it never answers a client: no pass, but a verdict on what it did, and nothing left
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert results["valid"] == "unknown"
    assert results["checkers"]["availability"]["valid"] == "unknown"
    assert not node_processes(run_dir.name)


@pytest.mark.slow
def test_bundled_node_in_maelstrom_mode_is_valid_under_every_nemesis(tmp_path: Path) -> None:
    proc, run_dir, results = run(tmp_path / "store", *BUNDLED,
                                 "--nemesis", "partition,pause,kill,delay,disk",
                                 "--time-limit", "30", "--nemesis-interval", "1.5",
                                 "--seed", "7")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert results["valid"] is True
    history = read_history(run_dir)
    done = {op["f"] for op in history if op["process"] == "nemesis" and op["type"] == "info"}
    assert {"start-partition", "pause", "kill", "start-delay"} <= done, done
    assert done & {"lose-unsynced", "start-slow-disk"}, done
    assert not node_processes(run_dir.name)


@pytest.mark.slow
def test_messages_lost_on_the_links_reach_the_node_whole(tmp_path: Path) -> None:
    proc, run_dir, results = run(tmp_path / "store", *BUNDLED,
                                 "--nemesis", "delay:lossy-links/lossy-node", "--loss", "0.3",
                                 "--time-limit", "12", "--nemesis-interval", "1.5",
                                 "--seed", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert results["valid"] is True
    history = read_history(run_dir)
    losses = [op for op in history if op["process"] == "nemesis" and op["f"] == "start-loss"
              and op["type"] == "info"]
    assert losses and all(op["value"]["loss"] == 0.3 for op in losses)
    # whole messages went missing, never half of one: the bridges saw no broken line
    assert results["checkers"]["protocol"]["valid"] is True
