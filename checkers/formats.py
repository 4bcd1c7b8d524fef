"""Readers and writers of history files.

Formats:

- `jsonl`: DESIGN.md's `history.jsonl`, one op object per line.
- `edn`: Jepsen/Knossos histories, one op map per line or one vector of op maps, parsed with
  the edn_format library. `:fail` means the op did not happen (Jepsen's meaning).
- `porcupine-etcd`: the Jepsen etcd client logs of Porcupine's test corpus
  (`INFO  jepsen.util - 3  :fail  :cas  [1 4]`). Here `:fail :cas` means the cas ran and its
  compare failed; the reader marks it with `compare_failed: true`. `:fail :read :timed-out`
  has an unknown output, so it becomes an `info` read.
- `porcupine-kv`: Porcupine's key/value corpus (EDN maps, get/put/append, initial value "").

`porcupine` picks one of the two Porcupine formats from the content.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import IO, Any

import edn_format

from checkers import edn_fast
from checkers.history import OP_TYPES, History, HistoryError, LimitReached, validate_op

FORMATS = ("jsonl", "edn", "porcupine", "porcupine-etcd", "porcupine-kv")

# Record tags Jepsen and Knossos may print ops with; the record is a plain map to us.
for _tag in ("jepsen.history.Op", "knossos.op.Op"):
    edn_format.add_tag(_tag, lambda m: m)


def load(path: str | Path, fmt: str | None = None) -> list[dict]:
    """Ops of a history file in the DESIGN.md JSONL shape (see `read` for formats)."""
    return read(path, fmt).ops


# Parsing a history takes about this many bytes of memory per byte of file (measured: 11.4 at
# the peak for the harness's JSONL); a file past memory_limit / this is not read at all.
PARSE_BYTES_PER_BYTE = 12
_SNIFF = 65536
_TICK = 4096  # lines between two looks at the clock while parsing


def read(path: str | Path, fmt: str | None = None, *, deadline: float | None = None,
         memory_limit_mb: float | None = None) -> History:
    """Read and normalize a history file. Raises HistoryError naming the file and line, and
    LimitReached when parsing would pass `memory_limit_mb` or the `deadline` (monotonic)."""
    p = str(path)
    max_bytes = (None if memory_limit_mb is None
                 else int(memory_limit_mb * 1024 * 1024 / PARSE_BYTES_PER_BYTE))
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size if Path(path).is_file() else None
            if max_bytes is not None and size is not None and size > max_bytes:
                raise LimitReached(_too_big(size, memory_limit_mb))
            head = fh.read(_SNIFF)
            nul = head.find(b"\0")
            if nul >= 0:
                raise HistoryError(f"binary data, not a history (a NUL byte at offset {nul})",
                                   path=p)
            rest = fh.read(-1 if max_bytes is None else max(0, max_bytes + 1 - len(head)))
            raw = head + rest
            if max_bytes is not None and len(raw) > max_bytes:
                raise LimitReached(_too_big(len(raw), memory_limit_mb, at_least=True))
    except OSError as exc:
        raise HistoryError(f"cannot read: {exc.strerror or exc}", path=p) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise HistoryError("not UTF-8 text", line=line, path=p) from None
    if "\0" in text:
        raise HistoryError("binary data, not a history (a NUL byte)", path=p)
    if fmt is None or fmt == "porcupine":
        fmt = detect(p, text, porcupine_only=fmt == "porcupine")
    try:
        parser = _PARSERS[fmt]
    except KeyError:
        raise HistoryError(
            f"unknown format {fmt!r} (expected one of {', '.join(FORMATS)})", path=p
        ) from None
    try:
        hist = parser(text, deadline)
    except HistoryError as exc:
        exc.path = p
        raise
    except RecursionError:
        raise HistoryError("values nest too deeply to be a history", path=p) from None
    hist.path = p
    return hist


def _too_big(size: int, memory_limit_mb: float | None, at_least: bool = False) -> str:
    return (f"the history is {'over ' if at_least else ''}{size / 1e6:.1f} MB; parsing it "
            f"needs about {PARSE_BYTES_PER_BYTE} times that, past the memory limit of "
            f"{memory_limit_mb:g} MB")


def _tick(n: int, deadline: float | None) -> None:
    if deadline is not None and n % _TICK == 0 and time.monotonic() > deadline:
        raise LimitReached(f"the time limit was reached while parsing, at line {n}")


def detect(path: str, text: str, porcupine_only: bool = False) -> str:
    """Guess a file's format from its first meaningful line (then its name)."""
    first = ""
    for line in text.splitlines():
        s = line.strip()
        if s and not s.startswith(";"):
            first = s
            break
    if "jepsen.util" in first:
        return "porcupine-etcd"
    if _KV_LINE.match(first):
        return "porcupine-kv"
    if porcupine_only:
        if not first and path.endswith(".log"):
            return "porcupine-etcd"
        raise HistoryError(
            "not a Porcupine etcd log or kv history (first line: " + first[:60] + ")",
            line=1,
            path=path,
        )
    if first.startswith("{\"") or first == "{}":
        return "jsonl"
    if first[:1] in ("{", "[", "(", "#"):
        return "edn"
    low = path.lower()
    if not first:
        if low.endswith(".log"):
            return "porcupine-etcd"
        if low.endswith(".edn"):
            return "edn"
        return "jsonl"
    if low.endswith((".jsonl", ".json")):
        return "jsonl"
    if low.endswith(".edn"):
        return "edn"
    raise HistoryError(
        f"cannot tell the history format (first line: {first[:60]!r}); give --format",
        line=1,
        path=path,
    )


