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

Two semantics (`Model.knossos`). Ours, for DESIGN.md's JSONL: a read that returned null saw
the key absent, and a failed cas marked `compare_failed` ran. Knossos's (`knossos/model.clj`),
for Jepsen's EDN histories: a read of nil is "value unknown" and always legal, every `:fail`
did not happen, an `:ok` op's value is its completion's, and an `:info` op keeps its
invocation's value (so an info dequeue of nil can only take a nil off the queue).
The models only Knossos has (mutex, multi-register, unordered-queue) follow its rules always.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from checkers.history import History, HistoryError, Operation

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
    # Knossos's semantics (see the module's docstring) rather than ours
    knossos = False
    # the operations it knows, for refusals that name a model that does
    fs: tuple[str, ...] = ()

    def compile(self, ops: list[Operation]) -> Compiled:  # pragma: no cover - abstract
        raise NotImplementedError

    def requirement(self, c: Compiled, i: int) -> str:
        """What op i needs of the state, for explanations."""
        return ""

    def _unknown_f(self, op: Operation) -> HistoryError:
        others = [name for name, factory in MODELS.items() if op.f in factory().fs]
        hint = f"; {', '.join(others)} {'has' if len(others) == 1 else 'have'} it" \
            f" (--model {others[0]})" if others else ""
        return HistoryError(
            f"model {self.name} has no operation {op.f!r} (process {op.process}){hint}",
            index=op.call,
        )

    def _generic(self, ops: list[Operation], payload: Callable[[Operation], Any]
                 ) -> tuple[list[Operation], list[int], list[Any], list[bool]]:
        """Compiled's lists for a GENERIC model: the ops that may have happened (not `fail`),
        each with its payload; an op the model does not know is refused."""
        kept, a, definite = [], [], []
        for op in ops:
            if op.status == "fail":
                continue
            if op.f not in self.fs:
                raise self._unknown_f(op)
            kept.append(op)
            a.append(payload(op))
            definite.append(op.status == "ok")
        return kept, [GENERIC] * len(kept), a, definite

    def _value(self, op: Operation) -> Any:
        """The op's argument: under Knossos an ok op's value is its completion's."""
        return op.output if self.knossos and op.status == "ok" else op.value


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
        self.fs = READS + WRITES + (("cas",) if cas else ()) + (("append",) if append else ())

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
        knossos = self.knossos
        for op in ops:
            st = op.status
            if st == "fail" and (knossos or not op.compare_failed):
                continue  # did not happen
            f = op.f
            try:
                if f in READS:
                    if st != "ok" or (knossos and op.output is None):
                        continue  # unknown output and no effect: no constraint at all
                    k, x, y = READ, intern(op.output), None
                elif f in WRITES:
                    k, x, y = WRITE, intern(self._value(op)), None
                elif f == "cas" and self.cas:
                    frm, to = _cas_args(op, self._value(op))
                    if op.compare_failed and not knossos:
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


def _cas_args(op: Operation, v: Any = _UNSET) -> tuple[Any, Any]:
    if v is _UNSET:
        v = op.value
    if not isinstance(v, (list, tuple)) or len(v) != 2:
        raise HistoryError(f"cas value must be [from, to], got {v!r}", index=op.call)
    return v[0], v[1]


def _show(v: Any) -> str:
    return "nil (absent)" if v is None else repr(v)


class SetModel(Model):
    """A set: `add` an element; `read` returns all elements (any order)."""

    name = "set"
    fs = ("add",) + READS

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
                payload = (True, frozenset([_hashable(self._value(op))]))
            elif op.f in READS:
                if op.status != "ok":
                    continue
                if self.knossos and op.output is None:
                    payload = (False, None)  # Knossos: a set never equals nil
                elif not isinstance(op.output, (list, tuple)):
                    raise HistoryError(
                        f"a set read must return a list, got {op.output!r}", index=op.call
                    )
                else:
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
        if p[0]:
            return "nothing"
        return "a set equal to nil (never)" if p[1] is None else \
            f"the set to be exactly {_sorted_list(p[1])}"


def _sorted_list(s: Any) -> list:
    try:
        return sorted(s)
    except TypeError:
        return list(s)


