"""The history model: operations in the DESIGN.md JSONL shape, and their pairing.

A history is a list of dicts, one per event, in the order the events happened:

    {"index": 0, "time": 12, "process": 3, "type": "invoke", "f": "cas", "key": "k1",
     "value": [1, 2]}

`type` is `invoke`, `ok`, `fail` (definitely did not happen) or `info` (indeterminate).
One extension is read and written here: a `fail` completion of a `cas` may carry
`"compare_failed": true`, meaning the cas *ran* and its compare failed (the register did not hold
`from` at its linearization point). Without that attribute `fail` means "did not happen", as in
Jepsen. Porcupine's etcd logs use the other meaning, so their reader sets the attribute on every
failed cas; nothing ever guesses it from an error name.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

OP_TYPES = ("invoke", "ok", "fail", "info")
NEMESIS = "nemesis"


class HistoryError(ValueError):
    """A history that cannot be read or makes no sense (bad syntax, unpaired events, ...).

    `index` is the op's position in the history (0-based) and `line` its 1-based line in the
    file, when known; `str()` gives one line naming the file and line.
    """

    def __init__(
        self,
        message: str,
        *,
        index: int | None = None,
        line: int | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.index = index
        self.line = line
        self.path = path

    def __str__(self) -> str:
        where = self.path or ""
        if self.line is not None:
            where = f"{where}:{self.line}" if where else f"line {self.line}"
        elif self.index is not None:
            where = f"{where}: op {self.index}" if where else f"op {self.index}"
        return f"{where}: {self.message}" if where else self.message


class LimitReached(Exception):
    """Reading a history went past its time or memory budget: its verdict is unknown."""


# Deeper values are surely not a history's, and would exhaust the stack of whoever walks them.
MAX_VALUE_DEPTH = 64


def value_depth(v: Any, limit: int = MAX_VALUE_DEPTH) -> int:
    """How deeply lists and maps nest in v (iterative; stops counting past limit)."""
    deepest, stack = 0, [(v, 0)]
    while stack:
        x, d = stack.pop()
        if isinstance(x, list | tuple | dict):
            if d + 1 > deepest:
                deepest = d + 1
                if deepest > limit:
                    return deepest
            stack.extend((y, d + 1) for y in (x.values() if isinstance(x, dict) else x))
    return deepest


@dataclass
class History:
    """A history read from a file, with what the file's format says about how to check it."""

    ops: list[dict]
    path: str | None = None
    format: str = "jsonl"
    # line number in the file of each op (same length as ops), for error messages
    lines: list[int] = field(default_factory=list)
    # defaults implied by the format: {"model": name, "initial": value}
    defaults: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    # finds `lines` when a reader left them out to be fast (called on the first error)
    line_finder: Callable[[], list[int]] | None = None

    def error_at(self, exc: HistoryError) -> HistoryError:
        """The same error, with the file and line filled in from this history."""
        if not self.lines and self.line_finder is not None:
            try:
                self.lines = self.line_finder()
            except HistoryError:
                pass
        line = exc.line
        if line is None and exc.index is not None and 0 <= exc.index < len(self.lines):
            line = self.lines[exc.index]
        return HistoryError(exc.message, index=exc.index, line=line, path=self.path)


@dataclass(slots=True)
class Operation:
    """One client operation: an invocation paired with its completion (if any)."""

    id: int  # position among the paired ops of its history
    process: Any
    f: str
    key: Any
    value: Any  # the invoked value: write's value, cas's [from, to], add's element
    output: Any  # the completion's value (what a read returned), None if none
    status: str  # "ok", "fail" or "info" (info also for invocations never completed)
    call: int  # position of the invocation in the history
    ret: int | None  # position of the completion; None for info (open-ended)
    compare_failed: bool = False
    invoke_index: int = 0  # the `index` field of the invocation (or its position)
    complete_index: int | None = None
    error: Any = None

    def describe(self, with_key: bool = True) -> str:
        """A short human form, e.g. `p3 cas('k1', 1, 2) -> compare failed`."""
        args = [] if self.key is None or not with_key else [_short(self.key)]
        if self.f in ("read", "get"):
            out = "?" if self.status == "info" else _short(self.output)
            return f"p{self.process} {self.f}({', '.join(args)}) -> {out}"
        v = self.value
        if self.f == "cas" and isinstance(v, (list, tuple)) and len(v) == 2:
            args += [_short(v[0]), _short(v[1])]
        elif v is not None or self.f != "dequeue":
            args.append(_short(v))
        text = f"p{self.process} {self.f}({', '.join(args)})"
        if self.compare_failed:
            return text + " -> compare failed"
        if self.status == "info":
            return text + " -> ? (indeterminate)"
        if self.status == "fail":
            return text + " -> fail (did not happen)"
        if self.f == "dequeue":
            return text + f" -> {_short(self.output)}"
        if self.f == "cas":
            return text + " -> ok"
        return text

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id,
            "process": self.process,
            "f": self.f,
            "value": self.value,
            "output": self.output,
            "status": self.status,
            "invoke_index": self.invoke_index,
            "complete_index": self.complete_index,
            "call": self.call,
            "return": self.ret,
            "text": self.describe(),
        }
        if self.key is not None:
            d["key"] = self.key
        if self.compare_failed:
            d["compare_failed"] = True
        return d