# ----------------------------------------------------------------------------------- JSONL


def parse_jsonl(text: str, deadline: float | None = None) -> History:
    ops: list[dict] = []
    lines: list[int] = []
    warnings: list[str] = []
    all_lines = text.split("\n")
    last = len(all_lines)
    for n, line in enumerate(all_lines, 1):
        _tick(n, deadline)
        if not line.strip():
            continue
        try:
            op = json.loads(line)
        except RecursionError:
            raise HistoryError("not a history op: its values nest too deeply", line=n) from None
        except ValueError as exc:
            # A controller killed mid-write leaves a torn last line without its newline; the
            # history before it is still checkable (DESIGN principle 3), so say so and go on.
            if n == last and not text.endswith("\n"):
                warnings.append(f"line {n}: ignored a truncated last line")
                break
            raise HistoryError(f"not JSON: {getattr(exc, 'msg', None) or exc}", line=n) from None
        _validate(op, len(ops), n)
        if "index" not in op:
            op["index"] = len(ops)
        ops.append(op)
        lines.append(n)
    return History(ops=ops, format="jsonl", lines=lines, warnings=warnings)


def _validate(op: Any, index: int, line: int) -> None:
    try:
        validate_op(op, index)
    except HistoryError as exc:
        exc.line = line
        raise


def write_jsonl(ops: Iterable[dict], out: IO[str]) -> None:
    for op in ops:
        out.write(json.dumps(op, separators=(", ", ": ")) + "\n")


# ------------------------------------------------------------------------------------- EDN