class QueueModel(Model):
    """A FIFO queue: `enqueue` a value; `dequeue` returns the head (null when empty)."""

    name = "queue"
    fs = ("enqueue", "dequeue")

    def __init__(self, initial: Any = None, name: str = "queue") -> None:
        self.initial = initial
        self.name = name

    def compile(self, ops: list[Operation]) -> Compiled:
        knossos = self.knossos

        def step(state: tuple, p: tuple) -> Any:
            what, v = p
            if what == 0:  # enqueue
                return state + (v,)
            if what == 1:  # dequeue with a known output
                if v is None and not knossos:
                    return state if not state else ILLEGAL
                return state[1:] if state and state[0] == v else ILLEGAL
            return state[1:]  # dequeue whose output is unknown (info)

        kept, kind, a, definite = [], [], [], []
        for op in ops:
            if op.status == "fail":
                continue
            if op.f == "enqueue":
                payload = (0, _hashable(self._value(op)))
            elif op.f == "dequeue":
                if op.status == "ok":
                    payload = (1, _hashable(op.output))
                elif knossos:
                    payload = (1, _hashable(op.value))  # Knossos keeps the invocation's value
                else:
                    payload = (2, None)
            else:
                raise self._unknown_f(op)
            kept.append(op)
            kind.append(GENERIC)
            a.append(payload)
            definite.append(op.status == "ok")
        init = tuple(_hashable(x) for x in (self.initial or ()))
        # a dequeue that returned nothing only observes the queue is empty
        observers = [p[0] == 1 and p[1] is None and not knossos for p in a]
        return Compiled(kept, kind, a, [None] * len(kept), definite, init, step, None, list,
                        generic_observer=observers)

    def requirement(self, c: Compiled, i: int) -> str:
        what, v = c.a[i]
        if what == 1:
            if v is None and not self.knossos:
                return "an empty queue"
            return f"{_show(v)} at the head of the queue"
        return "nothing"


class MapModel(Model):
    """The whole key/value map as one object (no splitting by key): read/get, write/put,
    cas and append on any key. Much slower than `kv`, which checks key by key and must give
    the same verdict; it is here to show that, and for ops that span keys later."""

    name = "map"
    split_by_key = False
    fs = READS + WRITES + ("cas", "append")

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
        knossos = self.knossos
        for op in ops:
            st = op.status
            if st == "fail" and (knossos or not op.compare_failed):
                continue
            k = keys[_hashable(op.key)]
            if op.f in READS:
                if st != "ok" or (knossos and op.output is None):
                    continue
                payload = (READ, k, _hashable(op.output), None)
            elif op.f in WRITES:
                payload = (WRITE, k, _hashable(self._value(op)), None)
            elif op.f == "cas":
                frm, to = _cas_args(op, self._value(op))
                what = CAS_FAILED if op.compare_failed and not knossos else \
                    CAS if st == "ok" else CAS_ANY
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


class MutexModel(Model):
    """Knossos's mutex: `acquire` needs it free, `release` needs it held. Starts free."""

    name = "mutex"
    fs = ("acquire", "release")

    def __init__(self, initial: Any = None) -> None:
        self.initial = bool(initial)

    def compile(self, ops: list[Operation]) -> Compiled:
        def step(locked: bool, acquire: bool) -> Any:
            return ILLEGAL if locked == acquire else acquire

        kept, kind, a, definite = self._generic(ops, lambda op: op.f == "acquire")
        return Compiled(kept, kind, a, [None] * len(kept), definite, self.initial, step, None,
                        lambda locked: "held" if locked else "free")

    def requirement(self, c: Compiled, i: int) -> str:
        return "the mutex to be free" if c.a[i] else "the mutex to be held"


class MultiRegisterModel(Model):
    """Knossos's multi-register: `txn` ops whose value is a list of `[f, key, value]` with f
    `read` or `write`, applied in order to one map of registers. A read of nil is always
    legal; an ok txn's reads are its completion's; `initial` maps keys to values (absent
    keys hold nil)."""

    name = "multi-register"
    split_by_key = False
    fs = ("txn",)

    def __init__(self, initial: Any = None) -> None:
        self.initial = initial

    def compile(self, ops: list[Operation]) -> Compiled:
        init = self.initial if self.initial is not None else {}
        if not isinstance(init, dict):
            raise HistoryError(
                f"the initial value of a multi-register is a map of keys to values, not {init!r}"
            )
        keys: dict[Any, int] = {}

        def key_id(k: Any) -> int:
            h = _hashable(k)
            try:
                return keys.setdefault(h, len(keys))
            except TypeError:
                raise HistoryError(f"key {k!r} cannot be compared") from None

        start = {key_id(k): _hashable(v) for k, v in init.items()}

        def micro_ops(op: Operation) -> tuple:
            txn = op.output if op.status == "ok" else op.value
            if not isinstance(txn, (list, tuple)):
                raise HistoryError(f"a txn's value is a list of [f, key, value], got {txn!r}",
                                   index=op.call)
            micro = []
            for m in txn:
                if not isinstance(m, (list, tuple)) or len(m) != 3 or m[0] not in READS + WRITES:
                    raise HistoryError(
                        f"a txn's element is [read|write, key, value], got {m!r}", index=op.call
                    )
                f, k, v = m
                if f in READS and v is None:
                    continue  # Knossos: a nil read is always legal
                micro.append((f in WRITES, key_id(k), _hashable(v)))
            return tuple(micro)

        kept, kind, a, definite = self._generic(ops, micro_ops)
        n = len(keys)
        initial_state = tuple(start.get(i) for i in range(n))

        def step(state: tuple, micro: tuple) -> Any:
            cur = state
            for write, k, v in micro:
                if write:
                    if cur[k] != v:
                        cur = cur[:k] + (v,) + cur[k + 1:]
                elif cur[k] != v:
                    return ILLEGAL
            return cur

        names = list(keys)

        def decode(state: tuple) -> dict:
            return {str(names[i]): v for i, v in enumerate(state)}

        observers = [all(not w for w, _, _ in micro) for micro in a]
        return Compiled(kept, kind, a, [None] * len(kept), definite, initial_state, step, None,
                        decode, values=names, generic_observer=observers)

    def requirement(self, c: Compiled, i: int) -> str:
        reads = [f"{c.values[k]!r} = {_show(v)}" for w, k, v in c.a[i] if not w]
        return "registers holding " + ", ".join(reads) if reads else "nothing"


