"""Local backend: one node process per node on its own loopback address, peer links via proxies.

Needs no root: pause is SIGSTOP/SIGCONT, kill is SIGKILL, partitions and delays happen in the
harness-owned proxies (harness.backends.proxy). Every process carries PAXOS_HARNESS_RUN in its
environment so `harness clean` can find what a crashed controller left behind.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.backends.base import FAULTFS, Backend, BackendError, Edge, controller_alive
from harness.backends.faultfs import unsynced
from harness.backends.proxy import ProxyMesh
from harness.systems import Member, System

RUN_ENV = "PAXOS_HARNESS_RUN"
CONTROLLER_ENV = "PAXOS_HARNESS_CONTROLLER"
SLOW_DISK_ENV = "PAXOS_HARNESS_SLOW_DISK"
SYNC_JOURNAL_ENV = "PAXOS_HARNESS_SYNC_JOURNAL"
REPO_ROOT = Path(__file__).resolve().parents[2]


# A campaign with several workers gives each its slot: its runs' nodes get their own block of
# loopback addresses, so two runs never race for one address's free ports.
SLOT_ENV = "PAXOS_HARNESS_SLOT"


def node_host(index: int) -> str:
    try:
        slot = min(max(int(os.environ.get(SLOT_ENV, "0")), 0), 200)
    except ValueError:
        slot = 0
    return f"127.0.{10 + slot}.{index + 1}"


SECRET_PREFIX = "paxos-secret-"


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise BackendError(
                f"port {port} on {host} is already in use ({exc.strerror})"
            ) from None


class LocalBackend(Backend):
    name = "local"

    def __init__(self, node_ids: list[str], run_dir: Path, node_args: list[str], run_id: str,
                 per_node_args: dict[str, list[str]] | None = None, base_port: int = 0,
                 direct: bool = False, system: System | None = None) -> None:
        super().__init__(node_ids, run_dir, node_args, run_id, per_node_args, system)
        self.base_port = base_port
        # Direct: peers dial each other without proxies and fsync without the disk-fault shim
        # (benchmarks: no faults then, and none of the harness's cost inside the members).
        self.direct = direct
        self.addresses: dict[str, tuple[str, int]] = {}
        self.procs: dict[str, subprocess.Popen] = {}
        self.paused: set[str] = set()
        self.mesh: ProxyMesh | None = None
        self.peer_addresses: dict[Edge, tuple[str, int]] = {}
        self._secret_dir: Path | None = None
        self.extra_addresses: dict[str, dict[str, tuple[str, int]]] = {}
        self.advertised: dict[str, tuple[str, int]] = {}

    def capabilities(self) -> set[str]:
        caps = {"pause", "kill"}
        if self.system.fsync_shim and not self.direct:
            caps.add("disk")  # the slow-disk shim is a Python sitecustomize
            caps.add("lose-unsynced")  # so is the sync journal
        routable = not self.system.extra_ports or self.system.sender_header is not None
        if not self.direct and routable:
            # The proxies split links by the port each member dials, or, for a system whose
            # members all dial a peer at its one advertised address (etcd), by the sender its
            # requests name.
            caps |= {"partition", "delay", "one-way"}
            if self.system.peer_framing == "lines":
                caps.add("loss")  # the proxies can drop whole messages
        return caps

    def setup(self) -> None:
        for i, node in enumerate(self.node_ids):
            host = node_host(i)
            if self.base_port:
                port = self.base_port + i
                check_port_free(host, port)
            else:
                port = free_port(host)
            self.addresses[node] = (host, port)
            self.extra_addresses[node] = {name: (host, free_port(host))
                                          for name in self.system.extra_ports}
        if not self.direct:
            self.mesh = ProxyMesh()
        if "peer" in self.system.extra_ports:
            self.advertised = {n: a["peer"] for n, a in self.extra_addresses.items()}
            if self.mesh is not None and self.system.sender_header:
                self.advertised = self.mesh.route_cluster(
                    self.advertised, self.system.sender_header,
                    lambda advertised: self.system.route_names(advertised, self.run_id))
        for src in self.node_ids:
            for dst in self.node_ids:
                if src == dst:
                    continue
                if self.advertised:
                    self.peer_addresses[(src, dst)] = self.advertised[dst]
                else:
                    self.peer_addresses[(src, dst)] = (
                        self.addresses[dst] if self.mesh is None
                        else self.mesh.add_edge((src, dst), self.addresses[dst]))
        for node in self.node_ids:
            self.node_dir(node).mkdir(parents=True, exist_ok=True)
            self._spawn(node)

    def secret_file(self) -> Path:
        """The cluster secret, in a private directory outside the store (which may be served)."""
        if self._secret_dir is None:
            # The controller's pid in the name: `harness clean` removes it once that is gone.
            self._secret_dir = Path(tempfile.mkdtemp(prefix=f"{SECRET_PREFIX}{os.getpid()}-"))
            path = self._secret_dir / "cluster.secret"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(self.secret)
        return self._secret_dir / "cluster.secret"

    def node_dir(self, node: str) -> Path:
        return self.run_dir / "nodes" / node

    def command(self, node: str) -> list[str]:
        member = Member(node=node, listen=self.addresses[node],
                        peers={p: self.peer_addresses[(node, p)] for p in self.node_ids
                               if p != node},
                        data_dir=str(self.node_dir(node) / "data"),
                        secret_file=str(self.secret_file()), python=sys.executable,
                        ports=self.extra_addresses.get(node, {}),
                        advertised=self.advertised,
                        cluster_token=self.run_id)
        return self.system.command(member, self.args_for(node))

    def _spawn(self, node: str) -> None:
        env = dict(os.environ)
        env[RUN_ENV] = self.run_id
        env[CONTROLLER_ENV] = str(os.getpid())
        # Absolute: a member may run its program in another directory (Maelstrom's bridge).
        if not self.direct:
            env[SLOW_DISK_ENV] = str(self.disk_flag(node).resolve())
            env[SYNC_JOURNAL_ENV] = str(self.sync_journal(node).resolve())
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(FAULTFS), str(REPO_ROOT), env.get("PYTHONPATH")]))
        log = open(self.node_dir(node) / "node.log", "ab")
        try:
            self.procs[node] = subprocess.Popen(
                self.command(node), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                env=env, start_new_session=True,
            )
        finally:
            log.close()

    def client_address(self, node: str) -> tuple[str, int]:
        return self.addresses[node]

    def is_running(self, node: str) -> bool:
        proc = self.procs.get(node)
        return proc is not None and proc.poll() is None

    def exit_status(self, node: str) -> int | None:
        proc = self.procs.get(node)
        return None if proc is None else proc.poll()

    def _signal(self, node: str, sig: int) -> None:
        """Signal the member: its process group when the system's member is one (every member
        leads a session of its own here)."""
        pid = self.procs[node].pid
        try:
            if self.system.signal_group:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)
        except ProcessLookupError:
            pass

    def kill(self, node: str) -> None:
        proc = self.procs.get(node)
        if proc is not None and proc.poll() is None:
            self._signal(node, signal.SIGKILL)
            proc.wait(timeout=10)
        self.paused.discard(node)

    def restart(self, node: str) -> None:
        if self.is_running(node):
            return
        self._spawn(node)

    def pause(self, node: str) -> None:
        if self.is_running(node):
            self._signal(node, signal.SIGSTOP)
            self.paused.add(node)

    def resume(self, node: str) -> None:
        if self.is_running(node):
            self._signal(node, signal.SIGCONT)
        self.paused.discard(node)

    def set_network(self, cut: set[Edge], delays: dict[Edge, float]) -> None:
        if self.mesh is None:
            if cut or delays:
                raise BackendError("this local cluster runs without proxies: no network faults")
            return
        self.mesh.set_cut(cut)
        self.mesh.set_delay(delays)

    def set_loss(self, losses: dict[Edge, float]) -> None:
        if self.mesh is None or self.system.peer_framing != "lines":
            if losses:
                raise BackendError("this local cluster cannot lose whole messages")
            return
        self.mesh.set_loss(losses)

    def sync_journal(self, node: str) -> Path:
        return self.node_dir(node) / "sync-journal"

    def lose_unsynced(self, node: str) -> dict[str, int]:
        self.kill(node)
        lost = unsynced.drop_unsynced(str(self.node_dir(node) / "data"),
                                      str(self.sync_journal(node)))
        with open(self.node_dir(node) / "node.log", "a") as log:
            log.write(f"harness: power cut: unsynced writes dropped "
                      f"({', '.join(f'{k} {v}' for k, v in lost.items())})\n")
        return lost

    def disk_flag(self, node: str) -> Path:
        return self.node_dir(node) / "slow-disk"

    def set_disk_delay(self, node: str, seconds: float) -> None:
        flag = self.disk_flag(node)
        if seconds > 0:
            tmp = flag.with_suffix(".tmp")
            tmp.write_text(f"{seconds:.6f}")
            os.replace(tmp, flag)
        else:
            flag.unlink(missing_ok=True)

    def log_tail(self, node: str, lines: int = 20) -> str:
        path = self.node_dir(node) / "node.log"
        try:
            text = path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def collect(self) -> None:
        # The nodes write their logs straight into the run directory.
        return None

    def teardown(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    if self.system.signal_group:
                        os.killpg(proc.pid, signal.SIGCONT)
                    os.kill(proc.pid, signal.SIGCONT)
                    if self.system.graceful_stop:
                        proc.terminate()
                    else:
                        proc.kill()
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 3
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.05, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self.paused.clear()
        if self.mesh is not None:
            self.mesh.close()
            self.mesh = None
        if self._secret_dir is not None:
            shutil.rmtree(self._secret_dir, ignore_errors=True)
            self._secret_dir = None


def leftover_pids(run_id: str | None = None) -> list[int]:
    """Node processes whose controller is gone (or of one given run), found through /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            raw = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        environ = dict(item.decode(errors="replace").split("=", 1) for item in raw if b"=" in item)
        controller = environ.get(CONTROLLER_ENV, "")
        if RUN_ENV not in environ or not controller.isdigit():
            continue  # not a node, or one of another backend (in a container): not ours to clean
        if run_id is not None:
            if environ[RUN_ENV] == run_id:
                found.append(int(entry.name))
            continue
        if not controller_alive(controller):
            found.append(int(entry.name))
    return found


def clean_local(run_id: str | None = None) -> list[int]:
    """Kill leftover node processes and remove the secrets of dead controllers; returns the
    pids killed."""
    pids = leftover_pids(run_id)
    for pid in pids:
        for sig in (signal.SIGCONT, signal.SIGKILL):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                break
    for path in leftover_secrets():
        shutil.rmtree(path, ignore_errors=True)
    return pids


def leftover_secrets(root: str | None = None) -> list[Path]:
    """Cluster-secret directories (secret_file) whose controller is gone."""
    found = []
    for path in Path(root or tempfile.gettempdir()).glob(f"{SECRET_PREFIX}*"):
        pid = path.name[len(SECRET_PREFIX):].split("-", 1)[0]
        if path.is_dir() and pid.isdigit() and not controller_alive(pid):
            found.append(path)
    return found
