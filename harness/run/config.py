"""A run's configuration: the command-line options, validated, and stored in config.json."""

from __future__ import annotations

import argparse
import json
import math
import random
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from checkers import liveness
from harness.backends import BACKENDS
from harness.systems import SYSTEMS, System, make_system
from nemesis.catalogue import (
    NemesisError,
    parse_kinds,
    parse_spec,
    system_needs,
    without_leader_shapes,
)
from nemesis.schedule import TIMINGS
from workloads import WORKLOADS


class ConfigError(ValueError):
    """Bad configuration: a one-line message, exit status 3."""


# The range of every numeric option: outside it a run is refused before anything starts.
RANGES: dict[str, tuple[float, float]] = {
    "nodes": (1, 9),
    "time_limit": (5, 7 * 86400),
    "concurrency": (1, 1000),
    "rate": (0, 1_000_000),
    "seed": (0, 2**63 - 1),  # config.json readers that parse into int64 can hold it
    "nemesis_interval": (0.05, 86400),
    "op_timeout": (0.01, 3600),
    "election_timeout_ms": (10, 600_000),
    "heartbeat_ms": (1, 600_000),
    "delay_ms": (0, 600_000),
    "snapshot_every": (1, 10**9),
    "disk_delay_ms": (0, 600_000),
    "loss": (0, 1),
    "base_port": (0, 65535),
}
# A longer schedule is surely a mistake (a tiny interval), and planning it would take minutes.
MAX_FAULTS_PER_KIND = 20_000
NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.+-=@")


def option(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_name(name: str, what: str) -> None:
    """A test or campaign name is one directory of the store: never a path out of it."""
    if not isinstance(name, str) or not name or len(name) > 120 or name.startswith(".") \
            or not set(name) <= NAME_CHARS:
        raise ConfigError(f"{what} {name!r} must be 1 to 120 letters, digits and _.+-=@, not "
                          "starting with a dot (it names a directory of the store)")


def check_types(config: RunConfig) -> None:
    """Every field of the type it is declared with (config.json and campaign files are
    JSON and TOML, so anything may come in)."""
    for f in fields(config):
        value = getattr(config, f.name)
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        optional = "None" in kind
        if value is None and optional:
            continue
        base = kind.replace(" | None", "")
        ok = {
            "int": isinstance(value, int) and not isinstance(value, bool),
            "float": isinstance(value, int | float) and not isinstance(value, bool),
            "str": isinstance(value, str),
            "bool": isinstance(value, bool),
            "list[str]": isinstance(value, list) and all(isinstance(v, str) for v in value),
        }.get(base, True)
        if not ok:
            raise ConfigError(f"{option(f.name)} must be {TYPE_WORDS.get(base, base)}, not "
                              f"{value!r}"[:200])
        if base == "float":
            setattr(config, f.name, float(value))


TYPE_WORDS = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false",
              "list[str]": "a list of strings"}


def system_of(config: RunConfig) -> System:
    """The run's system under test, as its configuration describes it."""
    return make_system(config.system, serializable_reads=config.serializable_reads,
                       program=config.bin, program_args=config.bin_args)


def check_capabilities(config: RunConfig) -> None:
    """Refuse what needs a capability the system lacks (harness.systems.CAPABILITIES)."""
    if config.system == "maelstrom" and not config.bin:
        raise ConfigError("--system maelstrom needs --bin PROGRAM: the Maelstrom node to run")
    if config.system != "maelstrom" and (config.bin or config.bin_args):
        raise ConfigError(f"--bin and --bin-arg are for --system maelstrom, not "
                          f"{config.system}")
    try:
        system = system_of(config)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if system.workloads is not None and config.workload not in system.workloads:
        raise ConfigError(f"system {system.name} cannot run workload {config.workload!r}; it "
                          f"runs {', '.join(system.workloads)}")
    if config.backend == "ssh" and system.code_tar() is None:
        # SSH deploys a member's package next to it; a system installed on the hosts (etcd)
        # would need its own checks there, which are not built yet.
        raise ConfigError(f"system {system.name} runs on the local and docker backends only "
                          "(backend ssh deploys the bundled node's package)")
    if config.serializable_reads and config.system != "etcd":
        raise ConfigError("--serializable-reads is an etcd option (the bundled node has no "
                          "local reads but its --bug read-local)")
    needs = system_needs(parse_spec(config.nemesis))
    if config.bugs:
        needs.setdefault("bugs", "--bug")
    for capability, what in needs.items():
        if capability not in system.capabilities:
            raise ConfigError(f"{what} needs a system that can {CAPABILITY_WORDS[capability]}; "
                              f"system {system.name} cannot")


