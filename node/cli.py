"""Command line of `python -m node`."""

from __future__ import annotations

import argparse
import textwrap
from dataclasses import dataclass, field
from typing import NoReturn

from node.bugs import BUGS


@dataclass
class Options:
    id: str
    listen: tuple[str, int]
    peers: dict[str, tuple[str, int]]
    data_dir: str
    election_timeout_ms: int = 300
    heartbeat_ms: int = 50
    request_timeout_ms: int = 1000
    snapshot_every: int = 10_000
    bugs: list[str] = field(default_factory=list)
    classic: bool = False
    seed: int | None = None
    secret_file: str | None = None
    unsafe_no_fsync: bool = False
    maelstrom: bool = False


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def parse_hostport(text: str, what: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{what} must be HOST:PORT with a port in 1..65535, not {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def _bug_help() -> str:
    return "\n".join(textwrap.fill(text, 100, initial_indent=f"  {name:<21}",
                                   subsequent_indent=" " * 23) for name, text in BUGS.items())


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m node",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="A Multi-Paxos key-value replica. Clients and admin tools speak "
                    "newline-delimited JSON on the --listen port (ops: read, write, cas, add, "
                    "status, log); peers connect to the same port and introduce themselves.",
        epilog="injectable bugs (off unless named with --bug; for testing the harness):\n"
               + _bug_help()
               + "\n\nexit status: 0 after SIGTERM/SIGINT, 1 on a startup failure (corrupt "
                 "log, port in use, data directory locked), 2 on bad arguments.",
    )
    p.add_argument("--maelstrom", action="store_true",
                   help="speak Maelstrom's protocol on stdin and stdout instead of listening "
                        "(jepsen-io/maelstrom, workload lin-kv): the id and the peers come "
                        "with Maelstrom's init, and --data-dir defaults to ./paxos-data-ID")
    p.add_argument("--id", metavar="ID",
                   help="this node's id (as its peers know it), e.g. n1 (required unless "
                        "--maelstrom)")
    p.add_argument("--listen", metavar="HOST:PORT",
                   help="address to accept clients and peers on (required unless --maelstrom)")
    p.add_argument("--peer", action="append", default=[], metavar="ID=HOST:PORT",
                   help="a peer and the address to dial it at (may be a proxy); repeat per peer")
    p.add_argument("--data-dir", metavar="DIR",
                   help="write-ahead log and snapshot directory (created if missing)")
    p.add_argument("--election-timeout-ms", type=int, default=300, metavar="MS",
                   help="minimum election timeout T; each timeout is drawn from [T, 2T) "
                        "(default 300)")
    p.add_argument("--heartbeat-ms", type=int, default=50, metavar="MS",
                   help="leader heartbeat interval, below T (default 50)")
    p.add_argument("--request-timeout-ms", type=int, default=1000, metavar="MS",
                   help="reply 'timeout' (code 30, indefinite) to a client request not "
                        "answered within this time (default 1000)")
    p.add_argument("--snapshot-every", type=int, default=10_000, metavar="N",
                   help="snapshot the state and truncate the log every N applied slots "
                        "(default 10000)")
    p.add_argument("--bug", action="append", default=[], metavar="NAME",
                   help="enable an injectable bug (repeatable; names below)")
    p.add_argument("--classic", action="store_true",
                   help="run a full Phase 1 (a fresh ballot) before every slot, one slot at a "
                        "time, reads included: single-decree Paxos per slot, for comparison "
                        "benchmarks")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the election-timeout RNG (default: random)")
    p.add_argument("--secret-file", metavar="FILE", default=None,
                   help="the cluster secret (a file only its owner can read; required with "
                        "--peer): a connection becomes a peer link only after both ends prove "
                        "they hold it (HMAC challenge-response)")
    # Test-only: shows that the harness catches a node whose acknowledgements outrun its disk.
    p.add_argument("--unsafe-no-fsync", action="store_true", help=argparse.SUPPRESS)
    return p


def parse_args(argv: list[str] | None = None) -> Options:
    p = build_parser()
    a = p.parse_args(argv)
    try:
        return _validate(a)
    except ValueError as exc:
        p.error(str(exc))


def _validate(a: argparse.Namespace) -> Options:
    if a.maelstrom:
        if a.id or a.listen or a.peer or a.secret_file:
            raise ValueError("--maelstrom takes its id and peers from Maelstrom's init: no "
                             "--id, --listen, --peer or --secret-file")
        a.id, a.listen, a.data_dir = "", "maelstrom:1", a.data_dir or ""
    elif not a.listen or a.data_dir is None:
        raise ValueError("--id, --listen and --data-dir are required (or --maelstrom)")
    if not a.maelstrom and (not a.id or "=" in a.id or any(c.isspace() for c in a.id)):
        raise ValueError("--id must be a non-empty name without '=' or spaces")
    listen = parse_hostport(a.listen, "--listen")
    peers: dict[str, tuple[str, int]] = {}
    for spec in a.peer:
        pid, sep, addr = spec.partition("=")
        if not sep or not pid:
            raise ValueError(f"--peer must be ID=HOST:PORT, not {spec!r}")
        if pid == a.id:
            raise ValueError(f"--peer {pid} is this node's own id")
        if pid in peers:
            raise ValueError(f"--peer {pid} given twice")
        peers[pid] = parse_hostport(addr, f"--peer {pid}")
    if not a.data_dir and not a.maelstrom:
        raise ValueError("--data-dir must not be empty")
    if peers and not a.secret_file:
        raise ValueError("--secret-file is required with --peer: peers authenticate with the "
                         "cluster secret")
    if a.election_timeout_ms < 10:
        raise ValueError("--election-timeout-ms must be at least 10")
    if a.heartbeat_ms < 1 or a.heartbeat_ms >= a.election_timeout_ms:
        raise ValueError("--heartbeat-ms must be at least 1 and below --election-timeout-ms")
    if a.request_timeout_ms < 1:
        raise ValueError("--request-timeout-ms must be positive")
    if a.snapshot_every < 1:
        raise ValueError("--snapshot-every must be positive")
    for b in a.bug:
        if b not in BUGS:
            raise ValueError(f"unknown --bug {b!r} (known: {', '.join(BUGS)})")
    return Options(id=a.id, listen=listen, peers=peers, data_dir=a.data_dir,
                   election_timeout_ms=a.election_timeout_ms, heartbeat_ms=a.heartbeat_ms,
                   request_timeout_ms=a.request_timeout_ms, snapshot_every=a.snapshot_every,
                   bugs=sorted(set(a.bug)), classic=a.classic, seed=a.seed,
                   secret_file=a.secret_file, unsafe_no_fsync=a.unsafe_no_fsync,
                   maelstrom=a.maelstrom)