class UnorderedQueueModel(Model):
    """Knossos's unordered queue: `dequeue` takes any enqueued element, which must be there."""

    name = "unordered-queue"
    fs = ("enqueue", "dequeue")

    def __init__(self, initial: Any = None) -> None:
        self.initial = initial

    def compile(self, ops: list[Operation]) -> Compiled:
        def step(state: frozenset, p: tuple) -> Any:
            enqueue, v = p
            counts = dict(state)
            if enqueue:
                counts[v] = counts.get(v, 0) + 1
            else:
                n = counts.get(v, 0)
                if n == 0:
                    return ILLEGAL
                if n == 1:
                    del counts[v]
                else:
                    counts[v] = n - 1
            return frozenset(counts.items())

        def payload(op: Operation) -> tuple:
            value = op.output if op.f == "dequeue" and op.status == "ok" else self._value(op)
            return op.f == "enqueue", _hashable(value)

        kept, kind, a, definite = self._generic(ops, payload)
        counts: dict[Any, int] = {}
        for x in self.initial or ():
            counts[_hashable(x)] = counts.get(_hashable(x), 0) + 1
        return Compiled(kept, kind, a, [None] * len(kept), definite,
                        frozenset(counts.items()), step, None,
                        lambda s: sorted((repr(v) for v, n in s for _ in range(n))))

    def requirement(self, c: Compiled, i: int) -> str:
        enqueue, v = c.a[i]
        return "nothing" if enqueue else f"{_show(v)} among the queued elements"


MODELS: dict[str, Callable[..., Model]] = {
    "register": lambda initial=None: RegisterModel("register", initial, cas=False),
    "cas-register": lambda initial=None: RegisterModel("cas-register", initial, cas=True),
    "kv": lambda initial=None: RegisterModel("kv", initial, cas=True, append=True),
    "set": lambda initial=None: SetModel(initial),
    "queue": lambda initial=None: QueueModel(initial),
    "fifo-queue": lambda initial=None: QueueModel(initial, "fifo-queue"),
    "unordered-queue": lambda initial=None: UnorderedQueueModel(initial),
    "map": lambda initial=None: MapModel(initial),
    "mutex": lambda initial=None: MutexModel(initial),
    "multi-register": lambda initial=None: MultiRegisterModel(initial),
}

# the model `harness check` picks when none is given, by the operations a history has
_BY_OPERATION = (("txn", "multi-register"), ("acquire", "mutex"), ("release", "mutex"),
                 ("enqueue", "queue"), ("dequeue", "queue"), ("add", "set"))


def infer(fs: set[str], keyed: bool) -> str:
    """The model for a history with operations `fs` (keyed: its ops name keys)."""
    for f, name in _BY_OPERATION:
        if f in fs:
            return name
    if "append" in fs or keyed:
        return "kv"
    return "cas-register"


def get(name: str, initial: Any = _UNSET, *, knossos: bool = False) -> Model:
    """A model by name (see MODELS); `initial` overrides its initial state; `knossos` judges
    by Knossos's semantics (for Jepsen's EDN histories; see the module's docstring)."""
    try:
        factory = MODELS[name]
    except KeyError:
        raise ValueError(
            f"unknown model {name!r} (expected one of {', '.join(MODELS)})"
        ) from None
    m = factory() if initial is _UNSET else factory(initial)
    m.knossos = knossos
    return m


def for_history(hist: History, name: str | None = None, initial: Any = _UNSET) -> Model:
    """The model to check `hist` with: `name`, else its format's, else inferred from its
    operations; judged by Knossos's semantics when the history is Jepsen's EDN."""
    if name is None:
        name = hist.defaults.get("model")
    if name is None:
        fs = {op.get("f") for op in hist.ops if op.get("process") != "nemesis"}
        name = infer(fs, any(op.get("key") is not None for op in hist.ops))
    if initial is _UNSET:
        initial = hist.defaults.get("initial")
    return get(name, initial, knossos=hist.format == "edn")
