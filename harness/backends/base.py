"""The interface every backend offers the harness and the nemeses.

All methods are blocking; the controller calls them from a worker thread. Network faults are
expressed as the whole wanted state (the set of cut directed edges, the delays), never as
increments, so a backend can re-apply it after a restart and a heal is simply the empty state.
"""

from __future__ import annotations

import io
import os
import secrets
import socket
import tarfile
from pathlib import Path

from harness.systems import System, make_system

Edge = tuple[str, str]

# Fault capabilities a backend may offer; the nemesis asks for them before a run starts.
FAULTS = ("partition", "pause", "kill", "delay", "disk")


class BackendError(Exception):
    """The backend could not do what was asked: a harness problem, never a verdict."""


FAULTFS = Path(__file__).resolve().parent / "faultfs"


def faultfs_tar() -> bytes:
    """The disk-fault shim (faultfs/) as a tar, for members in containers."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path in sorted(FAULTFS.glob("*.py")):
            tar.add(path, arcname=f"faultfs/{path.name}", recursive=False)
    return buf.getvalue()


def flag_tar(name: str) -> bytes:
    """A tar of one empty file."""
    info = tarfile.TarInfo(name)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.addfile(info, io.BytesIO(b""))
    return buf.getvalue()


def secret_tar(secret: str, name: str = "cluster.secret") -> bytes:
    """The cluster secret as a tar of one file that only its owner (root) can read."""
    data = secret.encode()
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.uid, info.gid = len(data), 0o400, 0, 0
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def controller_tag() -> str:
    """This controller, as "HOST:PID": recorded with what a run makes, read by controller_alive."""
    return f"{socket.gethostname()}:{os.getpid()}"


def controller_alive(controller: str) -> bool:
    """Whether the controller recorded as "HOST:PID" (or "PID": this host) still runs, so that
    what it made must be kept. One on another host counts as alive: we cannot tell from here."""
    host, _, pid = controller.rpartition(":")
    if not pid.isdigit():
        return False
    if host and host != socket.gethostname():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Backend:
    name = "abstract"
    # Its methods block (processes, containers, hosts): the controller calls them from a
    # thread. A simulation's do not, and must run on the controller's own (simulated) loop.
    blocking = True

    def __init__(self, node_ids: list[str], run_dir: Path, node_args: list[str],
                 run_id: str, per_node_args: dict[str, list[str]] | None = None,
                 system: System | None = None) -> None:
        self.system = system if system is not None else make_system("paxos")
        self.node_ids = list(node_ids)
        self.run_dir = Path(run_dir)
        self.node_args = list(node_args)
        self.per_node_args = dict(per_node_args or {})
        self.run_id = run_id
        # The cluster secret the nodes' peer links authenticate with (node.auth): new for every
        # run, handed to each node as a file only its user can read, never on a command line.
        self.secret = secrets.token_hex(32)

    def args_for(self, node: str) -> list[str]:
        """Extra node arguments (timing, bugs) for one node."""
        return list(self.per_node_args.get(node, self.node_args))

    def capabilities(self) -> set[str]:
        """The faults this backend can do on this machine."""
        raise NotImplementedError

    def probe(self, faults: set[str]) -> None:
        missing = set(faults) - self.capabilities()
        if missing:
            which = "" if self.system.name == "paxos" else f" for system {self.system.name}"
            raise BackendError(f"backend {self.name} cannot do {', '.join(sorted(missing))}"
                               f"{which} on this machine")

    def setup(self) -> None:
        """Create everything and start every node."""
        raise NotImplementedError

    def client_address(self, node: str) -> tuple[str, int]:
        raise NotImplementedError

    def kill(self, node: str) -> None:
        raise NotImplementedError

    def restart(self, node: str) -> None:
        """Start a killed node again on the same data directory."""
        raise NotImplementedError

    def pause(self, node: str) -> None:
        raise NotImplementedError

    def resume(self, node: str) -> None:
        raise NotImplementedError

    def is_running(self, node: str) -> bool:
        raise NotImplementedError

    def set_network(self, cut: set[Edge], delays: dict[Edge, float]) -> None:
        """Cut exactly `cut` (directed: src's messages do not reach dst) and delay `delays`
        (seconds); every other link flows normally."""
        raise NotImplementedError

    def set_loss(self, losses: dict[Edge, float]) -> None:
        """Lose each message on the given links with the given probability (none: no loss).
        Only backends with the `loss` capability."""
        if losses:
            raise BackendError(f"backend {self.name} cannot lose messages")

    def lose_unsynced(self, node: str) -> dict[str, int]:
        """Kill the node as a power cut would: SIGKILL, then everything it wrote but did not
        fsync is gone (faultfs/unsynced.py). Returns what was lost. Only backends with the
        `lose-unsynced` capability."""
        raise BackendError(f"backend {self.name} cannot drop a node's unsynced writes")

    def set_disk_delay(self, node: str, seconds: float) -> None:
        """Make the node's fsyncs take `seconds` longer (0: normal). Only backends with the
        `disk` capability."""
        raise BackendError(f"backend {self.name} cannot slow a node's disk")

    def log_tail(self, node: str, lines: int = 20) -> str:
        raise NotImplementedError

    def collect(self) -> None:
        """Copy every node's log into run_dir/nodes/<id>/."""
        raise NotImplementedError

    def teardown(self) -> None:
        """Stop and remove everything this backend made; safe to call twice."""
        raise NotImplementedError