def _scan_forms(text: str, start: int = 0, end: int | None = None, line: int = 1):
    """Split EDN text into top-level forms: [(start, end, line)].

    A small bracket scanner so that a parse error, or a truncated file, can name its line
    (edn_format only says "EOF Reached").
    """
    end = len(text) if end is None else end
    forms: list[tuple[int, int, int]] = []
    i = start
    depth = 0
    form_start = -1
    form_line = line
    openers: list[tuple[str, int]] = []
    closing = {")": "(", "]": "[", "}": "{"}
    while i < end:
        c = text[i]
        if c == "\n":
            line += 1
            i += 1
            if depth == 0 and form_start >= 0:
                forms.append((form_start, i - 1, form_line))
                form_start = -1
            continue
        if c in " \t\r,":
            if depth == 0 and form_start >= 0:
                forms.append((form_start, i, form_line))
                form_start = -1
            i += 1
            continue
        if c == ";":
            while i < end and text[i] != "\n":
                i += 1
            continue
        if depth == 0 and form_start < 0:
            form_start, form_line = i, line
        if c == '"':
            j = i + 1
            str_line = line
            while j < end and text[j] != '"':
                if text[j] == "\\":
                    j += 1
                if j < end and text[j] == "\n":
                    line += 1
                j += 1
            if j >= end:
                raise HistoryError("unexpected end of file inside a string", line=str_line)
            i = j + 1
            continue
        if c == "\\":  # character literal such as \a or \newline
            i += 2
            while i < end and text[i] not in " \t\r\n,()[]{}\"":
                i += 1
            continue
        if c in "([{":
            depth += 1
            openers.append((c, line))
        elif c in ")]}":
            if depth == 0 or openers[-1][0] != closing[c]:
                raise HistoryError(f"unbalanced {c!r}", line=line)
            depth -= 1
            openers.pop()
            if depth == 0:
                forms.append((form_start, i + 1, form_line))
                form_start = -1
        i += 1
    if depth:
        raise HistoryError(
            f"unexpected end of file: the {openers[0][0]!r} opened at line {openers[0][1]} "
            "is never closed (truncated EDN?)",
            line=line,
        )
    if form_start >= 0:
        forms.append((form_start, end, form_line))
    return forms


def parse_edn(text: str, deadline: float | None = None) -> History:
    values = edn_fast.loads_all(text)
    if values is not None:
        try:
            return _edn_history(text, values, deadline)
        except HistoryError:
            pass  # the slow path below says which line is wrong
    return _parse_edn_slowly(text, deadline)


def _edn_history(text: str, values: list[Any], deadline: float | None) -> History:
    """The history of the fast reader's values; its ops' lines are found only if asked for."""
    if len(values) == 1 and isinstance(values[0], list):
        values = values[0]  # one vector of ops (Knossos test data): its elements are the ops
    if not all(type(v) is dict for v in values):
        raise HistoryError("expected an op map")
    ops = values
    if not set(map(type, itertools.chain.from_iterable(ops))) <= {str}:  # the keys
        ops = [{k if type(k) is str else str(k): x for k, x in v.items()} for v in ops]
    # what validate_op checks, in bulk (edn_fast bounds how deeply values nest)
    try:
        types = set(map(dict.get, ops, itertools.repeat("type")))
        fs = set(map(type, map(dict.get, ops, itertools.repeat("f"))))
        fine = types <= _OP_TYPES and fs <= {str} and \
            all(map(dict.__contains__, ops, itertools.repeat("process")))
    except TypeError:  # an unhashable type
        fine = False
    if not fine:
        for i, op in enumerate(ops):
            validate_op(op, i)
    for i, op in enumerate(ops):
        if "index" not in op:
            op["index"] = i
    _tick(0, deadline)
    return History(ops=ops, format="edn",
                   line_finder=lambda: [ln for _, _, ln in _edn_forms(text)[0]])


_OP_TYPES = frozenset(OP_TYPES)


def _edn_forms(text: str) -> tuple[list[tuple[int, int, int]], str]:
    """The op forms of EDN text (a top-level vector's elements, else the top-level forms),
    and the text they are parsed from."""
    forms = _scan_forms(text)
    if len(forms) == 1 and text[forms[0][0]] in "[(":
        s, e, ln = forms[0]
        return _scan_forms(text, s + 1, e - 1, ln), text[s + 1 : e - 1]
    return forms, text


