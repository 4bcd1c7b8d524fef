"""The firewall, traffic-control and signal commands the Docker and SSH backends run on a node.

Pure functions: they build argv lists and shell scripts, they never run anything. The same
commands serve a container (`docker exec`) and a real host (over SSH), so they assume only a
POSIX shell, iptables, iproute2's `ip`/`tc` and procps' `pkill`.

A node's network state is always applied whole: the script (re)creates one chain of our own,
flushes it and adds the wanted rules, so applying the same state twice is harmless, a heal is the
empty state, and a restarted host (no rules at all) is brought back by the same script. Rules
live in our own chain so that a flush never touches rules someone else owns (Docker's, the
host's).

Cut semantics: a cut directed edge (src, dst) means src's messages do not reach dst. The rule is
installed on dst: DROP in INPUT of packets from src's address. When the peer port is known it
matches only packets to that port: a node sends to a peer only on the connection it dialed to the
peer's port (docs/internals.md), so this drops exactly src's messages (and src's ACKs on that
connection), while the connection dst dialed to src keeps its ACKs and flows. Dropping everything
from src would also starve dst's own connection to src of ACKs and turn every one-way cut into a
two-way one.
"""

from __future__ import annotations

import ipaddress
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

CHAIN = "PAXOS-HARNESS"
# Seconds iptables waits for the xtables lock (another iptables may hold it on a shared host).
XTABLES_WAIT = 5
# prio has at most 16 bands; the first 3 carry ordinary traffic.
_PRIO_MAX_BANDS = 16
_PRIO_DEFAULT_BANDS = 3
# A node's process is found by its command line; `pkill -f` never matches itself.
NODE_PATTERN = "(^|/)python3?(\\.[0-9]+)? -m node( |$)"

Argv = list[str]


def _addr(address: str) -> str:
    """Validate an IPv4/IPv6 address (never a name: iptables would resolve it once, silently)."""
    return str(ipaddress.ip_address(address))


def _port(port: int | None) -> int | None:
    if port is None:
        return None
    if not 0 < int(port) < 65536:
        raise ValueError(f"bad port {port!r}")
    return int(port)


def quote(argv: Sequence[str]) -> str:
    """One shell-quoted command line."""
    return shlex.join([str(a) for a in argv])


def iptables(*args: str | int) -> Argv:
    return ["iptables", "-w", str(XTABLES_WAIT), *(str(a) for a in args)]


# -- partitions --------------------------------------------------------------------------------


def drop_from(src_address: str, port: int | None = None, chain: str = CHAIN) -> Argv:
    """On dst: drop what src sends (to `port` only, when given)."""
    rule = ["-A", chain, "-s", _addr(src_address)]
    port = _port(port)
    if port is not None:
        rule += ["-p", "tcp", "--dport", str(port)]
    return iptables(*rule, "-j", "DROP")


def drop_to(dst_address: str, port: int | None = None, chain: str = CHAIN) -> Argv:
    """On src: drop what src sends to dst (for a chain hooked into OUTPUT)."""
    rule = ["-A", chain, "-d", _addr(dst_address)]
    port = _port(port)
    if port is not None:
        rule += ["-p", "tcp", "--dport", str(port)]
    return iptables(*rule, "-j", "DROP")


def ensure_chain(chain: str = CHAIN, hook: str = "INPUT") -> list[str]:
    """Shell lines: create our chain and hook it first into `hook`, if not done yet."""
    return [
        f"{quote(iptables('-N', chain))} 2>/dev/null || true",
        f"{quote(iptables('-C', hook, '-j', chain))} 2>/dev/null || "
        f"{quote(iptables('-I', hook, '1', '-j', chain))}",
    ]


def flush(chain: str = CHAIN) -> Argv:
    """The heal: no rule of ours is left (the chain stays, hooked and empty)."""
    return iptables("-F", chain)


def remove_chain(chain: str = CHAIN, hooks: Iterable[str] = ("INPUT", "OUTPUT")) -> list[str]:
    """Shell lines that remove every trace of our chain; each may fail harmlessly (not there)."""
    # A hook may have been added more than once (by hand, or by an old harness); bounded, so a
    # broken iptables that always "succeeds" cannot loop forever.
    lines = [f"for _ in 1 2 3 4 5 6 7 8; do {quote(iptables('-D', hook, '-j', chain))} "
             "2>/dev/null || break; done" for hook in hooks]
    lines += [f"{quote(iptables('-F', chain))} 2>/dev/null || true",
              f"{quote(iptables('-X', chain))} 2>/dev/null || true"]
    return lines


# -- delay and loss ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Netem:
    """What tc netem does to the packets towards one destination."""

    delay_s: float = 0.0
    jitter_s: float = 0.0
    loss: float = 0.0  # fraction 0..1

    def args(self) -> list[str]:
        out: list[str] = []
        if self.delay_s > 0 or self.jitter_s > 0:
            out += ["delay", f"{round(self.delay_s * 1e6)}us"]
            if self.jitter_s > 0:
                out.append(f"{round(self.jitter_s * 1e6)}us")
        if self.loss > 0:
            if not 0 <= self.loss <= 1:
                raise ValueError(f"loss must be a fraction in [0, 1], not {self.loss}")
            out += ["loss", f"{self.loss * 100:.4f}%"]
        return out


