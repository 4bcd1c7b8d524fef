"""The system interface: what the harness needs from a system under test.

A system says how one member starts (its command line, given where the backend placed it), how a
client's operation goes on the wire and how a reply becomes an outcome, and which optional
capabilities it has. The backends keep their own mechanisms (processes, containers, hosts;
signals, iptables, proxies); the checkers and nemeses ask for capabilities by name.
"""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# What a system may be able to do beyond starting members and serving clients:
#   leader    it names its current leader (leader-targeted faults need it)
#   log       it serves its chosen log (the agreement and exactly-once checkers)
#   counters  it reports counters (elections, rounds, commits) for the fast-path windows
#   durable   a member restarted on its data directory keeps what it acknowledged (kill:all)
#   bugs      it can inject the bug catalogue (--bug)
CAPABILITIES = ("leader", "log", "counters", "durable", "bugs")


def add_package(tar: tarfile.TarFile, root: Path, arcname: str) -> None:
    """A package's sources into a tar, without caches."""
    for path in sorted(root.rglob("*")):
        if "__pycache__" in path.parts or path.suffix in {".pyc", ".pyo"}:
            continue
        tar.add(path, arcname=str(Path(arcname) / path.relative_to(root)), recursive=False)


def node_code_tar(root: Path) -> bytes:
    """A package (standard library only) as a tar named node/ for deployment."""
    if not (root / "__main__.py").exists():
        raise ValueError(f"no node to deploy: {root}/__main__.py does not exist")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        add_package(tar, root, "node")
    return buf.getvalue()


@dataclass(frozen=True)
class Member:
    """One member as a backend placed it: what a system needs to build its command line."""

    node: str
    listen: tuple[str, int]
    peers: dict[str, tuple[str, int]]  # where this member reaches each peer
    data_dir: str
    secret_file: str | None = None
    python: str = "python3"  # the interpreter on the member's host
    ports: dict[str, tuple[str, int]] = field(default_factory=dict)  # System.extra_ports
    # Where every member's peer port is reached (for systems whose members share one member
    # list, like etcd's --initial-cluster); empty when each member dials its peers itself.
    advertised: dict[str, tuple[str, int]] = field(default_factory=dict)
    cluster_token: str | None = None  # one per run
    # Where the backend unpacked the system's code_tar() on the member's host (None: this
    # checkout, on the local backend).
    code_dir: str | None = None


@dataclass
class Outcome:
    """What one attempt of an operation came to, as the system's client reads the reply.

    kind: `ok`; `fail` (definitely did not happen); `info` (may have happened, do not retry);
    `retry` (may have happened, but trying again elsewhere is safe: the system de-duplicates);
    `unavailable` (definitely not done here: try the `leader` hint or another member).
    """

    kind: str
    value: Any = None
    error: str | None = None
    leader: str | None = None
    # A `fail` of a cas that ran and compared: the register held something other than `from`.
    # That is an observation of the register, not "did not happen" (Porcupine's etcd model).
    compare_failed: bool = False


class NotSent(OSError):
    """The request never left: connecting failed. The operation definitely did not happen."""


@dataclass
class System:
    """A system under test. Subclasses fill in the methods; `capabilities` says what else
    they can do (CAPABILITIES)."""

    name: str = "abstract"
    capabilities: frozenset[str] = field(default_factory=frozenset)
    extra_ports: tuple[str, ...] = ()   # ports a member needs beside its client port
    workloads: tuple[str, ...] | None = None  # the workloads it can serve (None: all)
    fsync_shim: bool = True   # a Python program, so the local slow-disk shim reaches its fsyncs
    graceful_stop: bool = True  # SIGTERM at teardown (else SIGKILL: its members stop slowly)
    # The header a member's peer requests name their sender in (etcd: X-Server-From), for a
    # system whose members all dial a peer at the one address it advertises; None: each
    # member dials its peers at the addresses given (the per-link proxies split those).
    sender_header: str | None = None
    # How a backend that signals by command line (pkill -f) finds a member's process.
    process_pattern: str = "(^|/)python3?(\\.[0-9]+)? -m node( |$)"
    # A retry with the same (client, seq) is applied at most once (a session table): the
    # reply to any attempt is then the outcome of the one application.
    deduplicates: bool = False
    # A member is a process group (a wrapper and its child): pause and kill signal the group.
    signal_group: bool = False
    # How its peer links frame messages: "lines" (one message a line after any handshake, so
    # a proxy can lose whole messages: the `loss` fault) or "stream" (anything else: HTTP).
    peer_framing: str = "stream"

    def code(self) -> Path | None:
        """A package the backends deploy next to each member (None: installed there)."""
        return None

    def code_tar(self) -> bytes | None:
        """What the backends unpack next to each member (Member.code_dir): code() as a tar."""
        root = self.code()
        return node_code_tar(root) if root is not None else None

    def command(self, member: Member, extra: list[str]) -> list[str]:
        """The member's command line."""
        raise NotImplementedError

    def member_args(self, config: Any, node: str) -> list[str]:
        """Arguments a run's configuration gives one member (timing, bugs)."""
        return []

    def client(self, address: tuple[str, int]) -> Any:
        """A connection to one member with `async invoke(op, client, seq, timeout) -> Outcome`
        (raising NotSent, OSError when the connection was lost after sending, TimeoutError)
        and `close()`."""
        raise NotImplementedError

    async def status(self, address: tuple[str, int], timeout: float) -> dict[str, Any] | None:
        """The member's status (role, ballot, counters, ...), None when it does not answer."""
        return None

    def leader_of(self, statuses: dict[str, dict[str, Any] | None]) -> str | None:
        """The leader the statuses show (the one with the highest ballot or term)."""
        return None

    def serving(self, statuses: dict[str, dict[str, Any] | None]) -> str | None:
        """A member that leads and serves clients: the cluster is up."""
        return None

    async def fetch_log(self, address: tuple[str, int], start: int = 0,
                        timeout: float = 5.0) -> dict[str, Any] | None:
        """The member's chosen log {"first", "entries"} from slot `start` on, None when it
        cannot be had."""
        return None

    def route_names(self, advertised: dict[str, tuple[str, int]],
                    token: str) -> dict[str, str]:
        """With a `sender_header`: the sender ids its members' peer requests carry, to node
        names, given every member's advertised peer address and the cluster token."""
        return {}

    def lacks(self, needed: set[str]) -> set[str]:
        return set(needed) - set(self.capabilities)
