"""A run's configuration: the command-line options, validated, and stored in config.json."""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from harness.backends import BACKENDS
from nemesis.catalogue import NemesisError, parse_kinds
from workloads import WORKLOADS


class ConfigError(ValueError):
    """Bad configuration: a one-line message, exit status 3."""


@dataclass
class RunConfig:
    backend: str = "local"
    nodes: int = 3
    workload: str = "register"
    nemesis: str = "partition,pause,kill"
    time_limit: float = 30.0
    concurrency: int = 5
    rate: float = 100.0
    seed: int | None = None
    store: str = "store"
    bugs: list[str] = field(default_factory=list)
    bug_nodes: list[str] = field(default_factory=list)
    name: str | None = None
    nemesis_interval: float = 2.0
    op_timeout: float = 2.0
    election_timeout_ms: int = 300
    heartbeat_ms: int = 50
    delay_ms: float = 50.0
    snapshot_every: int = 100_000
    disk_delay_ms: float = 200.0
    base_port: int = 0
    node_args: list[str] = field(default_factory=list)
    hosts: str | None = None
    image: str | None = None
    ssh_known_hosts: str | None = None
    ssh_key: str | None = None
    ssh_accept_new_host_keys: bool = False

    def nemesis_kinds(self) -> list[str]:
        return parse_kinds(self.nemesis)

    def node_ids(self) -> list[str]:
        return [f"n{i}" for i in range(1, self.nodes + 1)]

    def test_name(self) -> str:
        if self.name:
            return self.name
        kinds = "+".join(self.nemesis_kinds()) or "none"
        bugs = "-" + "+".join(self.bugs) if self.bugs else ""
        return f"{self.workload}-{kinds}-n{self.nodes}{bugs}"

    def phase_durations(self) -> dict[str, float]:
        """Warm-up, faults and recovery share the time limit 1 : 3 : 1 (recovery at least 3 s
        so the cluster can elect a leader and catch up after the final heal)."""
        total = self.time_limit
        recovery = max(3.0, total * 0.2)
        warmup = max(1.0, total * 0.2)
        faults = max(0.0, total - warmup - recovery) if self.nemesis_kinds() else 0.0
        return {"warmup": warmup, "faults": faults, "recovery": recovery}

    def validate(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"unknown backend {self.backend!r}; choose one of "
                              f"{', '.join(BACKENDS)}")
        if self.workload not in WORKLOADS:
            raise ConfigError(f"unknown workload {self.workload!r}; choose one of "
                              f"{', '.join(WORKLOADS)}")
        try:
            self.nemesis_kinds()
        except NemesisError as exc:
            raise ConfigError(str(exc)) from None
        if not 1 <= self.nodes <= 9:
            raise ConfigError(f"--nodes must be between 1 and 9, not {self.nodes}")
        if self.time_limit < 5:
            raise ConfigError(f"--time-limit must be at least 5 seconds, not {self.time_limit:g}")
        if self.concurrency < 1:
            raise ConfigError(f"--concurrency must be at least 1, not {self.concurrency}")
        if self.rate < 0:
            raise ConfigError(f"--rate must be 0 (unlimited) or more, not {self.rate:g}")
        if self.snapshot_every < 1:
            raise ConfigError("--snapshot-every must be at least 1")
        if self.op_timeout <= 0:
            raise ConfigError("--op-timeout must be positive")
        for node in self.bug_nodes:
            if node not in self.node_ids():
                raise ConfigError(f"--bug-node {node!r} is not one of {', '.join(self.node_ids())}")
        if self.bugs:
            from harness.run.bugs import known_bugs

            known = known_bugs()
            for bug in self.bugs:
                if bug not in known:
                    raise ConfigError(f"unknown bug {bug!r}; the node knows: {', '.join(known)}")
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
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ConfigError(f"unknown configuration keys: {', '.join(sorted(unknown))}")
        return cls(**data)

    @classmethod
    def load(cls, path: Path) -> RunConfig:
        return cls.from_json(json.loads(Path(path).read_text()))


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    d = RunConfig()
    a = parser.add_argument
    a("--backend", default=d.backend, help=f"where nodes run: {', '.join(BACKENDS)} "
      "(default %(default)s)")
    a("--nodes", type=int, default=d.nodes, help="cluster size (default %(default)s)")
    a("--workload", default=d.workload, help=f"{', '.join(WORKLOADS)} (default %(default)s)")
    a("--nemesis", default=d.nemesis,
      help="comma list of fault kinds: partition, pause, kill, delay (alias packet), disk, "
      "or none; "
      "a kind may name its shapes, e.g. partition:isolate-leader/halves, kill:leader, "
      "pause:one/minority (default %(default)s)")
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
    a("--op-timeout", type=float, default=d.op_timeout,
      help="seconds a client waits for one operation, retries included (default %(default)s)")
    a("--election-timeout-ms", type=int, default=d.election_timeout_ms,
      help="the nodes' election timeout T (randomized in [T, 2T)) (default %(default)s)")
    a("--heartbeat-ms", type=int, default=d.heartbeat_ms,
      help="the nodes' heartbeat interval (default %(default)s)")
    a("--delay-ms", type=float, default=d.delay_ms,
      help="mean link delay of the delay nemesis (default %(default)s)")
    a("--disk-delay-ms", type=float, default=d.disk_delay_ms,
      help="extra time every fsync takes on a node under the disk nemesis (default %(default)s)")
    a("--snapshot-every", type=int, default=d.snapshot_every,
      help="the nodes compact their log every N applied slots; the agreement and exactly-once "
      "checkers see only what is still in the logs, so keep it above the run's slot count "
      "unless testing compaction (default %(default)s)")
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
    a("--image", default=None, help="docker backend: node image (default paxos-node:latest)")


def config_from_args(args: argparse.Namespace) -> RunConfig:
    names = {f.name for f in fields(RunConfig)}
    return RunConfig(**{k: v for k, v in vars(args).items() if k in names})