def clear_qdisc(dev: str) -> str:
    """Shell line: back to the kernel's default queueing on `dev` (fails harmlessly if so)."""
    return f"{quote(['tc', 'qdisc', 'del', 'dev', dev, 'root'])} 2>/dev/null || true"


def netem_per_destination(dev: str, netems: Mapping[str, Netem]) -> list[Argv]:
    """argv lists giving each destination address its own netem on `dev`'s egress.

    A prio root whose extra bands receive only what the u32 filters send them (the priomap sends
    ordinary traffic to the first three bands), one netem per extra band. Start from a clean
    root: run `clear_qdisc(dev)` first.
    """
    items = [(_addr(a), n) for a, n in sorted(netems.items()) if n.args()]
    if not items:
        return []
    bands = _PRIO_DEFAULT_BANDS + len(items)
    if bands > _PRIO_MAX_BANDS:
        raise ValueError(f"at most {_PRIO_MAX_BANDS - _PRIO_DEFAULT_BANDS} destinations can have "
                         f"their own netem, not {len(items)}")
    cmds: list[Argv] = [["tc", "qdisc", "add", "dev", dev, "root", "handle", "1:", "prio",
                         "bands", str(bands), "priomap",
                         *"1 2 2 2 1 2 0 0 1 1 1 1 1 1 1 1".split()]]
    for i, (address, netem) in enumerate(items):
        band = _PRIO_DEFAULT_BANDS + i + 1
        family, width = ("ip", 32) if ipaddress.ip_address(address).version == 4 else ("ipv6", 128)
        cmds.append(["tc", "qdisc", "add", "dev", dev, "parent", f"1:{band}",
                     "handle", f"{10 + i}:", "netem", *netem.args()])
        cmds.append(["tc", "filter", "add", "dev", dev, "parent", "1:", "protocol", family,
                     "prio", "1", "u32", "match", family, "dst", f"{address}/{width}",
                     "flowid", f"1:{band}"])
    return cmds


# -- a node's whole wanted network state -------------------------------------------------------


@dataclass(frozen=True)
class NodeNetwork:
    """Everything one node's kernel must do: whose messages it drops, what its egress suffers."""

    drop_from: tuple[str, ...] = ()  # peer addresses whose messages this node does not receive
    netem: tuple[tuple[str, Netem], ...] = ()  # (destination address, what its packets suffer)
    port: int | None = None  # the peer port: only messages (not replies) are dropped

    @property
    def empty(self) -> bool:
        return not self.drop_from and not self.netem


def node_network(node: str, addresses: Mapping[str, str], cut: Iterable[tuple[str, str]],
                 delays: Mapping[tuple[str, str], float] | None = None,
                 loss: Mapping[tuple[str, str], float] | None = None,
                 port: int | None = None) -> NodeNetwork:
    """The part of the cluster-wide wanted state (cut directed edges, per-edge delay seconds and
    loss fractions) that `node` enforces: drops for edges into it, netem for edges out of it."""
    drops = sorted({addresses[src] for src, dst in cut if dst == node and src != node})
    delays = delays or {}
    loss = loss or {}
    netem: dict[str, Netem] = {}
    for (src, dst) in set(delays) | set(loss):
        if src != node or dst == node:
            continue
        item = Netem(delay_s=float(delays.get((src, dst), 0.0)),
                     loss=float(loss.get((src, dst), 0.0)))
        if item.args():
            netem[addresses[dst]] = item
    return NodeNetwork(tuple(drops), tuple(sorted(netem.items())), _port(port))


def apply_script(state: NodeNetwork, dev: str | None = "eth0", chain: str = CHAIN,
                 manage_qdisc: bool = True) -> str:
    """A `sh -c` script that makes the node's kernel do exactly `state` and nothing more.

    `dev` is the interface towards the peers; with `manage_qdisc` false (tc is not there and no
    delay was asked) the qdisc is left alone.
    """
    lines = ["set -e", *ensure_chain(chain, "INPUT"), quote(flush(chain))]
    lines += [quote(drop_from(address, state.port, chain)) for address in state.drop_from]
    if state.netem and (dev is None or not manage_qdisc):
        raise ValueError("delay or loss needs tc and the peer interface")
    if dev is not None and manage_qdisc:
        lines.append(clear_qdisc(dev))
        lines += [quote(argv) for argv in netem_per_destination(dev, dict(state.netem))]
    return "\n".join(lines) + "\n"


def cleanup_script(dev: str | None = "eth0", chain: str = CHAIN,
                   manage_qdisc: bool = True) -> str:
    """A `sh -c` script removing our chain and our qdisc (for a host that outlives the run)."""
    lines = remove_chain(chain)
    if dev is not None and manage_qdisc:
        lines.append(clear_qdisc(dev))
    return "\n".join(lines) + "\n"


