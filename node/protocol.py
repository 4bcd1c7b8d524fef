"""Client wire format: newline-delimited JSON requests and replies (DESIGN.md, docs/internals.md).

This module is shared with the harness (it may import `node.protocol`), so it holds only the
format: parsing and validating requests, building replies and error replies. No I/O.
"""

from __future__ import annotations

import json
import math
from typing import Any

# A request line longer than this is refused (error 12) and the connection closed: the node must
# not buffer unbounded input from one client while serving others.
MAX_LINE = 1 << 20

UNAVAILABLE = 11
MALFORMED = 12
KEY_DOES_NOT_EXIST = 20
PRECONDITION_FAILED = 22
TIMEOUT = 30

ERROR_NAMES: dict[int, str] = {
    UNAVAILABLE: "unavailable",
    MALFORMED: "malformed-request",
    KEY_DOES_NOT_EXIST: "key-does-not-exist",
    PRECONDITION_FAILED: "precondition-failed",
    TIMEOUT: "timeout",
}
# Whether a failure with this code tells the client the operation certainly did not take effect.
DEFINITE: dict[int, bool] = {
    UNAVAILABLE: True,
    MALFORMED: True,
    KEY_DOES_NOT_EXIST: True,
    PRECONDITION_FAILED: True,
    TIMEOUT: False,
}

CLIENT_OPS = ("read", "write", "cas", "add")
ADMIN_OPS = ("status", "log")
MAX_CLIENT_ID = 256
MAX_KEY_LEN = 1024
DEFAULT_LOG_LIMIT = 1000
MAX_LOG_LIMIT = 100_000


class MalformedRequest(ValueError):
    """The request does not parse or lacks fields (error 12)."""


def error(code: int, message: str | None = None, *, leader: str | None = None,
          definite: bool | None = None) -> dict[str, Any]:
    """An error reply body (without the request id)."""
    reply: dict[str, Any] = {
        "ok": False,
        "code": code,
        "error": ERROR_NAMES.get(code, "error"),
        "definite": DEFINITE.get(code, False) if definite is None else definite,
    }
    if code == UNAVAILABLE:
        reply["leader"] = leader
    if message:
        reply["message"] = message
    return reply


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def valid_key(key: Any) -> bool:
    if isinstance(key, str):
        return len(key) <= MAX_KEY_LEN
    return _is_int(key)


def valid_set_element(value: Any) -> bool:
    """Set elements must be orderable against each other for the sorted read: ints or strings."""
    return _is_int(value) or isinstance(value, str)


def _no_constants(name: str) -> Any:
    # Python's json reads NaN and Infinity, which are not JSON: echoing them back (a request
    # id, say) would make the reply unreadable to every strict JSON reader.
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 reads as inf
        raise ValueError(f"{text[:20]} is out of range")
    return value


def decode_line(line: bytes) -> Any:
    """JSON-decode one request line; MalformedRequest on anything that is not JSON."""
    try:
        # Decoded here as UTF-8: json.loads on bytes would first guess the encoding.
        return json.loads(line.decode() if isinstance(line, bytes) else line,
                          parse_constant=_no_constants, parse_float=_finite_float)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise MalformedRequest(f"not JSON: {exc.__class__.__name__}") from None


MAX_REQUEST_ID = 256


def request_id(obj: Any) -> Any:
    """The request's id if it can be echoed as it is (null, an int, a string or float of a
    bounded size), else None."""
    rid = obj.get("id") if isinstance(obj, dict) else None
    if rid is None or _is_int(rid) and abs(rid) < 2**63:
        return rid
    if isinstance(rid, str) and len(rid) <= MAX_REQUEST_ID:
        return rid
    if isinstance(rid, float):
        return rid
    return None


def parse_request(obj: Any) -> dict[str, Any]:
    """Validate a decoded request. Returns the normalised request: for client ops the log command
    (`client`, `seq`, `op`, `key` and `value` / `from` / `to` as the op needs), for admin ops
    `{"op": "status"}` or `{"op": "log", "from": i, "limit": n}`."""
    if not isinstance(obj, dict):
        raise MalformedRequest("request is not a JSON object")
    op = obj.get("op")
    if op == "status":
        return {"op": "status"}
    if op == "log":
        start = obj.get("from", 0)
        limit = obj.get("limit", DEFAULT_LOG_LIMIT)
        if not _is_int(start) or start < 0:
            raise MalformedRequest("log: 'from' must be a non-negative integer")
        if not _is_int(limit) or limit < 0:
            raise MalformedRequest("log: 'limit' must be a non-negative integer")
        return {"op": "log", "from": start, "limit": min(limit, MAX_LOG_LIMIT)}
    if op not in CLIENT_OPS:
        raise MalformedRequest(f"unknown op {op!r}" if isinstance(op, str) else "missing op")
    return command_from(obj)


def command_from(obj: dict[str, Any]) -> dict[str, Any]:
    """The log command of a client request (raises MalformedRequest)."""
    op = obj.get("op")
    client = obj.get("client")
    seq = obj.get("seq")
    if not isinstance(client, str) or not client or len(client) > MAX_CLIENT_ID:
        raise MalformedRequest("'client' must be a non-empty string")
    if not _is_int(seq) or seq < 0:
        raise MalformedRequest("'seq' must be a non-negative integer")
    if "key" not in obj or not valid_key(obj["key"]):
        raise MalformedRequest("'key' must be a string or an integer")
    cmd: dict[str, Any] = {"client": client, "seq": seq, "op": op, "key": obj["key"]}
    if op == "write":
        if "value" not in obj:
            raise MalformedRequest("write needs 'value'")
        cmd["value"] = obj["value"]
    elif op == "add":
        if not valid_set_element(obj.get("value")):
            raise MalformedRequest("add needs an integer or string 'value'")
        cmd["value"] = obj["value"]
    elif op == "cas":
        if "from" not in obj or "to" not in obj:
            raise MalformedRequest("cas needs 'from' and 'to'")
        cmd["from"] = obj["from"]
        cmd["to"] = obj["to"]
    elif op != "read":
        raise MalformedRequest(f"unknown op {op!r}")
    return cmd


_COMMAND_FIELDS: dict[str, frozenset[str]] = {
    "read": frozenset(("client", "seq", "op", "key")),
    "write": frozenset(("client", "seq", "op", "key", "value")),
    "add": frozenset(("client", "seq", "op", "key", "value")),
    "cas": frozenset(("client", "seq", "op", "key", "from", "to")),
}


def valid_command(cmd: Any) -> bool:
    """Whether a log value (from a peer) is a well-formed command or a no-op: exactly what
    command_from would have made of it (the same fields, nothing else). On the hot path of
    every Accept, so it checks in place instead of building the command again."""
    if not isinstance(cmd, dict):
        return False
    op = cmd.get("op")
    if op == "noop":
        return True
    fields = _COMMAND_FIELDS.get(op) if isinstance(op, str) else None
    if fields is None or cmd.keys() != fields:
        return False
    client, seq, key = cmd["client"], cmd["seq"], cmd["key"]
    if not isinstance(client, str) or not client or len(client) > MAX_CLIENT_ID:
        return False
    if not _is_int(seq) or seq < 0 or not valid_key(key):
        return False
    return op != "add" or valid_set_element(cmd["value"])


def encode(obj: Any) -> bytes:
    """One wire line (strict JSON: no NaN or Infinity)."""
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode() + b"\n"
