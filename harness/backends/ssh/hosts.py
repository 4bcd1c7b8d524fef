"""SSH hosts: the `--hosts` syntax, which host runs which node, and trust in host keys.

Key authentication only; host keys are checked against a known_hosts file with a RejectPolicy.
Accepting unknown keys (trust on first use, appended to the file) needs the explicit, unsafe,
`accept_new_host_keys`; a key that differs from the known one is always refused.
"""

from __future__ import annotations

import base64
import hashlib
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from harness.backends.base import BackendError

DEFAULT_USER = "root"
DEFAULT_SSH_PORT = 22
DEFAULT_PYTHON = "python3"
HOST_OPTIONS = ("key", "python", "node-port", "user", "port")


@dataclass(frozen=True)
class Host:
    """One remote machine: where to log in, as whom, with which key."""

    address: str
    user: str = DEFAULT_USER
    port: int = DEFAULT_SSH_PORT
    name: str | None = None
    key: str | None = None
    python: str = DEFAULT_PYTHON
    node_port: int | None = None

    def target(self) -> str:
        address = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.user}@{address}:{self.port}"

    def label(self) -> str:
        return f"{self.name} ({self.target()})" if self.name else self.target()


def _split_address(text: str, where: str) -> tuple[str, int | None]:
    """ADDRESS[:PORT], with [v6]:PORT for IPv6."""
    if text.startswith("["):
        address, _, rest = text[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise BackendError(f"{where}: cannot read {text!r} as [ADDRESS]:PORT")
        port_text = rest[1:] if rest else ""
    elif text.count(":") == 1:
        address, port_text = text.split(":")
    else:
        address, port_text = text, ""
    if not address:
        raise BackendError(f"{where}: no address in {text!r}")
    port = None
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise BackendError(f"{where}: bad port {port_text!r}")
        port = int(port_text)
    return address, port


def parse_host(text: str, where: str = "--hosts") -> Host:
    """`[NAME=][USER@]ADDRESS[:PORT] [key=PATH] [python=PATH] [node-port=N]`, or, in a file,
    `NAME [USER@]ADDRESS[:PORT] [options]`."""
    options: dict[str, str] = {}
    words = []
    for word in text.split():
        name, eq, value = word.partition("=")
        if eq and name in HOST_OPTIONS:
            if not value:
                raise BackendError(f"{where}: {name}= needs a value")
            options[name] = value
        else:
            words.append(word)
    if len(words) == 2:
        name, target = words
    elif len(words) == 1:
        name, eq, target = words[0].rpartition("=")
        if eq and not name:
            raise BackendError(f"{where}: empty host name in {text.strip()!r}")
    else:
        raise BackendError(f"{where}: cannot read {text.strip()!r} as "
                           "[NAME=][USER@]ADDRESS[:PORT] [key=PATH]")
    user, at, rest = target.rpartition("@")
    if at and not user:
        raise BackendError(f"{where}: empty user name in {target!r}")
    address, port = _split_address(rest, where)
    host = Host(address=address, user=user or options.get("user", DEFAULT_USER),
                port=port or DEFAULT_SSH_PORT, name=name or None, key=options.get("key"),
                python=options.get("python", DEFAULT_PYTHON))
    if "port" in options:
        host = replace(host, port=_split_address(f"x:{options['port']}", where)[1] or 22)
    if "node-port" in options:
        host = replace(host, node_port=_split_address(f"x:{options['node-port']}", where)[1])
    return host


def parse_hosts(spec: str | Iterable[Host]) -> list[Host]:
    """Hosts from a file (one a line, # comments) or a comma list."""
    if not isinstance(spec, str):
        return list(spec)
    path = Path(spec).expanduser()
    if path.is_file():
        hosts = []
        for number, line in enumerate(path.read_text().splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if line:
                host = parse_host(line, f"{path}:{number}")
                if host.key and not Path(host.key).expanduser().is_absolute():
                    # Relative to the file, so the file means the same from any directory.
                    host = replace(host, key=str(path.parent / host.key))
                hosts.append(host)
        if not hosts:
            raise BackendError(f"hosts file {path} lists no host")
        return hosts
    if "/" in spec and "@" not in spec and "," not in spec:
        raise BackendError(f"hosts file {spec} does not exist")
    hosts = [parse_host(item) for item in spec.split(",") if item.strip()]
    if not hosts:
        raise BackendError("--hosts lists no host")
    return hosts


def assign_hosts(node_ids: list[str], hosts: list[Host]) -> dict[str, Host]:
    """Which host runs which node: by name when the hosts are named after the nodes, else in
    order (host names are then only labels)."""
    if len(hosts) != len(node_ids):
        raise BackendError(f"--hosts lists {len(hosts)} host(s) for {len(node_ids)} node(s): "
                           f"give --nodes {len(hosts)} or list {len(node_ids)} hosts")
    names = [h.name for h in hosts]
    if sorted(n for n in names if n) == sorted(node_ids):
        return {h.name: h for h in hosts if h.name}
    labelled = [h if h.name else replace(h, name=node) for node, h in zip(node_ids, hosts,
                                                                          strict=True)]
    return dict(zip(node_ids, labelled, strict=True))


# -- host keys ---------------------------------------------------------------------------------


def _paramiko() -> Any:
    try:
        import paramiko
    except ImportError:
        raise BackendError("the SSH backend needs paramiko: pip install "
                           "'paxos-harness[ssh]'") from None
    return paramiko


def fingerprint(key: Any) -> str:
    """OpenSSH's SHA256 fingerprint of a public key."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return f"{key.get_name()} SHA256:{base64.b64encode(digest).decode().rstrip('=')}"


class UnknownHostKey(Exception):
    def __init__(self, hostname: str, key: Any) -> None:
        super().__init__(f"{hostname} is not in known_hosts")
        self.hostname = hostname
        self.key = key


def _policies() -> tuple[type, type]:
    paramiko = _paramiko()

    class Reject(paramiko.RejectPolicy):
        """paramiko's RejectPolicy, keeping the offered key for the message."""

        def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
            raise UnknownHostKey(hostname, key)

    class AcceptNew(paramiko.MissingHostKeyPolicy):
        """Trust on first use: accept a host that known_hosts does not know, and remember it
        (in the file and for the rest of the run). A changed key is never accepted: paramiko
        refuses a mismatch before it asks the policy."""

        def __init__(self, remember: Callable[[str, Any], None]) -> None:
            self.remember = remember

        def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
            client.get_host_keys().add(hostname, key.get_name(), key)
            self.remember(hostname, key)

    return Reject, AcceptNew


class KnownHosts:
    """The known_hosts file, and the host keys accepted on first use this run (shared by every
    host's session, so a key accepted once is trusted by the connections opened after it)."""

    def __init__(self, path: Path, accept_new: bool, log: Any = None) -> None:
        self.path = path
        self.accept_new = accept_new
        self.log = log if log is not None else sys.stderr
        self._accepted: dict[str, Any] = {}
        self._lock = threading.Lock()

    def remember(self, hostname: str, key: Any) -> None:
        with self._lock:
            self._accepted[hostname] = key
            line = f"{hostname} {key.get_name()} {key.get_base64()}\n"
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.path, "a") as f:
                    f.write(line)
                where = f"added to {self.path}"
            except OSError as exc:
                where = f"not saved ({exc.strerror})"
        print(f"harness: WARNING: accepted the unknown host key of {hostname} without checking "
              f"it ({fingerprint(key)}), {where}", file=self.log, flush=True)

    def client(self) -> Any:
        """A paramiko client that trusts the known keys and asks the policy about others."""
        paramiko = _paramiko()
        Reject, AcceptNew = _policies()
        client = paramiko.SSHClient()
        if self.path.is_file():
            try:
                client.load_host_keys(str(self.path))
            except (OSError, paramiko.SSHException) as exc:
                raise BackendError(f"cannot read known_hosts file {self.path}: "
                                   f"{exc}") from None
        keys = client.get_host_keys()
        with self._lock:
            for hostname, key in self._accepted.items():
                keys.add(hostname, key.get_name(), key)
        client.set_missing_host_key_policy(AcceptNew(self.remember) if self.accept_new
                                           else Reject())
        return client