# -- processes ---------------------------------------------------------------------------------


def _signal_name(signal_name: str) -> str:
    name = signal_name.upper().removeprefix("SIG")
    if name not in {"STOP", "CONT", "KILL", "TERM", "INT", "HUP"}:
        raise ValueError(f"unexpected signal {signal_name!r}")
    return name


def signal_node(signal_name: str, pattern: str = NODE_PATTERN, group: bool = False) -> Argv:
    """Signal the node process by its command line (STOP, CONT, KILL, TERM); with `group`,
    the whole process group it leads (a wrapper and the program it runs).

    Exits 1 when nothing matched: the caller decides whether that is an error.
    """
    name = _signal_name(signal_name)
    if not group:
        return ["pkill", f"-{name}", "-f", pattern]
    return sh(f"p=$(pgrep -o -f {quote([pattern])}) || exit 1; kill -{name} -$p")


def signal_pid(signal_name: str, pid: int, group: bool = False) -> Argv:
    name = _signal_name(signal_name)
    # (dash's kill takes no `--`; a negative pid after the signal is the process group)
    return ["kill", f"-{name}", f"-{int(pid)}" if group else str(int(pid))]


def with_deadline(argv: Sequence[str], seconds: float, kill_after: float = 2.0) -> Argv:
    """Wrap a command in coreutils' timeout, so it ends on the node even if our side gives up."""
    return ["timeout", "-k", f"{kill_after:g}", f"{seconds:g}", *argv]


def sh(script: str) -> Argv:
    return ["sh", "-c", script]


# -- probes ------------------------------------------------------------------------------------

# Each probe line prints `ok NAME` only if the thing works; the absence of a line is the answer.
_PROBES: dict[str, list[str]] = {
    "iptables": [
        f"{quote(iptables('-N', 'PAXOS-PROBE'))} >/dev/null 2>&1",
        f"{quote(iptables('-A', 'PAXOS-PROBE', '-s', '192.0.2.1', '-j', 'DROP'))} >/dev/null 2>&1",
        f"{quote(iptables('-F', 'PAXOS-PROBE'))} >/dev/null 2>&1",
        f"{quote(iptables('-X', 'PAXOS-PROBE'))} >/dev/null 2>&1",
    ],
    "pkill": ["command -v pkill >/dev/null 2>&1"],
    "ip": ["ip -o link show >/dev/null 2>&1"],
}


def probe_script(dev: str = "lo") -> str:
    """A `sh -c` script printing `ok iptables`, `ok netem`, `ok pkill`, `ok ip`, `ok root` for
    what works here. The netem probe builds, on `dev` (loopback by default: the probe may run
    where no other interface exists), the same qdisc tree set_network builds (prio, netem under
    it, a u32 filter), so a kernel with netem but no prio or u32 is refused before the run, not
    in the middle of it; then it removes it."""
    lines = [f"if {' && '.join(steps)}; then echo ok {name}; fi" for name, steps in _PROBES.items()]
    trial = netem_per_destination(dev, {"192.0.2.1": Netem(delay_s=0.001)})
    reset = f"{quote(['tc', 'qdisc', 'del', 'dev', dev, 'root'])} >/dev/null 2>&1"
    steps = " && ".join(f"{quote(argv)} >/dev/null 2>&1" for argv in trial)
    lines += [reset, f"if {steps}; then echo ok netem; fi", reset,
              'if [ "$(id -u)" = 0 ]; then echo ok root; fi', "exit 0"]
    return "\n".join(lines) + "\n"


def parse_probe(output: str) -> set[str]:
    return {line.split()[1] for line in output.splitlines()
            if line.startswith("ok ") and len(line.split()) == 2}


def route_dev(address: str) -> Argv:
    """argv asking the kernel which interface reaches `address` (for a real host's tc)."""
    return ["ip", "-o", "route", "get", _addr(address)]


def parse_route_dev(output: str) -> str | None:
    words = output.split()
    for i, word in enumerate(words[:-1]):
        if word == "dev":
            return words[i + 1]
    return None


@dataclass
class Capabilities:
    """Which backend faults the probe results allow, and why the others are refused."""

    faults: set[str] = field(default_factory=set)
    reasons: dict[str, str] = field(default_factory=dict)


def faults_from_probe(found: set[str], can_kill: bool = True) -> Capabilities:
    caps = Capabilities()
    if "iptables" in found:
        caps.faults.add("partition")
    else:
        caps.reasons["partition"] = "iptables does not work there (missing, or no NET_ADMIN/root)"
    if "netem" in found:
        caps.faults.add("delay")
    else:
        caps.reasons["delay"] = ("tc netem does not work there (no tc, or the kernel lacks "
                                 "sch_netem, sch_prio or cls_u32)")
    if "pkill" in found:
        caps.faults.add("pause")
    else:
        caps.reasons["pause"] = "pkill (procps) is missing there"
    if can_kill:
        caps.faults.add("kill")
    return caps