CAPABILITY_WORDS = {"leader": "name its leader", "durable": "keep acknowledged writes when "
                    "every member restarts", "bugs": "inject the bug catalogue",
                    "log": "serve its chosen log", "counters": "report counters"}


BASE_NEMESIS = "partition,pause,kill"
# Crashes that drop unsynced writes, where the backend can (the faultfs shim reaches a Python
# member's fsyncs; locally and in Docker) and the system promises durability.
CRASH_NEMESIS = "disk:lose-unsynced/power-cut"


def default_nemesis(system: str, backend: str, program: str | None = None) -> str:
    """What `--nemesis default` means for this system on this backend."""
    try:
        sut = make_system(system, program=program)
    except (KeyError, ValueError):
        return BASE_NEMESIS
    if backend in ("local", "docker", "sim") and sut.fsync_shim and "durable" in sut.capabilities:
        return f"{BASE_NEMESIS},{CRASH_NEMESIS}"
    return BASE_NEMESIS


def check_node_args(extra: list[str]) -> None:
    """Extra node arguments parsed as the node parses them, so a bad one is refused here rather
    than by every node after the cluster started."""
    from node import cli as node_cli

    def refuse(message: str) -> None:
        raise ConfigError(f"--node-arg {' '.join(extra)}: the node refuses it: {message}")

    parser = node_cli.build_parser()
    parser.error = refuse  # type: ignore[method-assign]
    base = ["--id", "n1", "--listen", "127.0.0.1:1", "--data-dir", "x"]
    try:
        node_cli._validate(parser.parse_args([*base, *extra]))
    except ValueError as exc:
        if isinstance(exc, ConfigError):
            raise
        refuse(str(exc))
    except SystemExit:
        refuse("it asks for the node's help")


