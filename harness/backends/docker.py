"""Docker backend: one container per node on a bridge network of the run's own, faults from
inside the containers' kernels.

- Network: a user-defined bridge with its own /24; node i has a fixed address and hostname, and
  listens on one port for peers and clients. The host reaches every container's address
  directly (Linux), so the controller talks to the nodes without published ports.
- Containers: the node image (harness/commands/image.py), only NET_ADMIN added, docker-init as
  PID 1 and the node its child; the repository's node/ package is copied in before the first
  start, the data directory is a named volume, so a killed and restarted node keeps its log.
- Partitions: iptables DROP rules in the receiving container, by peer address and port (see
  harness/backends/netcmds.py), in a chain of our own; the whole wanted state is applied, and
  applied again after every restart (a restarted container's network namespace is new and
  empty). A node starts only once its network state is in place: its entrypoint waits for a
  file that the apply script creates on a tmpfs, which every restart empties.
- Pause: SIGSTOP/SIGCONT of the node process (not the cgroup freezer, so `docker exec` keeps
  working on a paused node and a partition can still change around it). Kill: SIGKILL (docker
  kill); restart: start the same container again.
- Delay: tc netem per destination, if the kernel has it (probed before the run).
- Everything carries the run's labels and is removed by label on teardown and by `harness
  clean` (clean_docker).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from harness.backends import netcmds
from harness.backends.base import (
    Backend,
    BackendError,
    Edge,
    controller_alive,
    controller_tag,
    faultfs_tar,
    flag_tar,
    secret_tar,
)
from harness.backends.proxy import ProxyMesh
from harness.systems import Member, System
from harness.systems.base import node_code_tar

LABEL_RUN = "paxos-harness.run"
LABEL_INSTANCE = "paxos-harness.instance"
LABEL_CONTROLLER = "paxos-harness.controller"  # "<hostname>:<pid>" of the controller
LABEL_NODE = "paxos-harness.node"
LABEL_KIND = "paxos-harness.kind"  # node | probe

DEFAULT_IMAGE = "paxos-node:latest"
NODE_PORT = 7000
CODE_DIR = "/opt/paxos"
DATA_DIR = "/data"
READY_DIR = "/run/paxos"
READY_FILE = f"{READY_DIR}/net-ready"
# The node starts only after its network state is applied; if nobody applies it (the controller
# died mid-start), the container gives up instead of waiting forever.
READY_WAIT_S = 60
EXEC_TIMEOUT_S = 10.0
API_TIMEOUT_S = 120
PROBE_TIMEOUT_S = 30.0
STOP_WAIT_S = 15
# Where run subnets are carved from: /24s of a range Docker's default pools use last.
SUBNET_POOL = ipaddress.ip_network("172.30.0.0/15")

T = TypeVar("T")

FAULTFS_DIR = f"{CODE_DIR}/faultfs"
SYNC_JOURNAL = f"{CODE_DIR}/sync-journal"     # in the container's own layer: kept across stops
LOSE_FLAG = "lose-unsynced"                    # in CODE_DIR: drop unsynced writes at next start
SLOW_DISK_FLAG = f"{READY_DIR}/slow-disk"
# Before the node starts again after a power cut, its unsynced writes go (faultfs/unsynced.py).
_ENTRYPOINT = (
    f'if [ -e {CODE_DIR}/{LOSE_FLAG} ]; then echo "harness: power cut: unsynced writes dropped '
    f'($(python3 {FAULTFS_DIR}/unsynced.py {DATA_DIR} {SYNC_JOURNAL}))" >&2 && '
    f'rm -f {CODE_DIR}/{LOSE_FLAG}; fi; '
    'i=0; while [ ! -e "$READY" ]; do i=$((i + 1)); '
    'if [ "$i" -gt $((READY_WAIT * 50)) ]; then '
    'echo "network state never applied; not starting" >&2; exit 70; fi; sleep 0.02; done; '
    'exec "$@"'
)


def _docker() -> Any:
    try:
        import docker
    except ImportError:
        raise BackendError("the Docker backend needs the docker Python package: pip install "
                           "'paxos-harness[docker]'") from None
    return docker


def connect(timeout: float = API_TIMEOUT_S) -> Any:
    """A Docker SDK client, or BackendError saying why there is none."""
    docker = _docker()
    try:
        client = docker.from_env(timeout=int(timeout))
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure here means: no engine to talk to
        raise BackendError(f"no Docker engine reachable ({type(exc).__name__}: {exc}); start "
                           "dockerd or set DOCKER_HOST") from None
    return client


def _parallel(fn: Callable[[str], T], items: Iterable[str]) -> dict[str, T]:
    """Run fn over items in threads (the engine does the work; we only wait on it); the first
    error is raised after all have finished, so nothing is left half-done behind our back."""
    items = list(items)
    if not items:
        return {}
    with ThreadPoolExecutor(max_workers=min(9, len(items))) as pool:
        futures = {item: pool.submit(fn, item) for item in items}
    results: dict[str, T] = {}
    error: BaseException | None = None
    for item, future in futures.items():
        try:
            results[item] = future.result()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            error = error or exc
    if error is not None:
        raise error
    return results


def _host_routes() -> list[ipaddress.IPv4Network]:
    """IPv4 routes of this host other than the default one (a run subnet must not shadow one)."""
    routes = []
    try:
        lines = Path("/proc/net/route").read_text().splitlines()[1:]
    except OSError:
        return routes
    for line in lines:
        fields = line.split()
        if len(fields) < 8:
            continue
        dest = int(fields[1], 16).to_bytes(4, "little")
        mask = int(fields[7], 16).to_bytes(4, "little")
        if mask == b"\0\0\0\0":
            continue
        try:
            routes.append(ipaddress.IPv4Network(
                (ipaddress.IPv4Address(dest), ipaddress.IPv4Address(mask).exploded), strict=False))
        except ValueError:
            continue
    return routes


def _used_subnets(client: Any) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    used: list[Any] = list(_host_routes())
    for net in client.api.networks():
        for cfg in ((net.get("IPAM") or {}).get("Config") or []):
            try:
                used.append(ipaddress.ip_network(cfg.get("Subnet", ""), strict=False))
            except ValueError:
                continue
    return used


def candidate_subnets(seed: str, used: list[Any]) -> list[ipaddress.IPv4Network]:
    """Free /24s of SUBNET_POOL, starting at a place that depends on `seed`, so that runs
    started at the same moment seldom race for the same one."""
    subnets = list(SUBNET_POOL.subnets(new_prefix=24))
    start = int(hashlib.sha256(seed.encode()).hexdigest(), 16) % len(subnets)
    ordered = subnets[start:] + subnets[:start]
    return [s for s in ordered if not any(s.overlaps(u) for u in used if u.version == 4)]


class DockerBackend(Backend):
    name = "docker"

    def __init__(self, node_ids: list[str], run_dir: Path, node_args: list[str], run_id: str,
                 per_node_args: dict[str, list[str]] | None = None, image: str | None = None,
                 port: int = NODE_PORT, subnet: str | None = None,
                 exec_timeout: float = EXEC_TIMEOUT_S, node_code: Path | None = None,
                 system: System | None = None) -> None:
        super().__init__(node_ids, run_dir, node_args, run_id, per_node_args, system)
        self.image = image or os.environ.get("PAXOS_IMAGE") or DEFAULT_IMAGE
        self.port = port
        self.subnet_wanted = subnet
        self.exec_timeout = exec_timeout
        self.node_code = Path(node_code) if node_code else None  # a test's own node package
        # Unique per backend: two runs started in the same second share a run id (a timestamp).
        self.instance = f"{_safe(run_id)}-{os.urandom(3).hex()}"
        self.network_name = f"paxos-{self.instance}"
        self.addresses: dict[str, str] = {}
        self.containers: dict[str, str] = {}
        self.cut: set[Edge] = set()
        self.delays: dict[Edge, float] = {}
        self.paused: set[str] = set()
        self._applied: dict[str, netcmds.NodeNetwork | None] = {}
        self._locks = {node: threading.Lock() for node in self.node_ids}
        self._client: Any = None
        self._exec_client: Any = None
        self._caps: netcmds.Capabilities | None = None
        self.subnet: ipaddress.IPv4Network | None = None
        self.mesh: ProxyMesh | None = None   # routed proxies (routed())
        self.advertised: dict[str, tuple[str, int]] = {}

    # -- engine ----------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = connect()
        return self._client

    @property
    def exec_api(self) -> Any:
        """A second client whose HTTP timeout bounds each exec, on top of `timeout` inside."""
        if self._exec_client is None:
            self._exec_client = connect(self.exec_timeout + 5)
        return self._exec_client.api

    def labels(self, kind: str, node: str | None = None) -> dict[str, str]:
        labels = {LABEL_RUN: self.run_id, LABEL_INSTANCE: self.instance,
                  LABEL_CONTROLLER: controller_tag(), LABEL_KIND: kind}
        if node:
            labels[LABEL_NODE] = node
        return labels

    def _check_image(self) -> None:
        docker = _docker()
        try:
            self.client.api.inspect_image(self.image)
        except docker.errors.ImageNotFound:
            raise BackendError(f"docker image {self.image} is not there: build it with "
                               "`harness image build` (it builds offline if need be)") from None
        except docker.errors.APIError as exc:
            raise BackendError(f"cannot inspect image {self.image}: {exc.explanation}") from None

    # -- capabilities ----------------------------------------------------------------------

    def routed(self) -> bool:
        """A system whose members all dial a peer at one advertised address (etcd) gets the
        harness's routed proxies on the bridge instead of iptables: one-way cuts and delays
        need them (iptables by address would cut its links both ways)."""
        return self.system.sender_header is not None

    def capabilities(self) -> set[str]:
        if self._caps is None:
            self._caps = self._probe_machine()
        caps = set(self._caps.faults)
        if self.system.fsync_shim:
            caps |= {"disk", "lose-unsynced"}   # the faultfs shim goes in with the code
        if self.routed():
            caps |= {"partition", "delay", "one-way"}
        elif "partition" in caps:
            caps.add("one-way")
        return caps

    def probe(self, faults: set[str]) -> None:
        missing = set(faults) - self.capabilities()
        if missing:
            assert self._caps is not None
            why = "; ".join(f"{f}: {self._caps.reasons.get(f, 'not supported')}"
                            for f in sorted(missing))
            raise BackendError(f"backend docker cannot do {', '.join(sorted(missing))} on this "
                               f"machine ({why})")

    def _probe_machine(self) -> netcmds.Capabilities:
        """Run the probe script in a throwaway container made like the nodes' (NET_ADMIN only),
        without a network: iptables and tc work on its loopback."""
        self._check_image()
        api = self.client.api
        script = netcmds.probe_script("lo")
        cid = None
        try:
            cid = api.create_container(
                self.image, command=netcmds.with_deadline(netcmds.sh(script), PROBE_TIMEOUT_S),
                labels=self.labels("probe"), name=f"paxos-{self.instance}-probe",
                host_config=api.create_host_config(cap_add=["NET_ADMIN"], network_mode="none"),
            )["Id"]
            api.start(cid)
            status = api.wait(cid, timeout=PROBE_TIMEOUT_S + 10).get("StatusCode")
            output = api.logs(cid, stdout=True, stderr=True).decode(errors="replace")
        except Exception as exc:  # noqa: BLE001 - the probe failing is itself the answer
            raise BackendError(f"the docker probe container failed: {type(exc).__name__}: "
                               f"{exc}") from None
        finally:
            if cid is not None:
                self._remove_container(cid)
        if status != 0:
            raise BackendError(f"the docker probe container exited {status}: {output.strip()}")
        return netcmds.faults_from_probe(netcmds.parse_probe(output))

    # -- set-up ----------------------------------------------------------------------------

    def setup(self) -> None:
        self._check_image()
        self.exec_api  # noqa: B018 - connect now, not from several start threads at once
        if self._caps is None:
            self.capabilities()
        code = node_code_tar(self.node_code) if self.node_code is not None \
            else self.system.code_tar()
        self._create_network()
        if self.routed():
            self._start_routed_proxies()
        _parallel(lambda node: self._create_node(node, code), self.node_ids)
        _parallel(self._start, self.node_ids)

    def _create_network(self) -> None:
        docker = _docker()
        if self.subnet_wanted:
            candidates = [ipaddress.ip_network(self.subnet_wanted)]
        else:
            candidates = candidate_subnets(self.instance, _used_subnets(self.client))
        last_error = "no free /24 left in " + str(SUBNET_POOL)
        for subnet in candidates[:32]:
            hosts = list(subnet.hosts())
            if len(hosts) < len(self.node_ids) + 11:
                raise BackendError(f"subnet {subnet} is too small for {len(self.node_ids)} nodes")
            ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(
                subnet=str(subnet), gateway=str(hosts[0]))])
            try:
                self.client.api.create_network(
                    self.network_name, driver="bridge", ipam=ipam, check_duplicate=True,
                    labels=self.labels("network"), internal=False)
            except docker.errors.APIError as exc:
                last_error = str(exc.explanation or exc)
                if "overlap" in last_error.lower() and not self.subnet_wanted:
                    continue  # another run took it between our look and our claim
                raise BackendError(f"cannot create network {self.network_name} on {subnet}: "
                                   f"{last_error}") from None
            self.addresses = {node: str(hosts[10 + i]) for i, node in enumerate(self.node_ids)}
            self.subnet = subnet
            return
        raise BackendError(f"cannot create a network for the run: {last_error}")

    def _start_routed_proxies(self) -> None:
        """One routed listener per member on the bridge's gateway address (the host): members
        advertise it as their peer URL, and it forwards to the member's own peer port."""
        assert self.subnet is not None
        gateway = str(next(iter(self.subnet.hosts())))
        self.mesh = ProxyMesh(host=gateway)
        assert self.system.sender_header is not None
        self.advertised = self.mesh.route_cluster(
            {n: (self.addresses[n], self.port + 1) for n in self.node_ids},
            self.system.sender_header,
            lambda advertised: self.system.route_names(advertised, self.run_id))

    def container_name(self, node: str) -> str:
        return f"paxos-{self.instance}-{node}"

    def volume_name(self, node: str) -> str:
        return f"paxos-{self.instance}-{node}-data"

    def command(self, node: str) -> list[str]:
        """The node's own command line (the entrypoint runs it once the network is ready)."""
        # The container's own cluster address, not every interface (issue 14).
        extra = {name: (self.addresses[node], self.port + 1 + i)
                 for i, name in enumerate(self.system.extra_ports)}
        member = Member(node=node, listen=(self.addresses[node], self.port),
                        peers={p: (self.addresses[p], self.port) for p in self.node_ids
                               if p != node},
                        data_dir=DATA_DIR, secret_file=f"{CODE_DIR}/cluster.secret",
                        python="python3", ports=extra,
                        advertised=self.advertised or ({n: (self.addresses[n], self.port + 1)
                                                        for n in self.node_ids}
                                                       if "peer" in extra else {}),
                        cluster_token=self.run_id, code_dir=CODE_DIR)
        return self.system.command(member, self.args_for(node))

    def _create_node(self, node: str, code: bytes | None) -> None:
        docker = _docker()
        api = self.client.api
        api.create_volume(self.volume_name(node), labels=self.labels("volume", node))
        host_config = api.create_host_config(
            cap_add=["NET_ADMIN"], init=True, network_mode=self.network_name,
            mounts=[docker.types.Mount(DATA_DIR, self.volume_name(node), type="volume")],
            tmpfs={READY_DIR: "size=64k"},
            log_config=docker.types.LogConfig(type="json-file",
                                              config={"max-size": "200m", "max-file": "2"}),
        )
        networking = api.create_networking_config({self.network_name: api.create_endpoint_config(
            ipv4_address=self.addresses[node], aliases=[node])})
        cid = api.create_container(
            self.image, command=["sh", "-c", _ENTRYPOINT, "node-entrypoint", *self.command(node)],
            hostname=node, name=self.container_name(node), labels=self.labels("node", node),
            environment={"READY": READY_FILE, "READY_WAIT": str(READY_WAIT_S),
                         "PYTHONPATH": f"{FAULTFS_DIR}:{CODE_DIR}" if self.system.fsync_shim
                         else CODE_DIR, "PYTHONUNBUFFERED": "1",
                         "PAXOS_HARNESS_RUN": self.run_id,
                         **({"PAXOS_HARNESS_SLOW_DISK": SLOW_DISK_FLAG,
                             "PAXOS_HARNESS_SYNC_JOURNAL": SYNC_JOURNAL}
                            if self.system.fsync_shim else {})},
            working_dir=CODE_DIR, host_config=host_config, networking_config=networking,
            stop_signal="SIGTERM", detach=True,
        )["Id"]
        self.containers[node] = cid
        self._applied[node] = None
        shim = faultfs_tar() if self.system.fsync_shim else None
        if code is not None and not api.put_archive(cid, CODE_DIR, code) or \
                shim is not None and not api.put_archive(cid, CODE_DIR, shim) or \
                not api.put_archive(cid, CODE_DIR, secret_tar(self.secret)):
            raise BackendError(f"could not copy the node's code into {self.container_name(node)}")

    def _start(self, node: str) -> None:
        """Start the container and put its network state in place, which lets the node run."""
        with self._locks[node]:
            self._applied[node] = None
            try:
                self.client.api.start(self.containers[node])
            except _docker().errors.APIError as exc:
                raise BackendError(f"cannot start {node}: {exc.explanation or exc}") from None
            self._apply(node, self._wanted(node))

    # -- network state ---------------------------------------------------------------------

    def _wanted(self, node: str) -> netcmds.NodeNetwork:
        if self.routed():
            return netcmds.NodeNetwork(port=self.port)  # the proxies cut and delay
        return netcmds.node_network(node, self.addresses, self.cut, self.delays, port=self.port)

    def _apply(self, node: str, state: netcmds.NodeNetwork) -> None:
        manage_qdisc = self._caps is not None and "delay" in self._caps.faults
        script = netcmds.apply_script(state, dev="eth0", manage_qdisc=manage_qdisc)
        script += f"mkdir -p {READY_DIR} && touch {READY_FILE}\n"
        code, output = self.exec(node, netcmds.sh(script))
        if code != 0:
            raise BackendError(f"applying the network state on {node} failed (exit {code}): "
                               f"{output.strip()[-500:]}")
        self._applied[node] = state

    def set_network(self, cut: set[Edge], delays: dict[Edge, float]) -> None:
        if self.mesh is not None:
            self.cut, self.delays = set(cut), dict(delays)
            self.mesh.set_cut(cut)
            self.mesh.set_delay(delays)
            return
        if delays and (self._caps is None or "delay" not in self._caps.faults):
            raise BackendError("backend docker cannot delay packets on this machine "
                               "(tc netem was not found working at set-up)")
        self.cut = set(cut)
        self.delays = dict(delays)

        def one(node: str) -> None:
            with self._locks[node]:
                want = self._wanted(node)
                if self._applied.get(node) == want:
                    return
                if not self.is_running(node):
                    # A stopped container has no network namespace: restart applies the state.
                    self._applied[node] = None
                    return
                self._apply(node, want)

        _parallel(one, self.node_ids)

    def exec(self, node: str, argv: list[str], timeout: float | None = None) -> tuple[int, str]:
        """Run argv in the node's container, under a deadline both inside (coreutils timeout)
        and outside (the HTTP read timeout of the exec client)."""
        docker = _docker()
        import requests

        timeout = timeout or self.exec_timeout
        cmd = netcmds.with_deadline(argv, timeout)
        try:
            exec_id = self.exec_api.exec_create(self.containers[node], cmd)["Id"]
            output = self.exec_api.exec_start(exec_id)
            code = self.exec_api.exec_inspect(exec_id).get("ExitCode")
        except requests.exceptions.RequestException as exc:
            raise BackendError(f"{node}: `{netcmds.quote(argv)[:120]}` did not answer within "
                               f"{timeout:g} s ({type(exc).__name__})") from None
        except docker.errors.APIError as exc:
            raise BackendError(f"{node}: exec failed: {exc.explanation or exc}") from None
        text = output.decode(errors="replace") if isinstance(output, bytes) else str(output)
        if code == 124:
            raise BackendError(f"{node}: `{netcmds.quote(argv)[:120]}` timed out after "
                               f"{timeout:g} s")
        return int(code if code is not None else -1), text

    # -- the fault interface ---------------------------------------------------------------

    def client_address(self, node: str) -> tuple[str, int]:
        return self.addresses[node], self.port

    def _state(self, node: str) -> dict[str, Any] | None:
        cid = self.containers.get(node)
        if cid is None:
            return None
        try:
            return self.client.api.inspect_container(cid).get("State") or {}
        except _docker().errors.NotFound:
            return None

    def is_running(self, node: str) -> bool:
        state = self._state(node)
        return bool(state and state.get("Running"))

    def exit_status(self, node: str) -> int | None:
        state = self._state(node)
        if not state or state.get("Running"):
            return None
        return state.get("ExitCode")

    def kill(self, node: str) -> None:
        docker = _docker()
        cid = self.containers[node]
        with self._locks[node]:
            try:
                self.client.api.kill(cid, "SIGKILL")
            except docker.errors.APIError as exc:
                if exc.status_code != 409:  # 409: not running, which is what we want
                    raise BackendError(f"cannot kill {node}: {exc.explanation or exc}") from None
            try:
                self.client.api.wait(cid, timeout=STOP_WAIT_S)
            except Exception as exc:  # noqa: BLE001 - the HTTP read timed out, or the engine
                raise BackendError(f"{node} did not stop within {STOP_WAIT_S} s of SIGKILL "
                                   f"({type(exc).__name__})") from None
            self._applied[node] = None
        self.paused.discard(node)

    def restart(self, node: str) -> None:
        if self.is_running(node):
            return
        self._start(node)

    def lose_unsynced(self, node: str) -> dict[str, int]:
        """SIGKILL, then a flag that makes the entrypoint drop the unsynced writes before the
        node starts again (the data volume is only reachable from the container); what was
        lost is written to the node's log then."""
        self.kill(node)
        if not self.client.api.put_archive(self.containers[node], CODE_DIR,
                                           flag_tar(LOSE_FLAG)):
            raise BackendError(f"cannot mark {node} for a power cut")
        return {}

    def set_disk_delay(self, node: str, seconds: float) -> None:
        if not self.is_running(node):
            return  # the flag lives in a tmpfs, gone with the stopped container anyway
        script = (f"printf %s {seconds:.6f} > {SLOW_DISK_FLAG}.tmp && "
                  f"mv {SLOW_DISK_FLAG}.tmp {SLOW_DISK_FLAG}" if seconds > 0
                  else f"rm -f {SLOW_DISK_FLAG}")
        code, output = self.exec(node, ["sh", "-c", script])
        if code != 0:
            raise BackendError(f"cannot set {node}'s disk delay: {output.strip()[:200]}")

    def _signal(self, node: str, signal_name: str) -> bool:
        """Signal the node process; False if there is none (container stopped, node gone)."""
        deadline = time.monotonic() + 2.0
        while True:
            if not self.is_running(node):
                return False
            code, output = self.exec(node, netcmds.signal_node(
                signal_name, self.system.process_pattern, group=self.system.signal_group))
            if code == 0:
                return True
            if code != 1:
                raise BackendError(f"cannot send SIG{signal_name} to {node}: {output.strip()}")
            # 1: no process matched yet: the entrypoint may not have exec'd the node yet.
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)

    def pause(self, node: str) -> None:
        if self._signal(node, "STOP"):
            self.paused.add(node)

    def resume(self, node: str) -> None:
        self._signal(node, "CONT")
        self.paused.discard(node)

    def log_tail(self, node: str, lines: int = 20) -> str:
        cid = self.containers.get(node)
        if cid is None:
            return ""
        try:
            return self.client.api.logs(cid, tail=lines).decode(errors="replace")
        except Exception:  # noqa: BLE001 - a tail is for messages; never fail on it
            return ""

    def collect(self) -> None:
        """Each container's output (the node's stderr) into nodes/<id>/node.log, and its final
        state into nodes/<id>/container.json."""
        docker = _docker()
        for node in self.node_ids:
            cid = self.containers.get(node)
            if cid is None:
                continue
            node_dir = self.run_dir / "nodes" / node
            node_dir.mkdir(parents=True, exist_ok=True)
            try:
                logs = self.client.api.logs(cid, stdout=True, stderr=True)
                info = self.client.api.inspect_container(cid)
            except docker.errors.NotFound:
                continue
            (node_dir / "node.log").write_bytes(logs)
            (node_dir / "container.json").write_text(json.dumps(
                {"name": info.get("Name", "").lstrip("/"), "image": self.image,
                 "address": self.addresses.get(node), "state": info.get("State")}, indent=1))

    # -- tear-down -------------------------------------------------------------------------

    def _remove_container(self, cid: str) -> None:
        try:
            self.client.api.remove_container(cid, force=True, v=True)
        except _docker().errors.NotFound:
            pass

    def teardown(self) -> None:
        if self._client is None and not self.containers:
            return
        # A Ctrl-C can land while a set-up thread still creates things: what it adds after our
        # first pass (or a network still busy with a container going away) goes in the next.
        for attempt in range(3):
            try:
                remove_by_label(self.client, f"{LABEL_INSTANCE}={self.instance}")
                if not any(leftovers(self.client, label=f"{LABEL_INSTANCE}={self.instance}")
                           .values()):
                    break
            except BackendError:
                if attempt == 2:
                    raise
            time.sleep(0.5)
        self.paused.clear()
        self._applied = {node: None for node in self.node_ids}
        if self.mesh is not None:
            self.mesh.close()
            self.mesh = None


