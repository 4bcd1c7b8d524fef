"""The SSH backend itself: probe the hosts, deploy the node, start it, fault it, collect, tear
down (see harness.backends.ssh for the whole picture)."""

from __future__ import annotations

import io
import ipaddress
import json
import os
import socket
import sys
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from harness.backends import netcmds
from harness.backends.base import (
    Backend,
    BackendError,
    Edge,
    controller_tag,
)
from harness.backends.ssh.hosts import Host, KnownHosts, assign_hosts, parse_hosts
from harness.backends.ssh.session import (
    COMMAND_TIMEOUT_S,
    CONNECT_TIMEOUT_S,
    ConnectionLost,
    Result,
    Session,
)
from harness.systems import Member, System
from harness.systems.base import node_code_tar

DEFAULT_NODE_PORT = 7000
MIN_PYTHON = (3, 11)
STOP_WAIT_S = 5.0
REMOTE_ROOT = ".paxos-harness"  # under the login user's home
RUN_ENV = "PAXOS_HARNESS_RUN"
CONTROLLER_ENV = "PAXOS_HARNESS_CONTROLLER"
OWNER_FILE = "owner"
# sbin is not on a non-root user's PATH on many systems, and sudo may not add it either.
PATH_LINE = 'PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH"; export PATH'

T = TypeVar("T")


@dataclass
class HostFacts:
    """What probe() found on one host."""

    uid: int = -1
    sudo: bool = False
    home: str = ""
    python: tuple[int, int] | None = None
    have: set[str] = field(default_factory=set)  # iptables, tc, timeout, setsid
    found: set[str] = field(default_factory=set)  # netcmds.parse_probe of the root probe
    dev: str | None = None  # the interface towards the peers
    probe_error: str = ""

    @property
    def root(self) -> bool:
        return self.uid == 0 or self.sudo


def _parallel(fn: Callable[[str], T], items: Iterable[str]) -> dict[str, T | BaseException]:
    """fn over items in threads (the time is spent waiting on the network); every result or
    exception, so that one bad host does not hide the others."""
    items = list(items)
    out: dict[str, T | BaseException] = {}
    if not items:
        return out
    with ThreadPoolExecutor(max_workers=min(9, len(items))) as pool:
        futures = {item: pool.submit(fn, item) for item in items}
    for item, future in futures.items():
        try:
            out[item] = future.result()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            out[item] = exc
    return out


def _raise_first(results: dict[str, Any]) -> None:
    errors = [exc for exc in results.values() if isinstance(exc, BaseException)]
    for exc in errors:
        if not isinstance(exc, BackendError):
            raise exc
    if errors:
        raise BackendError("; ".join(dict.fromkeys(str(e) for e in errors)))


def _safe(text: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "_.-" else "-" for c in text).strip("-.")
    return (cleaned or "run")[:40]