@dataclass
class RunConfig:
    system: str = "paxos"
    backend: str = "local"
    nodes: int = 3
    workload: str = "register"
    nemesis: str = "default"
    time_limit: float = 30.0
    concurrency: int = 5
    rate: float = 100.0
    seed: int | None = None
    store: str = "store"
    bugs: list[str] = field(default_factory=list)
    bug_nodes: list[str] = field(default_factory=list)
    name: str | None = None
    nemesis_interval: float = 2.0
    nemesis_timing: str = "scales"
    op_timeout: float = 2.0
    election_timeout_ms: int = 300
    heartbeat_ms: int = 50
    delay_ms: float = 50.0
    snapshot_every: int = 100
    disk_delay_ms: float = 200.0
    loss: float = 0.2
    base_port: int = 0
    node_args: list[str] = field(default_factory=list)
    hosts: str | None = None
    image: str | None = None
    ssh_known_hosts: str | None = None
    ssh_key: str | None = None
    ssh_accept_new_host_keys: bool = False
    serializable_reads: bool = False
    bin: str | None = None
    bin_args: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.nemesis == "default" and isinstance(self.system, str) and \
                isinstance(self.backend, str):
            self.nemesis = default_nemesis(self.system, self.backend, self.bin)
        if self.system == "maelstrom" and isinstance(self.nemesis, str):
            # A Maelstrom node names no leader: a kind named alone takes its other shapes.
            self.nemesis = without_leader_shapes(self.nemesis)

    def nemesis_kinds(self) -> list[str]:
        return parse_kinds(self.nemesis)

    def node_ids(self) -> list[str]:
        return [f"n{i}" for i in range(1, self.nodes + 1)]

    def test_name(self) -> str:
        if self.name:
            return self.name
        kinds = "+".join(self.nemesis_kinds()) or "none"
        bugs = "-" + "+".join(self.bugs) if self.bugs else ""
        system = "" if self.system == "paxos" else f"{self.system}-"
        # runs of one test on two backends are two tests: their timings do not compare
        backend = "" if self.backend == "local" else f"-{self.backend}"
        return f"{system}{self.workload}-{kinds}-n{self.nodes}{bugs}{backend}"

    def phase_durations(self) -> dict[str, float]:
        """Warm-up, faults and recovery share the time limit 1 : 3 : 1 (recovery at least 3 s
        so the cluster can elect a leader and catch up after the final heal, and longer than
        the liveness bound so that the healed cluster's liveness is always judged)."""
        total = self.time_limit
        recovery = max(3.0, total * 0.2, liveness.bound(self.op_timeout,
                                                        self.election_timeout_ms) + 0.5)
        warmup = max(1.0, total * 0.2)
        faults = max(0.0, total - warmup - recovery) if self.nemesis_kinds() else 0.0
        return {"warmup": warmup, "faults": faults, "recovery": recovery}

    def validate(self) -> None:
        """Refuse a configuration that cannot run as asked: a ConfigError with one line."""
        check_types(self)
        for name, (low, high) in RANGES.items():
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{option(name)} must be a finite number, not {value}")
            if not low <= value <= high:
                raise ConfigError(f"{option(name)} must be between {low} and {high}, "
                                  f"not {value:g}")
        if self.system not in SYSTEMS:
            raise ConfigError(f"unknown system {self.system!r}; choose one of "
                              f"{', '.join(SYSTEMS)}")
        if self.backend not in BACKENDS:
            raise ConfigError(f"unknown backend {self.backend!r}; choose one of "
                              f"{', '.join(BACKENDS)}")
        if self.workload not in WORKLOADS:
            raise ConfigError(f"unknown workload {self.workload!r}; choose one of "
                              f"{', '.join(WORKLOADS)}")
        if not [part for part in self.nemesis.split(",") if part.strip()]:
            raise ConfigError(f"--nemesis {self.nemesis!r} names no fault; say `none` for a run "
                              "without faults")
        try:
            self.nemesis_kinds()
        except NemesisError as exc:
            raise ConfigError(str(exc)) from None
        check_capabilities(self)
        if self.nemesis_timing not in TIMINGS:
            raise ConfigError(f"--nemesis-timing {self.nemesis_timing!r}: choose "
                              f"{' or '.join(TIMINGS)}")
        if self.heartbeat_ms >= self.election_timeout_ms:
            raise ConfigError(f"--heartbeat-ms ({self.heartbeat_ms}) must be below "
                              f"--election-timeout-ms ({self.election_timeout_ms})")
        faults = self.phase_durations()["faults"]
        if faults / self.nemesis_interval > MAX_FAULTS_PER_KIND:
            raise ConfigError(f"--nemesis-interval {self.nemesis_interval:g} over "
                              f"{faults:g} s of faults plans more than {MAX_FAULTS_PER_KIND} "
                              "faults per kind; give a longer interval or a shorter run")
        if self.base_port and self.base_port + self.nodes > 65535:
            raise ConfigError(f"--base-port {self.base_port} leaves no port for node "
                              f"n{self.nodes} (BASE+i must be at most 65535)")
        if self.name is not None:
            check_name(self.name, "--name")
        for node in self.bug_nodes:
            if node not in self.node_ids():
                raise ConfigError(f"--bug-node {node!r} is not one of {', '.join(self.node_ids())}")
        if self.bugs:
            from harness.run.bugs import known_bugs

            known = known_bugs()
            for bug in self.bugs:
                if bug not in known:
                    raise ConfigError(f"unknown bug {bug!r}; the node knows: {', '.join(known)}")
        if self.node_args:
            check_node_args(self.node_args)
        if self.backend == "ssh" and not self.hosts:
            raise ConfigError("--backend ssh needs --hosts FILE or a comma list of hosts")

    def with_seed(self) -> RunConfig:
        if self.seed is None:
            self.seed = random.SystemRandom().randrange(1, 2**31)
        return self

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> RunConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"a configuration is a JSON object, not {type(data).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ConfigError(f"unknown configuration keys: {', '.join(sorted(unknown))}")
        # Runs stored before fault lengths were drawn on several scales planned them so.
        return cls(**{"nemesis_timing": "fixed", **data})

    @classmethod
    def load(cls, path: Path) -> RunConfig:
        return cls.from_json(json.loads(Path(path).read_text()))


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    d = RunConfig()
    a = parser.add_argument
    a("--system", default=d.system, help=f"the system under test: {', '.join(SYSTEMS)} "
      "(default %(default)s: the bundled Multi-Paxos node)")
    a("--backend", default=d.backend, help=f"where nodes run: {', '.join(BACKENDS)} "
      "(default %(default)s)")
    a("--nodes", type=int, default=d.nodes, help="cluster size (default %(default)s)")
    a("--workload", default=d.workload, help=f"{', '.join(WORKLOADS)} (default %(default)s)")
    a("--nemesis", default="default",
      help="comma list of fault kinds: partition, pause, kill, delay (alias packet), disk, "
      "or none; "
      "a kind may name its shapes, e.g. partition:isolate-leader/halves, kill:leader, "
      f"pause:one/minority (default: {BASE_NEMESIS}, and {CRASH_NEMESIS} for a durable "
      "Python system on the local or docker backend)")
    a("--time-limit", type=float, default=d.time_limit,
      help="seconds of warm-up + faults + recovery, split 1:3:1 (default %(default)s)")
    a("--concurrency", type=int, default=d.concurrency,
      help="number of client workers (default %(default)s)")
    a("--rate", type=float, default=d.rate,
      help="total operations per second over all workers, 0 for no limit (default %(default)s)")
    a("--seed", type=int, default=None, help="seed for the operations and the fault schedule "
      "(default: drawn, and recorded in config.json)")
    a("--store", default=d.store, help="store directory (default %(default)s)")
    a("--bug", dest="bugs", action="append", default=[], metavar="NAME",
      help="enable an injectable node bug (repeatable; see `python -m node --help`)")
    a("--bug-node", dest="bug_nodes", action="append", default=[], metavar="ID",
      help="only these nodes get the --bug flags (repeatable; default all nodes)")
    a("--name", default=None, help="test name in the store (default from workload, nemesis, "
      "nodes, bugs)")
    a("--nemesis-interval", type=float, default=d.nemesis_interval,
      help="mean seconds of each fault and of each quiet gap (default %(default)s)")
    a("--nemesis-timing", default=d.nemesis_timing, choices=TIMINGS,
      help="scales: fault lengths from a fraction of an election timeout to several intervals, "
      "and every third client waits five op timeouts, so operations stay in flight across "
      "faults; fixed: every fault and gap about one interval, every client the same timeout "
      "(default %(default)s)")
    a("--op-timeout", type=float, default=d.op_timeout,
      help="seconds a client waits for one operation, retries included (default %(default)s)")
    a("--election-timeout-ms", type=int, default=d.election_timeout_ms,
      help="the nodes' election timeout T (randomized in [T, 2T)) (default %(default)s)")
    a("--heartbeat-ms", type=int, default=d.heartbeat_ms,
      help="the nodes' heartbeat interval (default %(default)s)")
    a("--delay-ms", type=float, default=d.delay_ms,
      help="mean link delay of the delay nemesis (default %(default)s)")
    a("--loss", type=float, default=d.loss,
      help="the probability a message is lost on a link under delay:lossy-links or "
      "delay:lossy-node (local backend, systems whose peer links carry one message a line: "
      "the bundled node, Maelstrom nodes) (default %(default)s)")
    a("--disk-delay-ms", type=float, default=d.disk_delay_ms,
      help="extra time every fsync takes on a node under the disk nemesis (default %(default)s)")
    a("--snapshot-every", type=int, default=d.snapshot_every,
      help="the nodes compact their log every N applied slots, so runs take and install "
      "snapshots; the harness records the chosen logs during the run, so the agreement and "
      "exactly-once checkers still see every slot (default %(default)s)")
    a("--base-port", type=int, default=d.base_port,
      help="local backend: node i listens on BASE+i (default: free ports)")
    a("--node-arg", dest="node_args", action="append", default=[], metavar="ARG",
      help="extra argument passed to every node (repeatable)")
    a("--hosts", default=None, help="ssh backend: hosts file (one a line) or comma list, each "
      "[NAME=][USER@]ADDRESS[:PORT] [key=PATH]; user root and port 22 by default")
    a("--ssh-known-hosts", default=None, metavar="FILE",
      help="ssh backend: the known_hosts file host keys are checked against "
      "(default ~/.ssh/known_hosts); an unknown or changed key is refused")
    a("--ssh-key", default=None, metavar="FILE",
      help="ssh backend: private key for every host without its own key= (default: the keys "
      "in ~/.ssh and ssh-agent)")
    a("--ssh-accept-new-host-keys", action="store_true",
      help="ssh backend, UNSAFE: accept the host key of a host that known_hosts does not know, "
      "without checking it, and append it there (a changed key is still refused)")
    a("--serializable-reads", action="store_true",
      help="etcd: serializable reads (each member answers from its own state, which may be "
      "stale) instead of linearizable ones")
    a("--image", default=None, help="docker backend: node image (default paxos-node:latest)")
    a("--bin", default=None, metavar="PROGRAM",
      help="maelstrom: the Maelstrom node program, run unchanged (a file, copied next to each "
      "member on docker and ssh, or a command on the PATH)")
    a("--bin-arg", dest="bin_args", action="append", default=[], metavar="ARG",
      help="maelstrom: an argument for the program (repeatable; write --bin-arg=-x for one "
      "that starts with a dash)")


def config_from_args(args: argparse.Namespace) -> RunConfig:
    names = {f.name for f in fields(RunConfig)}
    return RunConfig(**{k: v for k, v in vars(args).items() if k in names})