def _safe(text: str) -> str:
    """A run id as part of a Docker object name ([a-zA-Z0-9][a-zA-Z0-9_.-]*)."""
    cleaned = "".join(c if c.isalnum() or c in "_.-" else "-" for c in text).strip("-.")
    return (cleaned or "run")[:40]


def remove_by_label(client: Any, label: str,
                    keep: Callable[[dict[str, str]], bool] | None = None) -> dict[str, list[str]]:
    """Remove the containers, then networks, then volumes carrying `label` ("key" or
    "key=value"), except those whose labels `keep` accepts. Returns the names removed."""
    docker = _docker()
    api = client.api
    removed: dict[str, list[str]] = {"containers": [], "networks": [], "volumes": []}
    errors: list[str] = []

    def wanted(labels: dict[str, str] | None) -> bool:
        return not (keep and keep(labels or {}))

    containers = [c for c in api.containers(all=True, filters={"label": label})
                  if wanted(c.get("Labels"))]

    def remove_container(cid: str) -> None:
        try:
            # v: the anonymous volumes an image's VOLUME gave the container (named ones stay,
            # and go below by label).
            api.remove_container(cid, force=True, v=True)
        except docker.errors.NotFound:
            pass

    by_id = {c["Id"]: (c.get("Names") or [c["Id"][:12]])[0].lstrip("/") for c in containers}
    try:
        _parallel(remove_container, by_id)
        removed["containers"] = sorted(by_id.values())
    except docker.errors.APIError as exc:
        errors.append(f"containers: {exc.explanation or exc}")
    for net in api.networks(filters={"label": label}):
        if not wanted(net.get("Labels")):
            continue
        try:
            api.remove_network(net["Id"])
            removed["networks"].append(net["Name"])
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            errors.append(f"network {net['Name']}: {exc.explanation or exc}")
    for vol in (api.volumes(filters={"label": label}) or {}).get("Volumes") or []:
        if not wanted(vol.get("Labels")):
            continue
        try:
            api.remove_volume(vol["Name"], force=True)
            removed["volumes"].append(vol["Name"])
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            errors.append(f"volume {vol['Name']}: {exc.explanation or exc}")
    if errors:
        raise BackendError("docker clean-up incomplete: " + "; ".join(errors))
    return removed