def _parse_edn_slowly(text: str, deadline: float | None = None) -> History:
    forms, inner = _edn_forms(text)
    values: list[Any] | None = None
    if forms:
        try:
            values = list(edn_format.loads_all(inner))
        except Exception:  # noqa: BLE001 - edn_format raises several kinds; pinpointed below
            values = None
        if values is not None and len(values) != len(forms):
            values = None
    if values is None:
        # slow path: parse form by form to name the line that is wrong
        values = []
        for s, e, ln in forms:
            try:
                values.append(edn_format.loads(text[s:e]))
            except Exception as exc:  # noqa: BLE001
                msg = str(exc) or type(exc).__name__
                raise HistoryError(f"EDN syntax error: {msg}", line=ln) from None
    ops: list[dict] = []
    lines: list[int] = []
    for i, ((_, _, ln), v) in enumerate(zip(forms, values, strict=True), 1):
        _tick(i, deadline)
        if not isinstance(v, Mapping):
            raise HistoryError(f"expected an op map, got {_edn_type(v)}", line=ln)
        op = {_edn_key(k): _from_edn(x) for k, x in v.items()}
        _validate(op, len(ops), ln)
        if "index" not in op:
            op["index"] = len(ops)
        ops.append(op)
        lines.append(ln)
    return History(ops=ops, format="edn", lines=lines)


def _edn_type(v: Any) -> str:
    if isinstance(v, edn_format.Keyword):
        return "a keyword"
    return type(v).__name__


def _edn_key(k: Any) -> str:
    if isinstance(k, edn_format.Keyword):
        name = k.name
        return "compare_failed" if name == "compare-failed" else name
    return str(k)


def _from_edn(v: Any) -> Any:
    if isinstance(v, edn_format.Keyword):
        return v.name
    if isinstance(v, (bool, int, float, str)) or v is None:
        return v
    if isinstance(v, Mapping):
        return {_edn_key(k) if isinstance(k, edn_format.Keyword) else _from_edn(k): _from_edn(x)
                for k, x in v.items()}
    if isinstance(v, (frozenset, set)):
        items = [_from_edn(x) for x in v]
        try:
            return sorted(items)
        except TypeError:
            return items
    if isinstance(v, Sequence):
        return [_from_edn(x) for x in v]
    if isinstance(v, Fraction):
        return float(v)
    return str(v)


def dumps_edn(op: dict) -> str:
    """One op as a Jepsen EDN map, e.g. `{:index 0, :type :invoke, :f :cas, :value [1 2]}`."""
    parts = []
    for k, v in op.items():
        if v is None and k not in ("value",):
            continue
        key = "compare-failed" if k == "compare_failed" else k
        if k in ("type", "f") or (k == "process" and v == "nemesis"):
            val = ":" + str(v)
        else:
            val = _to_edn(v)
        parts.append(f":{key} {val}")
    return "{" + ", ".join(parts) + "}"


