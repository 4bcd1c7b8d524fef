"""Peer authentication: a challenge-response on the cluster secret (HMAC-SHA256).

A peer link is a connection that node A dials to node B. Before B takes a Paxos message from it,
both prove that they hold the cluster secret, each over a fresh nonce of the other:

    A -> B   {"type": "hello", "from": A, "to": B, "nonce": NA}
    B -> A   {"type": "challenge", "from": B, "to": A, "nonce": NB, "proof": P_B}
    A -> B   {"type": "auth", "proof": P_A}

with P_B = HMAC(secret, "accept|A|B|NA|NB") and P_A = HMAC(secret, "dial|A|B|NA|NB"). Both
nonces are in both proofs, so no proof can be replayed on another connection, and the role word
keeps one side's proof from being reflected back as the other's. Proofs are compared in
constant time. Clients and admin requests need no secret.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat

NONCE_BYTES = 16
MIN_SECRET_BYTES = 16
MAX_SECRET_BYTES = 4096
MAX_HANDSHAKE_LINE = 1024  # a handshake line is a few hundred bytes
HANDSHAKE_TIMEOUT_S = 2.0
_DOMAIN = b"paxos-harness peer link v1|"


class SecretError(ValueError):
    pass


def load_secret(path: str) -> bytes:
    """The cluster secret in a file only its owner may read (like an SSH key)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise SecretError(f"--secret-file {path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SecretError(f"--secret-file {path}: not a regular file")
        if st.st_mode & 0o077:
            raise SecretError(f"--secret-file {path}: readable by others (mode "
                              f"{stat.S_IMODE(st.st_mode):o}); chmod 600 it")
        data = os.read(fd, MAX_SECRET_BYTES + 1)
    finally:
        os.close(fd)
    secret = data.strip()
    if not MIN_SECRET_BYTES <= len(secret) <= MAX_SECRET_BYTES:
        raise SecretError(f"--secret-file {path}: the secret must be {MIN_SECRET_BYTES} to "
                          f"{MAX_SECRET_BYTES} bytes")
    return secret


def new_nonce() -> str:
    return secrets.token_hex(NONCE_BYTES)


def valid_nonce(v: object) -> bool:
    return (isinstance(v, str) and len(v) == 2 * NONCE_BYTES
            and all(c in "0123456789abcdef" for c in v))


def proof(secret: bytes, role: str, dialer: str, acceptor: str, dial_nonce: str,
          accept_nonce: str) -> str:
    """role: "dial" (A's proof) or "accept" (B's)."""
    text = "|".join((role, dialer, acceptor, dial_nonce, accept_nonce)).encode()
    return hmac.new(secret, _DOMAIN + text, hashlib.sha256).hexdigest()


def check(expected: str, given: object) -> bool:
    return isinstance(given, str) and hmac.compare_digest(expected.encode(), given.encode())