def leftovers(client: Any, run_id: str | None = None,
              label: str | None = None) -> dict[str, list[str]]:
    """What carries our run label (of one run, or of any; or `label`): names by kind."""
    label = label or (f"{LABEL_RUN}={run_id}" if run_id else LABEL_RUN)
    api = client.api
    return {
        "containers": [c["Names"][0].lstrip("/")
                       for c in api.containers(all=True, filters={"label": label})],
        "networks": [n["Name"] for n in api.networks(filters={"label": label})],
        "volumes": [v["Name"] for v in
                    (api.volumes(filters={"label": label}) or {}).get("Volumes") or []],
    }


def _controller_alive(labels: dict[str, str]) -> bool:
    return controller_alive(labels.get(LABEL_CONTROLLER, ""))


def clean_docker(run_id: str | None = None) -> str:
    """`harness clean`: remove what runs left behind (one run's, or every run's whose controller
    is gone); returns a description of what was removed."""
    try:
        client = connect(timeout=60)
    except BackendError as exc:
        return f"nothing (no Docker engine: {exc})"
    if run_id:
        removed = remove_by_label(client, f"{LABEL_RUN}={run_id}")
    else:
        removed = remove_by_label(client, LABEL_RUN, keep=_controller_alive)
    parts = [f"{len(names)} {kind}" + (f" ({', '.join(names)})" if names else "")
             for kind, names in removed.items()]
    return ", ".join(parts)
