"""Any Maelstrom `lin-kv` node, unchanged, as a system: `--system maelstrom --bin PROGRAM`.

Each member is the program under the Maelstrom bridge (bridge.py, deployed next to it), which
speaks Maelstrom's stdio protocol to the program and carries its messages over real TCP links:
the harness's proxies (local backend) or the host's iptables (Docker, SSH) act on them as on any
other system's traffic. A client is a TCP connection to a member's bridge carrying Maelstrom
messages from `c<process>` (doc/protocol.md, doc/workloads.md of jepsen-io/maelstrom):

    read {key}              -> read_ok {value}
    write {key, value}      -> write_ok
    cas {key, from, to}     -> cas_ok

Errors are `{"type": "error", "code", "text"}`. Definite codes (the operation did not happen):
1 node-not-found, 10 not-supported, 11 temporarily-unavailable, 12 malformed-request, 14 abort,
20 key-does-not-exist, 21 key-already-exists, 22 precondition-failed, 30 txn-conflict. Every
other code (0 timeout, 13 crash, and codes Maelstrom does not define) is indefinite. A read
answered with 20 observed an absent key (the register's initial nothing); a cas answered with
20 or 22 compared and failed (an observation, as for the bundled node). Register keys `k<n>`
go on the wire as the integer n, as Maelstrom's lin-kv workload sends them.

Capabilities: counters (the bridge counts messages between members: Maelstrom's `net` figures)
and durable (kill:all and power cuts are run: a node that keeps no state in its working
directory may lose acknowledged writes, which is a finding about that node). A Maelstrom node
names no leader and serves no log, so leader-targeted faults and the agreement checkers do not
apply.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import os
import re
import shutil
import tarfile
from pathlib import Path
from typing import Any

from harness.systems.base import Member, NotSent, Outcome, System, add_package

HERE = Path(__file__).resolve().parent
BRIDGE = HERE / "bridge.py"
REPO_ROOT = HERE.parents[2]
_MAX_LINE = 1 << 20

# Maelstrom's error table (doc/protocol.md): the codes whose operation definitely did not
# happen. Every other code is indefinite (custom codes are, by Maelstrom's rule).
DEFINITE = {1: "node-not-found", 10: "not-supported", 11: "temporarily-unavailable",
            12: "malformed-request", 14: "abort", 20: "key-does-not-exist",
            21: "key-already-exists", 22: "precondition-failed", 30: "txn-conflict"}
INDEFINITE = {0: "timeout", 13: "crash"}
NO_KEY, PRECONDITION, UNAVAILABLE = 20, 22, 11

_KEY = re.compile(r"k([0-9]{1,18})")


def wire_key(key: Any) -> Any:
    match = _KEY.fullmatch(key) if isinstance(key, str) else None
    return int(match.group(1)) if match else key


def error_name(code: Any) -> str:
    return DEFINITE.get(code) or INDEFINITE.get(code) or f"error {code}"


def outcome_of(op: dict[str, Any], body: dict[str, Any]) -> Outcome:
    """A Maelstrom reply body as an outcome."""
    f, kind = op["f"], body.get("type")
    if kind == f"{f}_ok":
        return Outcome("ok", body.get("value") if f == "read" else op["value"])
    if kind != "error":
        return Outcome("info" if f != "read" else "fail", op["value"] if f != "read" else None,
                       f"unexpected reply type {kind!r}")
    code = body.get("code")
    text = body.get("text")
    error = error_name(code) + (f": {text}" if isinstance(text, str) and text else "")
    if f == "read":
        if code == NO_KEY:
            return Outcome("ok", None)
        return Outcome("fail", None, error)  # a read changes nothing, whatever its fate
    if f == "cas" and code in (NO_KEY, PRECONDITION):
        return Outcome("fail", op["value"], error, compare_failed=True)
    if code == UNAVAILABLE:
        return Outcome("unavailable", op["value"], error)
    if code in DEFINITE:
        return Outcome("fail", op["value"], error)
    return Outcome("info", op["value"], error)


def request_body(op: dict[str, Any]) -> dict[str, Any]:
    f, key = op["f"], wire_key(op["key"])
    if f == "read":
        return {"type": "read", "key": key}
    if f == "write":
        return {"type": "write", "key": key, "value": op["value"]}
    if f == "cas":
        return {"type": "cas", "key": key, "from": op["value"][0], "to": op["value"][1]}
    raise ValueError(f"Maelstrom's lin-kv has no operation {f!r}")


class MaelstromClient:
    """One worker's connection to one member's bridge. Any error closes it; a reply is matched
    by in_reply_to, so a late reply to a timed-out request is never taken for a new one."""

    _ids = itertools.count(1)

    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def invoke(self, op: dict[str, Any], client: str, seq: int,
                     timeout: float) -> Outcome:
        body = request_body(op)
        try:
            reply = await asyncio.wait_for(self._request(client, body, timeout), timeout)
        except BaseException:
            self.close()
            raise
        return outcome_of(op, reply)

    async def _request(self, client: str, body: dict[str, Any],
                       timeout: float) -> dict[str, Any]:
        if self.writer is None:
            try:
                self.reader, self.writer = await asyncio.wait_for(
                    asyncio.open_connection(*self.address, limit=_MAX_LINE), timeout)
            except (TimeoutError, OSError) as exc:
                raise NotSent(f"cannot connect to {self.address[0]}:{self.address[1]}: "
                              f"{exc}") from None
        assert self.reader is not None and self.writer is not None
        msg_id = next(self._ids)
        self.writer.write(json.dumps({"src": client, "dest": "", "body": {
            **body, "msg_id": msg_id}}).encode() + b"\n")
        await self.writer.drain()
        while True:
            line = await self.reader.readline()
            if not line:
                raise ConnectionResetError("connection closed by the bridge")
            reply = json.loads(line)
            if isinstance(reply, dict) and "error" in reply and "body" not in reply:
                raise ValueError(str(reply["error"]))
            reply_body = reply.get("body") if isinstance(reply, dict) else None
            if isinstance(reply_body, dict) and reply_body.get("in_reply_to") == msg_id:
                return reply_body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def bridge_status(address: tuple[str, int], timeout: float) -> dict[str, Any] | None:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(*address), timeout)
    except (TimeoutError, OSError):
        return None
    try:
        writer.write(b'{"harness": "status"}\n')
        line = await asyncio.wait_for(reader.readline(), timeout)
        reply = json.loads(line)
        return reply if isinstance(reply, dict) else None
    except (TimeoutError, OSError, ValueError):
        return None
    finally:
        writer.close()


def is_python(program: str) -> bool:
    """Whether the program is Python (so the disk-fault shim, a sitecustomize, reaches it)."""
    name = os.path.basename(program)
    if re.fullmatch(r"python[0-9.]*", name) or program.endswith(".py"):
        return True
    try:
        with open(program, "rb") as f:
            first = f.readline(200)
    except OSError:
        return False
    return first.startswith(b"#!") and b"python" in first


class MaelstromSystem(System):
    """A Maelstrom node program under the bridge."""

    def __init__(self, program: str | None, program_args: list[str] | tuple[str, ...] = ()
                 ) -> None:
        super().__init__("maelstrom", frozenset({"counters", "durable"}))
        if not program:
            raise ValueError("--system maelstrom needs --bin PROGRAM (the node to run)")
        self.program = program
        self.program_args = list(program_args)
        self.file = Path(program).resolve() if os.sep in program or Path(program).is_file() \
            else None
        if self.file is not None and not self.file.is_file():
            raise ValueError(f"--bin {program}: no such file")
        if self.file is None and shutil.which(program) is None:
            raise ValueError(f"--bin {program}: no such program on PATH")
        self.workloads = ("register",)
        self.fsync_shim = is_python(str(self.file or shutil.which(program) or program))
        # The deployed bridge's own command line only (anchored: docker-init's and the signalling
        # shell's command lines hold the same words further on).
        self.process_pattern = "^[^ ]*python[^ ]* [^ ]*maelstrom_bridge[.]py "
        self.signal_group = True
        self.peer_framing = "lines"

    def code_tar(self) -> bytes:
        """The bridge, the bundled node (the bridge's peer authentication is node.auth; and so
        `python3 -m node --maelstrom` runs there too), and the program when it is a file."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            tar.add(BRIDGE, arcname="maelstrom_bridge.py", recursive=False)
            add_package(tar, REPO_ROOT / "node", "node")
            if self.file is not None:
                tar.add(self.file, arcname=f"bin/{self.file.name}", recursive=False)
        return buf.getvalue()

    def program_argv(self, member: Member) -> list[str]:
        if self.file is None:
            return [self.program, *self.program_args]
        if member.code_dir is None:
            return [str(self.file), *self.program_args]
        return [f"{member.code_dir}/bin/{self.file.name}", *self.program_args]

    def command(self, member: Member, extra: list[str]) -> list[str]:
        bridge = str(BRIDGE) if member.code_dir is None \
            else f"{member.code_dir}/maelstrom_bridge.py"
        host, port = member.listen
        argv = [member.python, bridge, "--id", member.node,
                "--nodes", ",".join(sorted([member.node, *member.peers])),
                "--listen", f"{host}:{port}", "--data-dir", member.data_dir,
                "--secret-file", member.secret_file or ""]
        for peer, (phost, pport) in sorted(member.peers.items()):
            argv += ["--peer", f"{peer}={phost}:{pport}"]
        return [*argv, *extra, "--", *self.program_argv(member)]

    def client(self, address: tuple[str, int]) -> MaelstromClient:
        return MaelstromClient(address)

    async def status(self, address: tuple[str, int], timeout: float) -> dict[str, Any] | None:
        status = await bridge_status(address, timeout)
        if status is not None:
            # The bridge's own id field is "node"; the fast-path windows read "counters".
            status.setdefault("counters", {})
        return status

    def serving(self, statuses: dict[str, dict[str, Any] | None]) -> str | None:
        """Up once every member answered init (a Maelstrom node names no leader)."""
        ready = [n for n, s in statuses.items() if s and s.get("init") == "ok"]
        return ready[0] if ready and len(ready) == len(statuses) else None


__all__ = ["MaelstromClient", "MaelstromSystem", "outcome_of", "request_body", "wire_key"]