def _to_edn(v: Any) -> str:
    if v is None:
        return "nil"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return edn_format.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(_to_edn(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(
            (f":{k}" if isinstance(k, str) and _KEYWORDISH.match(k) else _to_edn(k))
            + " " + _to_edn(x) for k, x in v.items()
        ) + "}"
    return edn_format.dumps(str(v))


_KEYWORDISH = re.compile(r"^[A-Za-z*+!_?-][A-Za-z0-9*+!_?<>=./-]*$")


def write_edn(ops: Iterable[dict], out: IO[str]) -> None:
    """Write a history as Jepsen EDN, one op map per line, for Knossos and Elle.

    Our `fail` and Jepsen's mean the same (did not happen), so ops map one to one; a
    `compare_failed` cas is written as `:fail` with `:compare-failed true`, which Knossos
    reads as "did not happen" (weaker, still sound).
    """
    for op in ops:
        out.write(dumps_edn(op) + "\n")


# ------------------------------------------------------------------------------- Porcupine

_ETCD_LINE = re.compile(
    r"^INFO\s+jepsen\.util\s+-\s+(\S+)\s+(\S+)\s+(\S+)\s+(.*?)\s*$"
)
_ETCD_VALUE = re.compile(r"^(?:(nil)|(-?\d+)|\[\s*(-?\d+)\s+(-?\d+)\s*\]|:([\w-]+))$")


def parse_porcupine_etcd(text: str, deadline: float | None = None) -> History:
    ops: list[dict] = []
    lines: list[int] = []
    invoked: dict[int, Any] = {}
    for n, line in enumerate(text.splitlines(), 1):
        _tick(n, deadline)
        if "jepsen.util" not in line:
            continue  # other log output, as Porcupine's own reader skips it
        m = _ETCD_LINE.match(line)
        if not m:
            raise HistoryError("not a `process type f value` log line", line=n)
        proc_s, type_s, f_s, value_s = m.groups()
        if not proc_s.isdigit():
            raise HistoryError(f"process must be an integer, got {proc_s!r}", line=n)
        proc = int(proc_s)
        t = type_s.lstrip(":")
        f = f_s.lstrip(":")
        if not type_s.startswith(":") or t not in OP_TYPES:
            raise HistoryError(f"unknown op type {type_s!r}", line=n)
        if f not in ("read", "write", "cas"):
            raise HistoryError(f"unknown function {f_s!r} (expected :read, :write, :cas)", line=n)
        vm = _ETCD_VALUE.match(value_s)
        if not vm:
            raise HistoryError(f"cannot read the value {value_s!r}", line=n)
        nil, num, c_from, c_to, kw = vm.groups()
        value: Any
        if nil:
            value = None
        elif num is not None:
            value = int(num)
        elif c_from is not None:
            value = [int(c_from), int(c_to)]
        else:
            value = kw
        op: dict[str, Any] = {"index": len(ops), "process": proc, "type": t, "f": f}
        if t == "invoke":
            invoked[proc] = value
            op["value"] = value
        elif kw is not None:
            # `:timed-out`: the outcome is unknown. For a read that makes it an info read
            # (no constraint, no effect), whatever its type says.
            op["type"] = "info"
            op["value"] = invoked.get(proc) if f != "read" else None
            op["error"] = kw
        elif t == "fail" and f == "cas":
            op["value"] = value
            op["compare_failed"] = True  # the cas ran; the register did not hold `from`
        elif t == "fail":
            raise HistoryError(f"a :fail of {f} with a value has no meaning here", line=n)
        else:
            op["value"] = value
        ops.append(op)
        lines.append(n)
    return History(
        ops=ops,
        format="porcupine-etcd",
        lines=lines,
        defaults={"model": "cas-register", "initial": None},
    )


_KV_LINE = re.compile(
    r'^\{:process (\d+), :type :(invoke|ok|fail|info), :f :(get|put|append), '
    r':key "([^"\\]*)", :value (nil|"[^"\\]*")\}$'
)


def parse_porcupine_kv(text: str, deadline: float | None = None) -> History:
    ops: list[dict] = []
    lines: list[int] = []
    slow: list[int] = []
    for n, line in enumerate(text.splitlines(), 1):
        _tick(n, deadline)
        s = line.strip()
        if not s:
            continue
        m = _KV_LINE.match(s)
        if m is None:
            slow.append(len(ops))
            ops.append({})
            lines.append(n)
            continue
        proc, t, f, key, value = m.groups()
        ops.append(
            {
                "index": len(ops),
                "process": int(proc),
                "type": t,
                "f": f,
                "key": key,
                "value": None if value == "nil" else value[1:-1],
            }
        )
        lines.append(n)
    if slow:
        # lines outside the fast regex's shape (escapes, other key order): the EDN parser
        all_lines = text.splitlines()
        for i in slow:
            try:
                sub = parse_edn(all_lines[lines[i] - 1])
            except HistoryError as exc:
                exc.line = lines[i]
                raise
            if len(sub.ops) != 1:
                raise HistoryError("expected one op map on this line", line=lines[i])
            op = sub.ops[0]
            op["index"] = i
            ops[i] = op
    return History(
        ops=ops,
        format="porcupine-kv",
        lines=lines,
        defaults={"model": "kv", "initial": ""},
    )


_PARSERS = {
    "jsonl": parse_jsonl,
    "edn": parse_edn,
    "porcupine-etcd": parse_porcupine_etcd,
    "porcupine-kv": parse_porcupine_kv,
}
