"""One SSH session per host: commands run to the end under a deadline, and SFTP.

stdout, stderr and the exit status are read to the end; the connection is shared by the threads
and re-opened after it fails (the backend retries its idempotent commands once).
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.backends.base import BackendError
from harness.backends.ssh.hosts import Host, KnownHosts, UnknownHostKey, _paramiko, fingerprint

CONNECT_TIMEOUT_S = 10.0
COMMAND_TIMEOUT_S = 20.0
# How much longer than the remote deadline we wait before giving up on a command ourselves.
LOCAL_GRACE_S = 5.0
KEEPALIVE_S = 5


@dataclass
class Result:
    code: int
    out: str
    err: str

    def text(self) -> str:
        return (self.err.strip() or self.out.strip())[-400:].replace("\n", " | ")


class ConnectionLost(Exception):
    """The connection failed before or while running a command."""


def read_channel(chan: Any, deadline: float) -> tuple[int, bytes, bytes]:
    """Everything a command writes to stdout and stderr, then its exit status.

    Data that arrives before the server's EOF is in the channel's buffers once the EOF is seen
    (the transport thread handles messages in order), so the last drain after EOF loses nothing;
    the exit status comes after the EOF and is waited for under the same deadline."""
    out, err = bytearray(), bytearray()
    fd = chan.fileno()  # a pipe paramiko sets when either stream has data or at EOF

    def drain() -> None:
        while chan.recv_ready():
            out.extend(chan.recv(65536))
        while chan.recv_stderr_ready():
            err.extend(chan.recv_stderr(65536))

    while True:
        drain()
        if chan.eof_received or chan.closed:
            drain()
            break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        select.select([fd], [], [], min(remaining, 1.0))
    remaining = deadline - time.monotonic()
    if not chan.status_event.wait(max(0.0, remaining)):
        raise TimeoutError
    # -1: no exit-status message, because the connection dropped or the command died of a
    # signal (OpenSSH then sends exit-signal instead); the caller tells which.
    return chan.exit_status, bytes(out), bytes(err)


class Session:
    """One host's SSH connection: opened lazily, shared by threads, re-opened after a failure."""

    def __init__(self, host: Host, known_hosts: KnownHosts, ssh_key: str | None = None,
                 connect_timeout: float = CONNECT_TIMEOUT_S,
                 command_timeout: float = COMMAND_TIMEOUT_S) -> None:
        self.host = host
        self.known_hosts = known_hosts
        self.ssh_key = ssh_key
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.lock = threading.Lock()
        self.client: Any = None

    def alive(self) -> bool:
        transport = self.client.get_transport() if self.client is not None else None
        return bool(transport is not None and transport.is_active())

    def drop(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - closing a broken connection may fail any way
                pass

    def connected(self) -> Any:
        """The open connection, opened (again) if need be."""
        with self.lock:
            if not self.alive():
                self.drop()
                self.client = self._connect()
            return self.client

    def _connect(self) -> Any:
        paramiko = _paramiko()
        host = self.host
        client = self.known_hosts.client()
        key = host.key or self.ssh_key
        key_text = (f"key {key}" if key else "the keys in ~/.ssh and ssh-agent")
        try:
            client.connect(
                host.address, port=host.port, username=host.user,
                key_filename=str(Path(key).expanduser()) if key else None,
                look_for_keys=key is None, allow_agent=key is None,
                timeout=self.connect_timeout, banner_timeout=self.connect_timeout,
                auth_timeout=self.connect_timeout, channel_timeout=self.connect_timeout)
        except UnknownHostKey as exc:
            client.close()
            raise BackendError(
                f"host {host.label()}: its host key ({fingerprint(exc.key)}) is not in "
                f"{self.known_hosts.path}; check it and add it (e.g. ssh-keyscan -p {host.port} "
                f"{host.address} >> {self.known_hosts.path}), or pass --ssh-accept-new-host-keys "
                "(unsafe)") from None
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise BackendError(
                f"host {host.label()}: HOST KEY MISMATCH: it offers {fingerprint(exc.key)} but "
                f"{self.known_hosts.path} has {fingerprint(exc.expected_key)}; refusing to connect "
                "(someone may be intercepting; if the host was reinstalled, fix known_hosts)"
            ) from None
        except paramiko.PasswordRequiredException:
            client.close()
            raise BackendError(f"host {host.label()}: authentication failed: {key_text} is "
                               "encrypted; load it into ssh-agent and give no key") from None
        except paramiko.AuthenticationException as exc:
            client.close()
            raise BackendError(f"host {host.label()}: authentication failed for user "
                               f"{host.user} with {key_text} ({exc})") from None
        except socket.gaierror as exc:
            client.close()
            raise BackendError(f"host {host.label()}: unreachable: cannot resolve "
                               f"{host.address} ({exc.strerror})") from None
        except TimeoutError:
            client.close()
            raise BackendError(f"host {host.label()}: unreachable: no answer within "
                               f"{self.connect_timeout:g} s") from None
        except paramiko.ssh_exception.NoValidConnectionsError as exc:
            client.close()
            reasons = {e.strerror or str(e) for e in exc.errors.values()}
            raise BackendError(f"host {host.label()}: unreachable: "
                               f"{', '.join(sorted(reasons)).lower()}") from None
        except paramiko.SSHException as exc:
            client.close()
            raise BackendError(f"host {host.label()}: unreachable: the SSH handshake failed "
                               f"({exc})") from None
        except OSError as exc:
            client.close()
            raise BackendError(f"host {host.label()}: unreachable: "
                               f"{(exc.strerror or str(exc)).lower()}") from None
        transport = client.get_transport()
        if transport is not None:
            # A host that vanishes is noticed within seconds, not at the next TCP timeout.
            transport.set_keepalive(KEEPALIVE_S)
        return client

    def exec_once(self, command: str, timeout: float) -> Result:
        """Run one command; ConnectionLost if the connection failed, TimeoutError past the
        deadline (timeout plus a grace for the remote side's own deadline)."""
        paramiko = _paramiko()
        client = self.connected()
        deadline = time.monotonic() + timeout + LOCAL_GRACE_S
        try:
            transport = client.get_transport()
            if transport is None:
                raise ConnectionLost("not connected")
            chan = transport.open_session(timeout=self.connect_timeout)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise ConnectionLost(str(exc) or type(exc).__name__) from None
        try:
            chan.exec_command(command)
            chan.shutdown_write()  # no input: a command that reads stdin sees EOF at once
            code, out, err = read_channel(chan, deadline)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise ConnectionLost(str(exc) or type(exc).__name__) from None
        finally:
            chan.close()
        if code == -1 and not transport.is_active():
            raise ConnectionLost("the connection dropped while the command ran")
        return Result(code, out.decode(errors="replace"), err.decode(errors="replace"))

    def sftp(self, fn: Callable[[Any], Any]) -> None:
        """fn(an SFTP client), on a fresh connection once more if the first fails."""
        paramiko = _paramiko()
        host = self.host
        for attempt in (1, 2):
            client = self.connected()
            try:
                sftp = client.open_sftp()
                try:
                    sftp.get_channel().settimeout(self.command_timeout)
                    fn(sftp)
                finally:
                    sftp.close()
                return
            except FileNotFoundError:
                raise
            except (paramiko.SSHException, EOFError, OSError) as exc:
                self.drop()
                if attempt == 2:
                    raise BackendError(f"host {host.label()}: SFTP failed: "
                                       f"{exc or type(exc).__name__}") from None