def _short(v: Any, limit: int = 60) -> str:
    """A value as the history writes it (`"k1"`, `[1, 2]`, `true`), nil for none; cut at limit."""
    if v is None:
        return "nil"
    try:
        s = json.dumps(v, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        s = str(v)
    return s if len(s) <= limit else s[: limit - 3] + "..."


def is_client(op: dict) -> bool:
    """Nemesis events are part of the history but not of any object's linearizability."""
    return op.get("process") != NEMESIS


_TYPES = frozenset(OP_TYPES)
_NESTED = (list, tuple, dict)


def validate_op(op: Any, index: int) -> None:
    """Reject an event that is not a history op, naming what is wrong."""
    if type(op) is not dict and not isinstance(op, dict):
        raise HistoryError(f"expected an op (a map), got {type(op).__name__}", index=index)
    t = op.get("type")
    if t not in _TYPES:
        raise HistoryError(
            f"unknown op type {t!r} (expected one of {', '.join(OP_TYPES)})", index=index
        )
    if "process" not in op:
        raise HistoryError("op has no process", index=index)
    f = op.get("f")
    if type(f) is not str and not isinstance(f, str):
        raise HistoryError(f"op has no function name (f), got {f!r}", index=index)
    for name, field_value in op.items():
        kind = type(field_value)
        if kind in _NESTED or (kind is not str and kind is not int and field_value is not None
                               and isinstance(field_value, _NESTED)):
            if kind is not dict and all(type(x) not in _NESTED and not isinstance(x, _NESTED)
                                        for x in field_value):
                continue  # a flat list, as a cas's [from, to]: one level deep
            if value_depth(field_value) > MAX_VALUE_DEPTH:
                raise HistoryError(f"the op's {name} nests deeper than {MAX_VALUE_DEPTH} "
                                   "levels", index=index)


def pair(ops: list[dict], validated: bool = False) -> list[Operation]:
    """Pair each invocation with its process's next completion.

    Nemesis events are skipped. An invocation that is never completed is `info` (it may have
    taken effect). A completion without an invocation, a second invocation while one is pending,
    or a completion whose `f` differs from its invocation's is a HistoryError. `validated`:
    a reader of formats.py already passed every op through validate_op.
    """
    pending: dict[Any, Operation] = {}
    out: list[Operation] = []
    for pos, op in enumerate(ops):
        if not validated:
            validate_op(op, pos)
        if not is_client(op):
            continue
        proc = op["process"]
        if type(proc) is not int:
            try:
                hash(proc)
            except TypeError:
                raise HistoryError(f"process must be an id, got {proc!r}", index=pos) from None
        t = op["type"]
        if t == "invoke":
            prev = pending.get(proc)
            if prev is not None:
                raise HistoryError(
                    f"process {proc} invoked {op['f']} while its {prev.f} invoked at op "
                    f"{prev.call} is still pending (a process runs one op at a time)",
                    index=pos,
                )
            # positional: a third of the time of keywords, for the op every event makes
            o = Operation(len(out), proc, op["f"], op.get("key"), op.get("value"), None, "info",
                          pos, None, False, op.get("index", pos))
            pending[proc] = o
            out.append(o)
            continue
        o = pending.pop(proc, None)
        if o is None:
            raise HistoryError(
                f"{t} of {op['f']} by process {proc} has no invocation before it", index=pos
            )
        if op["f"] != o.f:
            raise HistoryError(
                f"{t} of {op['f']} by process {proc} completes an invocation of {o.f} "
                f"(op {o.call})",
                index=pos,
            )
        if "key" in op and op["key"] != o.key:
            raise HistoryError(
                f"{t} by process {proc} names key {op['key']!r} but its invocation named "
                f"{o.key!r}",
                index=pos,
            )
        o.status = t
        o.complete_index = op.get("index", pos)
        o.error = op.get("error")
        if op.get("compare_failed"):
            if t != "fail" or o.f != "cas":
                raise HistoryError(
                    "compare_failed is only meaningful on a fail of a cas", index=pos
                )
            o.compare_failed = True
        if t == "info":
            continue  # open-ended: may take effect at any later time, or never
        o.ret = pos
        o.output = op.get("value")
    return out
