"""The system interface: what the harness needs from a system under test (Jepsen's DB and Client).

A system (base.System) says how a member starts on a backend (its command line, given where the
backend placed it); how a client turns a workload's operation into a request and a reply into
`ok`, `fail` (definitely did not happen) or `info` (may have happened); and which optional
capabilities it has (base.CAPABILITIES): naming its leader, serving its chosen log, reporting
counters, surviving a crash with its data directory, injecting bugs. A fault or a checker that
needs a capability the system lacks is refused before the run, or reported as not applicable,
never passed silently. The bundled Multi-Paxos node is `paxos` (paxos.py); etcd is `etcd`;
any Maelstrom `lin-kv` node is `maelstrom` (maelstrom/, under the stdio-to-TCP bridge).
"""

from __future__ import annotations

from harness.systems.base import CAPABILITIES, Member, NotSent, Outcome, System

SYSTEMS = ("paxos", "etcd", "maelstrom")


def make_system(name: str, **options: object) -> System:
    if name == "paxos":
        from harness.systems.paxos import PaxosSystem

        return PaxosSystem()
    if name == "etcd":
        from harness.systems.etcd import EtcdSystem

        return EtcdSystem(serializable_reads=bool(options.get("serializable_reads")))
    if name == "maelstrom":
        from harness.systems.maelstrom import MaelstromSystem

        program = options.get("program")
        args = options.get("program_args") or ()
        return MaelstromSystem(program if isinstance(program, str) else None,
                               [str(a) for a in args] if isinstance(args, list | tuple) else [])
    raise ValueError(f"unknown system {name!r}; choose one of {', '.join(SYSTEMS)}")


__all__ = ["CAPABILITIES", "SYSTEMS", "Member", "NotSent", "Outcome", "System", "make_system"]
