"""Sequential specifications the linearizability search checks histories against.

A model compiles one object's operations into flat arrays the search's inner loop reads
(`Compiled`). The register family (register, cas-register, kv) is compiled to op kinds the
search executes inline on integer states: every distinct value is interned to a small int, so a
read is one int comparison and a state hashes in constant time. Other models (set, queue) give a
`step` function on hashable states.

Each model checks one object; `check` splits a history by `key` first, since independent objects
compose (linearizability is local: Herlihy & Wing's P-compositionality).

Which ops constrain the search:

- `ok`: happened, with the observed output; must be linearized within its interval.
- `fail`: did not happen; dropped. Except a cas marked `compare_failed`: it ran and saw a value
  other than `from`.
- `info` (or never completed): may take effect at any point after its invocation, or never. An
  info read has no effect and no known output, so it is dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from checkers.history import HistoryError, Operation

# Op kinds of the compiled form; the search switches on them.
READ, WRITE, CAS, CAS_FAILED, CAS_ANY, APPEND, GENERIC = range(7)

ILLEGAL = object()  # what a generic step returns when the op cannot happen in that state
_UNSET = object()

READS = ("read", "get")
WRITES = ("write", "put")


@dataclass
class Compiled:
    """One object's ops in the search's flat form (parallel lists, index = op)."""

    ops: list[Operation]
    kind: list[int]
    a: list[Any]
    b: list[Any]
    definite: list[bool]  # must be linearized (ok, compare-failed) vs may (info)
    init: Any
    step: Callable[[Any, Any], Any] | None = None  # GENERIC: (state, a) -> state | ILLEGAL
    append: Callable[[Any, Any], Any] | None = None  # APPEND: (state, arg) -> state
    decode: Callable[[Any], Any] = field(default=lambda s: s)
    # the register family's interning table (state id -> value, value -> id), which the
    # search extends inline for APPEND
    values: list[Any] = field(default_factory=list)
    value_ids: dict[Any, int] = field(default_factory=dict)
    # GENERIC ops that never change the state (set reads, ...); READ and CAS_FAILED always
    # are such observers
    generic_observer: list[bool] | None = None

    def observers(self) -> list[bool]:
        """Per op: does it leave every state it is legal in unchanged?"""
        g = self.generic_observer
        return [
            k == READ or k == CAS_FAILED or (k == GENERIC and g is not None and g[i])
            for i, k in enumerate(self.kind)
        ]

    def apply(self, state: Any, i: int) -> Any:
        """The state after op i from `state`, or ILLEGAL (slow path, for explanations)."""
        k, a, b = self.kind[i], self.a[i], self.b[i]
        if k == READ:
            return state if state == a else ILLEGAL
        if k == WRITE:
            return a
        if k == CAS:
            return b if state == a else ILLEGAL
        if k == CAS_FAILED:
            return state if state != a else ILLEGAL
        if k == CAS_ANY:
            return b if state == a else state
        if k == APPEND:
            assert self.append is not None
            return self.append(state, a)
        assert self.step is not None
        return self.step(state, a)


class Model:
    """Base of the models; `name` is what `--model` and `check(model=...)` accept."""

    name = "model"
    initial: Any = None
    # check each key on its own (each key an independent object of this model)
    split_by_key = True

    def compile(self, ops: list[Operation]) -> Compiled:  # pragma: no cover - abstract
        raise NotImplementedError

    def requirement(self, c: Compiled, i: int) -> str:
        """What op i needs of the state, for explanations."""
        return ""

    def _unknown_f(self, op: Operation) -> HistoryError:
        return HistoryError(
            f"model {self.name} has no operation {op.f!r} (process {op.process})",
            index=op.call,
        )


def _hashable(v: Any) -> Any:
    if isinstance(v, list):
        return ("__list__",) + tuple(_hashable(x) for x in v)
    if isinstance(v, dict):
        return ("__dict__",) + tuple(sorted((k, _hashable(x)) for k, x in v.items()))
    return v


class RegisterModel(Model):
    """A register: read, write, and (cas-register, kv) cas [from, to]; kv also append.

    `initial` None means absent: a read of a never-written key returns null.
    """

    def __init__(
        self,
        name: str = "cas-register",
        initial: Any = None,
        cas: bool = True,
        append: bool = False,
    ) -> None:
        self.name = name
        self.initial = initial
        self.cas = cas
        self.allow_append = append

    def compile(self, ops: list[Operation]) -> Compiled:
        values: list[Any] = []
        ids: dict[Any, int] = {}

        def intern(v: Any) -> int:
            h = _hashable(v)
            try:
                return ids[h]
            except KeyError:
                ids[h] = len(values)
                values.append(v)
                return ids[h]
            except TypeError:
                raise HistoryError(f"value {v!r} cannot be compared") from None

        init = intern(self.initial)
        kept: list[Operation] = []
        kind: list[int] = []
        a: list[Any] = []
        b: list[Any] = []
        definite: list[bool] = []
        has_append = False
        for op in ops:
            st = op.status
            if st == "fail" and not op.compare_failed:
                continue  # did not happen
            f = op.f
            try:
                if f in READS:
                    if st != "ok":
                        continue  # unknown output and no effect: no constraint at all
                    k, x, y = READ, intern(op.output), None
                elif f in WRITES:
                    k, x, y = WRITE, intern(op.value), None
                elif f == "cas" and self.cas:
                    frm, to = _cas_args(op)
                    if op.compare_failed:
                        k, x, y = CAS_FAILED, intern(frm), None
                    elif st == "ok":
                        k, x, y = CAS, intern(frm), intern(to)
                    else:
                        k, x, y = CAS_ANY, intern(frm), intern(to)
                elif f == "append" and self.allow_append:
                    if not isinstance(op.value, str):
                        raise HistoryError(
                            f"append needs a string value, got {op.value!r}", index=op.call
                        )
                    has_append = True
                    k, x, y = APPEND, op.value, None
                else:
                    raise self._unknown_f(op)
            except HistoryError as exc:
                if exc.index is None:
                    exc.index = op.call
                raise
            kept.append(op)
            kind.append(k)
            a.append(x)
            b.append(y)
            definite.append(st != "info")
        append_fn = None
        if has_append:
            for v in values:
                if v is not None and not isinstance(v, str):
                    raise HistoryError(
                        f"append on a register that also holds the non-string {v!r}"
                    )
            memo: dict[tuple[int, str], int] = {}

            def append_fn(s: int, arg: str) -> int:
                k = (s, arg)
                r = memo.get(k)
                if r is None:
                    cur = values[s]
                    r = memo[k] = intern(("" if cur is None else cur) + arg)
                return r

        return Compiled(kept, kind, a, b, definite, init, None, append_fn, values.__getitem__,
                        values, ids)

    def requirement(self, c: Compiled, i: int) -> str:
        k = c.kind[i]
        if k == READ:
            return f"the register to hold {_show(c.decode(c.a[i]))}"
        if k == CAS:
            return f"the register to hold {_show(c.decode(c.a[i]))} (the cas's from)"
        if k == CAS_FAILED:
            return f"the register not to hold {_show(c.decode(c.a[i]))} (its compare failed)"
        return "nothing"


def _cas_args(op: Operation) -> tuple[Any, Any]:
    v = op.value
    if not isinstance(v, (list, tuple)) or len(v) != 2:
        raise HistoryError(f"cas value must be [from, to], got {v!r}", index=op.call)
    return v[0], v[1]


def _show(v: Any) -> str:
    return "nil (absent)" if v is None else repr(v)


class SetModel(Model):
    """A set: `add` an element; `read` returns all elements (any order)."""

    name = "set"

    def __init__(self, initial: Any = None) -> None:
        self.initial = initial

    def compile(self, ops: list[Operation]) -> Compiled:
        def step(state: frozenset, p: tuple) -> Any:
            if p[0]:
                return state | p[1]
            return state if state == p[1] else ILLEGAL

        kept, kind, a, definite = [], [], [], []
        for op in ops:
            if op.status == "fail":
                continue
            if op.f == "add":
                payload = (True, frozenset([_hashable(op.value)]))
            elif op.f in READS:
                if op.status != "ok":
                    continue
                if not isinstance(op.output, (list, tuple)):
                    raise HistoryError(
                        f"a set read must return a list, got {op.output!r}", index=op.call
                    )
                payload = (False, frozenset(_hashable(x) for x in op.output))
            else:
                raise self._unknown_f(op)
            kept.append(op)
            kind.append(GENERIC)
            a.append(payload)
            definite.append(op.status == "ok")
        init = frozenset(_hashable(x) for x in (self.initial or ()))
        return Compiled(kept, kind, a, [None] * len(kept), definite, init, step, None,
                        _sorted_list, generic_observer=[not p[0] for p in a])

    def requirement(self, c: Compiled, i: int) -> str:
        p = c.a[i]
        return "nothing" if p[0] else f"the set to be exactly {_sorted_list(p[1])}"


def _sorted_list(s: Any) -> list:
    try:
        return sorted(s)
    except TypeError:
        return list(s)


class QueueModel(Model):
    """A FIFO queue: `enqueue` a value; `dequeue` returns the head (null when empty)."""

    name = "queue"

    def __init__(self, initial: Any = None) -> None:
        self.initial = initial

    def compile(self, ops: list[Operation]) -> Compiled:
        def step(state: tuple, p: tuple) -> Any:
            what, v = p
            if what == 0:  # enqueue
                return state + (v,)
            if what == 1:  # dequeue with a known output
                if v is None:
                    return state if not state else ILLEGAL
                return state[1:] if state and state[0] == v else ILLEGAL
            return state[1:]  # dequeue whose output is unknown (info)

        kept, kind, a, definite = [], [], [], []
        for op in ops:
            if op.status == "fail":
                continue
            if op.f == "enqueue":
                payload = (0, _hashable(op.value))
            elif op.f == "dequeue":
                payload = (1, _hashable(op.output)) if op.status == "ok" else (2, None)
            else:
                raise self._unknown_f(op)
            kept.append(op)
            kind.append(GENERIC)
            a.append(payload)
            definite.append(op.status == "ok")
        init = tuple(_hashable(x) for x in (self.initial or ()))
        # a dequeue that returned nothing only observes the queue is empty
        observers = [p[0] == 1 and p[1] is None for p in a]
        return Compiled(kept, kind, a, [None] * len(kept), definite, init, step, None, list,
                        generic_observer=observers)

    def requirement(self, c: Compiled, i: int) -> str:
        what, v = c.a[i]
        if what == 1:
            return "an empty queue" if v is None else f"{v!r} at the head of the queue"
        return "nothing"


class MapModel(Model):
    """The whole key/value map as one object (no splitting by key): read/get, write/put,
    cas and append on any key. Much slower than `kv`, which checks key by key and must give
    the same verdict; it is here to show that, and for ops that span keys later."""

    name = "map"
    split_by_key = False

    def __init__(self, initial: Any = None) -> None:
        self.initial = initial

    def compile(self, ops: list[Operation]) -> Compiled:
        keys: dict[Any, int] = {}
        for op in ops:
            keys.setdefault(_hashable(op.key), len(keys))

        def step(state: tuple, p: tuple) -> Any:
            what, k, x, y = p
            cur = state[k]
            if what == READ:
                return state if cur == x else ILLEGAL
            if what == CAS_FAILED:
                return state if cur != x else ILLEGAL
            if what == CAS:
                if cur != x:
                    return ILLEGAL
                new = y
            elif what == CAS_ANY:
                if cur != x:
                    return state
                new = y
            elif what == APPEND:
                new = ("" if cur is None else cur) + x
            else:
                new = x
            return state[:k] + (new,) + state[k + 1:]

        kept, kind, a, definite = [], [], [], []
        for op in ops:
            st = op.status
            if st == "fail" and not op.compare_failed:
                continue
            k = keys[_hashable(op.key)]
            if op.f in READS:
                if st != "ok":
                    continue
                payload = (READ, k, _hashable(op.output), None)
            elif op.f in WRITES:
                payload = (WRITE, k, _hashable(op.value), None)
            elif op.f == "cas":
                frm, to = _cas_args(op)
                what = CAS_FAILED if op.compare_failed else CAS if st == "ok" else CAS_ANY
                payload = (what, k, _hashable(frm), _hashable(to))
            elif op.f == "append" and isinstance(op.value, str):
                payload = (APPEND, k, op.value, None)
            else:
                raise self._unknown_f(op)
            kept.append(op)
            kind.append(GENERIC)
            a.append(payload)
            definite.append(st != "info")
        init = tuple(_hashable(self.initial) for _ in keys)
        names = list(keys)

        def decode(state: tuple) -> dict:
            return {str(names[i]): v for i, v in enumerate(state)}

        observers = [p[0] in (READ, CAS_FAILED) for p in a]
        return Compiled(kept, kind, a, [None] * len(kept), definite, init, step, None, decode,
                        generic_observer=observers)

    def requirement(self, c: Compiled, i: int) -> str:
        what, _, x, _ = c.a[i]
        op = c.ops[i]
        if what == READ:
            return f"key {op.key!r} to hold {_show(x)}"
        if what == CAS:
            return f"key {op.key!r} to hold {_show(x)} (the cas's from)"
        if what == CAS_FAILED:
            return f"key {op.key!r} not to hold {_show(x)} (its compare failed)"
        return "nothing"


MODELS: dict[str, Callable[..., Model]] = {
    "register": lambda initial=None: RegisterModel("register", initial, cas=False),
    "cas-register": lambda initial=None: RegisterModel("cas-register", initial, cas=True),
    "kv": lambda initial=None: RegisterModel("kv", initial, cas=True, append=True),
    "set": lambda initial=None: SetModel(initial),
    "queue": lambda initial=None: QueueModel(initial),
    "map": lambda initial=None: MapModel(initial),
}


def get(name: str, initial: Any = _UNSET) -> Model:
    """A model by name (see MODELS); `initial` overrides its initial state."""
    try:
        factory = MODELS[name]
    except KeyError:
        raise ValueError(
            f"unknown model {name!r} (expected one of {', '.join(MODELS)})"
        ) from None
    return factory() if initial is _UNSET else factory(initial)