class SshBackend(Backend):
    name = "ssh"

    def __init__(self, node_ids: list[str], run_dir: Path, node_args: list[str], run_id: str,
                 per_node_args: dict[str, list[str]] | None = None,
                 hosts: str | Iterable[Host] | None = None, known_hosts: str | None = None,
                 ssh_key: str | None = None, accept_new_host_keys: bool = False,
                 node_port: int = DEFAULT_NODE_PORT, connect_timeout: float = CONNECT_TIMEOUT_S,
                 command_timeout: float = COMMAND_TIMEOUT_S, node_code: Path | None = None,
                 log: Any = None, system: System | None = None) -> None:
        super().__init__(node_ids, run_dir, node_args, run_id, per_node_args, system)
        if not hosts:
            raise BackendError("--backend ssh needs --hosts FILE or a comma list of hosts")
        self.hosts = assign_hosts(self.node_ids, parse_hosts(hosts))
        self.node_port = node_port
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.node_code = Path(node_code) if node_code else None  # a test's own node package
        self.log = log if log is not None else sys.stderr
        known = Path(known_hosts or "~/.ssh/known_hosts").expanduser()
        if known_hosts and not known.is_file() and not accept_new_host_keys:
            raise BackendError(f"known_hosts file {known} does not exist")
        self.known_hosts = KnownHosts(known, accept_new_host_keys, self.log)
        self.ssh_key = str(Path(ssh_key).expanduser()) if ssh_key else None
        for host in self.hosts.values():
            key = host.key or self.ssh_key
            if key and not Path(key).expanduser().is_file():
                raise BackendError(f"host {host.label()}: key file {key} does not exist")
        self.instance = f"{_safe(run_id)}-{os.urandom(3).hex()}"
        self.addresses: dict[str, str] = {}
        self.facts: dict[str, HostFacts] = {}
        self.pids: dict[str, int] = {}
        self.paused: set[str] = set()
        self.cut: set[Edge] = set()
        self.delays: dict[Edge, float] = {}
        self.sessions = {node: Session(host, self.known_hosts, self.ssh_key,
                                       connect_timeout, command_timeout)
                         for node, host in self.hosts.items()}
        self._locks = {node: threading.Lock() for node in self.node_ids}
        self._applied: dict[str, netcmds.NodeNetwork | None] = {}
        self._qdisc_touched: set[str] = set()
        self._deployed: set[str] = set()
        self._wanted_faults: set[str] = set()
        self._caps: netcmds.Capabilities | None = None
        self._torn_down = False

    # -- connections -----------------------------------------------------------------------
    def run(self, node: str, script: str, *, root: bool = False,
            timeout: float | None = None, retry: bool = True) -> Result:
        """Run a shell script on the node's host (as root when asked: directly, or with sudo -n)
        under a deadline there and here. The connection is re-opened after a failure and the
        script run again once (every script this backend runs is idempotent)."""
        timeout = timeout or self.command_timeout
        host = self.hosts[node]
        argv = netcmds.sh(f"{PATH_LINE}\n{script}")
        facts = self.facts.get(node)
        if root and facts is not None and facts.uid != 0:
            if not facts.sudo:
                raise BackendError(f"host {host.label()}: not root and sudo -n is refused")
            argv = ["sudo", "-n", *argv]
        if facts is not None and "timeout" in facts.have:
            argv = netcmds.with_deadline(argv, timeout)
        command = netcmds.quote(argv)
        for attempt in (1, 2):
            try:
                result = self.sessions[node].exec_once(command, timeout)
            except ConnectionLost as exc:
                self.sessions[node].drop()
                if attempt == 2 or not retry:
                    raise BackendError(f"host {host.label()}: connection lost ({exc}) and "
                                       "re-opening it did not help") from None
                continue
            except TimeoutError:
                # The channel may be wedged: start the next command on a fresh connection.
                self.sessions[node].drop()
                raise BackendError(f"host {host.label()}: a command did not finish within "
                                   f"{timeout:g} s: {script.strip().splitlines()[-1][:100]}"
                                   ) from None
            if result.code == 124 and facts is not None and "timeout" in facts.have:
                raise BackendError(f"host {host.label()}: a command timed out after "
                                   f"{timeout:g} s: {script.strip().splitlines()[-1][:100]}")
            return result
        raise AssertionError("unreachable")

    def sftp_put(self, node: str, data: bytes, remote: str) -> None:
        self.sessions[node].sftp(lambda sftp: sftp.putfo(io.BytesIO(data), remote, confirm=True))

    def sftp_put_private(self, node: str, data: bytes, remote: str) -> None:
        """A file only the login user can read: made 0600 before anything is written to it."""
        def put(sftp: Any) -> None:
            with sftp.open(remote, "wb") as f:
                f.chmod(0o600)
                f.write(data)
        self.sessions[node].sftp(put)

    def sftp_get(self, node: str, remote: str, local: Path) -> None:
        self.sessions[node].sftp(lambda sftp: sftp.get(remote, str(local)))

    # -- probing ---------------------------------------------------------------------------

    def _peer_address(self, node: str) -> str | None:
        for other in self.node_ids:
            if other != node and other in self.addresses:
                return self.addresses[other]
        return None

    def _probe_host(self, node: str) -> HostFacts:
        host = self.hosts[node]
        # Connection trouble is reported as such, not as a failed probe.
        self.sessions[node].connected()
        peer = self._peer_address(node)
        route = f"ip -o route get {netcmds.quote([peer])} 2>/dev/null || true" if peer else ""
        py = netcmds.quote([host.python])
        script = "\n".join([
            'echo "uid $(id -u)"',
            'echo "home $HOME"',
            'if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1 && '
            'sudo -n true >/dev/null 2>&1; then echo "sudo ok"; fi',
            *(f"command -v {tool} >/dev/null 2>&1 && echo 'have {tool}'"
              for tool in ("iptables", "tc", "timeout", "setsid", "sudo")),
            f"{py} -c 'import sys; print(\"python %d %d\" % sys.version_info[:2])' 2>/dev/null"
            " || echo 'python none'",
            route,
            "exit 0",
        ])
        result = self.run(node, script)
        facts = HostFacts()
        for line in result.out.splitlines():
            words = line.split()
            if words[:1] == ["uid"] and len(words) == 2 and words[1].isdigit():
                facts.uid = int(words[1])
            elif words[:1] == ["home"]:
                facts.home = line[5:].strip()
            elif words == ["sudo", "ok"]:
                facts.sudo = True
            elif words[:1] == ["have"]:
                facts.have.update(words[1:])
            elif words[:1] == ["python"] and len(words) == 3:
                facts.python = (int(words[1]), int(words[2]))
        facts.dev = netcmds.parse_route_dev(result.out)
        if facts.uid < 0 or not facts.home.startswith("/"):
            raise BackendError(f"host {host.label()}: the probe did not answer as expected "
                               f"(exit {result.code}): {result.text()}")
        if facts.python is None:
            raise BackendError(f"host {host.label()}: {host.python} is not installed (the node "
                               f"needs Python {MIN_PYTHON[0]}.{MIN_PYTHON[1]}+)")
        if facts.python < MIN_PYTHON:
            raise BackendError(f"host {host.label()}: {host.python} is "
                               f"{facts.python[0]}.{facts.python[1]}; the node needs "
                               f"{MIN_PYTHON[0]}.{MIN_PYTHON[1]}+")
        self.facts[node] = facts
        if facts.root:
            # The same probe as the Docker backend's, as root: whether iptables and tc netem work
            # (a kernel without the modules, a container without NET_ADMIN).
            res = self.run(node, netcmds.probe_script("lo"), root=True)
            facts.found = netcmds.parse_probe(res.out)
            if res.code != 0:
                facts.probe_error = res.text()
        return facts

    def _reasons(self, node: str) -> dict[str, str]:
        """Why each fault cannot be done on this host (empty if all can)."""
        host = self.hosts[node]
        facts = self.facts[node]
        reasons: dict[str, str] = {}
        label = f"host {host.label()}"
        if not facts.root:
            why = ("not root and no sudo" if "sudo" not in facts.have
                   else "not root and sudo asks for a password (sudo -n is refused)")
            reasons["partition"] = f"{label}: {why} (iptables needs root)"
            reasons["delay"] = f"{label}: {why} (tc needs root)"
            return reasons
        if "iptables" not in facts.have:
            reasons["partition"] = f"{label}: iptables is not installed"
        elif "iptables" not in facts.found:
            reasons["partition"] = (f"{label}: iptables does not work there (no kernel support "
                                    "or no NET_ADMIN)" + (f": {facts.probe_error}"
                                                          if facts.probe_error else ""))
        if "tc" not in facts.have:
            reasons["delay"] = f"{label}: tc (iproute2) is not installed"
        elif "netem" not in facts.found:
            reasons["delay"] = (f"{label}: tc netem does not work there (the kernel lacks "
                                "sch_netem, sch_prio or cls_u32)")
        elif facts.dev is None:
            reasons["delay"] = f"{label}: cannot tell which interface reaches the other hosts"
        return reasons

    def _resolve(self) -> None:
        """Every host's IPv4 address (iptables rules and the nodes' --peer need addresses)."""
        for node, host in self.hosts.items():
            if node in self.addresses:
                continue
            try:
                self.addresses[node] = str(ipaddress.IPv4Address(host.address))
                continue
            except ValueError:
                pass
            try:
                infos = socket.getaddrinfo(host.address, None, socket.AF_INET,
                                           socket.SOCK_STREAM)
            except socket.gaierror as exc:
                raise BackendError(f"host {host.label()}: unreachable: cannot resolve "
                                   f"{host.address} to an IPv4 address ({exc.strerror})"
                                   ) from None
            self.addresses[node] = str(infos[0][4][0])
        by_address: dict[str, str] = {}
        for node, address in self.addresses.items():
            if address in by_address:
                raise BackendError(f"hosts {self.hosts[by_address[address]].label()} and "
                                   f"{self.hosts[node].label()} are the same address {address}: "
                                   "the SSH backend runs one node per host")
            by_address[address] = node

    def capabilities(self) -> set[str]:
        if self._caps is None:
            self._resolve()
            _raise_first(_parallel(self._probe_host, self.node_ids))
            caps = netcmds.Capabilities(faults={"partition", "delay", "pause", "kill"})
            for node in self.node_ids:
                for fault, why in self._reasons(node).items():
                    caps.faults.discard(fault)
                    caps.reasons.setdefault(fault, why)
            if "partition" in caps.faults:
                caps.faults.add("one-way")
            self._caps = caps
        return set(self._caps.faults)

    def probe(self, faults: set[str]) -> None:
        """Connect to every host and check it can do `faults`; every problem is one line naming
        its host, before anything has been started."""
        self._wanted_faults = set(faults)
        self.capabilities()
        assert self._caps is not None
        missing = sorted(set(faults) - self._caps.faults)
        if missing:
            why = "; ".join(self._caps.reasons.get(f, f"{f}: not supported") for f in missing)
            raise BackendError(f"backend ssh cannot do {', '.join(missing)}: {why}")

    # -- set-up ----------------------------------------------------------------------------

    def remote_root(self, node: str) -> str:
        """Where every run's instance directory lives on the node's host."""
        return f"{self.facts[node].home.rstrip('/')}/{REMOTE_ROOT}"

    def remote_dir(self, node: str) -> str:
        return f"{self.remote_root(node)}/{self.instance}"

    def port_of(self, node: str) -> int:
        return self.hosts[node].node_port or self.node_port

    def command(self, node: str) -> list[str]:
        """The node's command line on its host (listening on its cluster address only)."""
        base = self.remote_dir(node)
        member = Member(node=node, listen=(self.addresses[node], self.port_of(node)),
                        peers={p: (self.addresses[p], self.port_of(p)) for p in self.node_ids
                               if p != node},
                        data_dir=f"{base}/data", secret_file=f"{base}/cluster.secret",
                        python=self.hosts[node].python, code_dir=f"{base}/code")
        return self.system.command(member, self.args_for(node))

    def setup(self) -> None:
        if self._caps is None:
            self.capabilities()
        code = node_code_tar(self.node_code) if self.node_code is not None \
            else self.system.code_tar()
        _raise_first(_parallel(lambda node: self._deploy(node, code), self.node_ids))
        _raise_first(_parallel(self._start, self.node_ids))

    def _deploy(self, node: str, code: bytes | None) -> None:
        base = self.remote_dir(node)
        q = netcmds.quote
        self._deployed.add(node)
        # The owner file tells `harness clean` which run and controller this instance is of.
        owner = f"{self.run_id}\n{controller_tag()}\n"
        self.run(node, f"set -e\nmkdir -p {q([base + '/code'])} {q([base + '/data'])}\n"
                       f": >{q([base + '/node.log'])}\n"
                       f"printf %s {q([owner])} >{q([base + '/' + OWNER_FILE])}")
        self.sftp_put_private(node, self.secret.encode(), f"{base}/cluster.secret")
        if code is not None:
            self.sftp_put(node, code, f"{base}/node.tar")
            extract = "import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])"
            unpack = [self.hosts[node].python, "-c", extract, f"{base}/node.tar",
                      f"{base}/code"]
            res = self.run(node, f"set -e\n{q(unpack)}\nrm -f {q([base + '/node.tar'])}")
            if res.code != 0:
                raise BackendError(f"host {self.hosts[node].label()}: unpacking the node "
                                   f"failed: {res.text()}")
        if self._network_managed(node):
            # Rules an earlier run left in our chain must not cut this one.
            self._apply(node, netcmds.NodeNetwork(port=self.port_of(node)))

    def _network_managed(self, node: str) -> bool:
        caps = self._caps.faults if self._caps else set()
        wanted = self._wanted_faults & {"partition", "delay"}
        return bool(wanted) and self.facts[node].root and "partition" in caps

    def _pid_function(self, node: str) -> str:
        """Shell: node_pid prints the node's pid if the pid file names a live process of ours
        (its command line holds our data directory: pids are reused)."""
        base = self.remote_dir(node)
        q = netcmds.quote
        return (f"D={q([base])}\n"
                'node_pid() { p=$(cat "$D/node.pid" 2>/dev/null) || return 1; '
                '[ -n "$p" ] || return 1; '
                'tr "\\000" "\\n" <"/proc/$p/cmdline" 2>/dev/null | grep -qxF -- "$D/data" '
                '|| return 1; echo "$p"; }\n')

    def _start(self, node: str) -> None:
        """Start the node detached, unless it runs already; its pid is echoed once written."""
        host = self.hosts[node]
        q = netcmds.quote
        env = {"PYTHONPATH": f"{self.remote_dir(node)}/code", "PYTHONUNBUFFERED": "1",
               RUN_ENV: self.run_id, CONTROLLER_ENV: controller_tag()}
        env_words = " ".join(q([f"{k}={v}"]) for k, v in env.items())
        # setsid: the node leaves the command's session and process group, so that neither the
        # end of the SSH channel nor `timeout` killing its process group reaches it.
        detach = "setsid " if "setsid" in self.facts[node].have else "nohup "
        launcher = 'echo $$ >"$0.new" && mv "$0.new" "$0" && exec "$@"'
        script = (self._pid_function(node) + "set -e\n"
                  'if p=$(node_pid); then echo "pid $p"; exit 0; fi\n'
                  'rm -f "$D/node.pid"\n'
                  f'cd "$D"\n'
                  f"env {env_words} {detach}sh -c {q([launcher])} \"$D/node.pid\" "
                  f"{q(self.command(node))} </dev/null >>\"$D/node.log\" 2>&1 &\n"
                  "i=0; while [ ! -s \"$D/node.pid\" ]; do i=$((i+1)); "
                  '[ "$i" -lt 250 ] || { echo "no pid file" >&2; exit 1; }; sleep 0.02; done\n'
                  'echo "pid $(cat "$D/node.pid")"\n')
        with self._locks[node]:
            res = self.run(node, script)
            pid = next((int(line.split()[1]) for line in res.out.splitlines()
                        if line.startswith("pid ") and line.split()[1].isdigit()), None)
            if res.code != 0 or pid is None:
                raise BackendError(f"host {host.label()}: starting the node failed "
                                   f"(exit {res.code}): {res.text()}")
            self.pids[node] = pid
            self.paused.discard(node)

    # -- network ---------------------------------------------------------------------------

    def _wanted(self, node: str) -> netcmds.NodeNetwork:
        return netcmds.node_network(node, self.addresses, self.cut, self.delays,
                                    port=self.port_of(node))

    def _apply(self, node: str, state: netcmds.NodeNetwork) -> None:
        facts = self.facts[node]
        # The host's own root qdisc is left alone until a delay is asked for.
        manage_qdisc = bool(state.netem) or node in self._qdisc_touched
        script = netcmds.apply_script(state, dev=facts.dev, manage_qdisc=manage_qdisc)
        res = self.run(node, script, root=True)
        if res.code != 0:
            raise BackendError(f"host {self.hosts[node].label()}: applying the network state "
                               f"failed (exit {res.code}): {res.text()}")
        if state.netem:
            self._qdisc_touched.add(node)
        self._applied[node] = state

    def set_network(self, cut: set[Edge], delays: dict[Edge, float]) -> None:
        if (cut or delays) and self._caps is None:
            raise BackendError("backend ssh: set_network before probe")
        for fault, asked in (("partition", cut), ("delay", delays)):
            if asked and self._caps is not None and fault not in self._caps.faults:
                raise BackendError(f"backend ssh cannot {fault}: "
                                   f"{self._caps.reasons.get(fault, 'not supported')}")
        self.cut = set(cut)
        self.delays = dict(delays)

        def one(node: str) -> None:
            want = self._wanted(node)
            with self._locks[node]:
                if self._applied.get(node, netcmds.NodeNetwork(port=self.port_of(node))) == want:
                    return
                self._apply(node, want)

        _raise_first(_parallel(one, self.node_ids))

    # -- processes -------------------------------------------------------------------------

    def client_address(self, node: str) -> tuple[str, int]:
        return self.addresses[node], self.port_of(node)

    def is_running(self, node: str) -> bool:
        res = self.run(node, self._pid_function(node) + "node_pid >/dev/null")
        return res.code == 0

    def _signal(self, node: str, signal_name: str, wait_gone: bool = False) -> bool:
        """Signal the node's pid if it is still our node; False if it was not running."""
        pid = self.pids.get(node)
        if pid is None:
            return False
        q = netcmds.quote
        # A member that is a process group (setsid made the node its leader) is signalled whole.
        group = self.system.signal_group and "setsid" in self.facts[node].have
        script = (self._pid_function(node) + f'[ "$(node_pid)" = {pid} ] || exit 3\n'
                  f"{q(netcmds.signal_pid(signal_name, pid, group))}\n")
        if wait_gone:
            steps = int(STOP_WAIT_S / 0.02)
            script += (f"i=0; while node_pid >/dev/null; do i=$((i+1)); "
                       f'[ "$i" -lt {steps} ] || exit 4; sleep 0.02; done\n')
        res = self.run(node, script)
        if res.code == 3:
            return False
        if res.code != 0:
            raise BackendError(f"host {self.hosts[node].label()}: SIG{signal_name} to the node "
                               f"(pid {pid}) failed (exit {res.code}): {res.text()}")
        return True

    def kill(self, node: str) -> None:
        with self._locks[node]:
            self._signal(node, "KILL", wait_gone=True)
        self.paused.discard(node)

    def restart(self, node: str) -> None:
        self._start(node)

    def pause(self, node: str) -> None:
        with self._locks[node]:
            if self._signal(node, "STOP"):
                self.paused.add(node)

    def resume(self, node: str) -> None:
        with self._locks[node]:
            self._signal(node, "CONT")
            self.paused.discard(node)

    def log_tail(self, node: str, lines: int = 20) -> str:
        if node not in self.facts:
            return ""
        try:
            res = self.run(node, f"tail -n {int(lines)} "
                           f"{netcmds.quote([self.remote_dir(node) + '/node.log'])}", retry=False)
        except BackendError:
            return ""  # a tail is for messages; never fail on it
        return res.out

    def collect(self) -> None:
        """Each node's log into nodes/<id>/node.log, and where it ran into nodes/<id>/host.json."""
        def one(node: str) -> None:
            node_dir = self.run_dir / "nodes" / node
            node_dir.mkdir(parents=True, exist_ok=True)
            host = self.hosts[node]
            (node_dir / "host.json").write_text(json.dumps(
                {"host": host.name, "user": host.user, "address": host.address,
                 "ssh_port": host.port, "node_port": self.port_of(node),
                 "remote_dir": self.remote_dir(node), "pid": self.pids.get(node)}, indent=1))
            try:
                self.sftp_get(node, f"{self.remote_dir(node)}/node.log", node_dir / "node.log")
            except FileNotFoundError:
                pass

        _raise_first(_parallel(one, sorted(self._deployed)))

    # -- tear-down -------------------------------------------------------------------------

    def _teardown_host(self, node: str) -> None:
        errors = []
        if node in self._deployed:
            # TERM first (a clean exit), KILL if it lingers; CONT so a paused node can exit.
            script = (self._pid_function(node) +
                      "if p=$(node_pid); then kill -CONT \"$p\"; kill -TERM \"$p\"; i=0; "
                      "while node_pid >/dev/null && [ \"$i\" -lt 100 ]; do i=$((i+1)); "
                      "sleep 0.03; done; p=$(node_pid) && kill -KILL \"$p\"; fi; "
                      "i=0; while node_pid >/dev/null && [ \"$i\" -lt 100 ]; do i=$((i+1)); "
                      "sleep 0.03; done; ! node_pid >/dev/null\n")
            try:
                res = self.run(node, script)
                if res.code != 0:
                    errors.append(f"the node would not stop: {res.text()}")
            except BackendError as exc:
                errors.append(str(exc))
        if node in self._applied:
            try:
                res = self.run(node, netcmds.cleanup_script(
                    self.facts[node].dev, manage_qdisc=node in self._qdisc_touched), root=True)
                if res.code != 0:
                    errors.append(f"removing the firewall rules failed: {res.text()}")
            except BackendError as exc:
                errors.append(str(exc))
        if node in self._deployed:
            base = self.remote_dir(node)
            try:
                res = self.run(node, f"rm -rf {netcmds.quote([base])}\n"
                                     f"rmdir {netcmds.quote([os.path.dirname(base)])} "
                                     "2>/dev/null || true")
                if res.code != 0:
                    errors.append(f"removing {base} failed: {res.text()}")
            except BackendError as exc:
                errors.append(str(exc))
        if errors:
            host = self.hosts[node].label()
            raise BackendError(f"teardown on {host}: " + "; ".join(
                e.removeprefix(f"host {host}: ") for e in errors))
        self._deployed.discard(node)
        self._applied.pop(node, None)
        self._qdisc_touched.discard(node)
        self.pids.pop(node, None)

    def teardown(self) -> None:
        """Stop the nodes, remove our firewall rules and qdisc, remove what was uploaded, close
        the connections. Safe to call twice."""
        try:
            touched = sorted(self._deployed | set(self._applied))
            results = _parallel(self._teardown_host, touched)
            self.paused.clear()
            _raise_first(results)
        finally:
            self.close_connections()
            self._torn_down = True

    def close_connections(self) -> None:
        for session in self.sessions.values():
            with session.lock:
                session.drop()
