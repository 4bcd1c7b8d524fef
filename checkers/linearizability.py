"""Linearizability checking: Wing & Gong / Lowe just-in-time linearization.

The search walks a doubly-linked list of call and return entries in history order. At each step
it tries to linearize a pending op (a call entry before the first remaining return entry, the
frontier); when no pending op can go, it backtracks. Configurations are memoized as (linearized
definite ops as an int bitset, model state), as Porcupine does.

Beyond Porcupine:

- `info` ops (and never-completed invocations) get no return entry at all: they may be
  linearized at any point after their call or never, and the search succeeds once every
  definite op is linearized. Porcupine instead appends their returns at the end of the history
  and must linearize every one of them.
- They are tried only after every definite candidate, and the memo subsumes: a configuration is
  skipped when one with the same definite set and state and a *subset* of its info ops used was
  explored, since unused info ops only add choices. Identical info ops are interchangeable, so
  only the earliest-invoked unused one of each kind is tried; one without effect is not tried.
- Forced steps: an observer (a read, a failed compare) that is legal now is linearized at once
  with no alternative tried, since any linearization can be rearranged to take it here.
- With appends, values only grow between writes: a configuration is dropped as soon as a
  pending read's value no longer extends the current one and nothing can reset it.
- A read of a value nothing could have written before it returned fails before any search.
- Reads with unknown output and failed ops that did not happen are dropped before the search.
- States of the register family are interned ints (see models.py) and the op step is inlined.
- Keys are searched in turns (P-compositionality), so a violation on one key is found without
  first exhausting another.
"""

from __future__ import annotations

import bisect
import time
from collections import Counter
from collections.abc import Generator
from typing import Any

from checkers import models as _models
from checkers.history import HistoryError, Operation, pair
from checkers.models import ILLEGAL, Compiled, Model, RegisterModel

try:  # the register family in C, built with the package where a compiler is
    from checkers import _linfast
except ImportError:  # pragma: no cover - a build without it: the Python search decides alone
    _linfast = None

__all__ = ["check", "check_operations", "HistoryError"]

_CHECK_EVERY = 0x1FFF  # configurations between two looks at the clock and the cache size


class _Budget:
    def __init__(self, time_limit: float, memory_limit_mb: float) -> None:
        self.start = time.monotonic()
        self.deadline = self.start + time_limit
        self.time_limit = time_limit
        self.memory_limit = int(memory_limit_mb * 1024 * 1024)
        self.memory_limit_mb = memory_limit_mb


class _Outcome:
    __slots__ = ("valid", "reason", "configurations", "fail_op", "best_ops", "best_state",
                 "cache_size", "unwritten", "stale")

    def __init__(self) -> None:
        self.valid: Any = True
        self.reason: str | None = None
        self.configurations = 0
        self.fail_op = -1  # the op that could not be linearized (index into Compiled.ops)
        self.best_ops: list[int] = []  # the longest linearizable prefix found, in order
        self.best_state: Any = None
        self.cache_size = 0
        # set when fail_op needs a value that no op invoked before it returned could write
        self.unwritten = False
        # (last writer or -1 for the initial value, overwriter) when fail_op needs a value
        # that a definite op overwrote after every op that could write it (_impossible_read)
        self.stale: tuple[int, int] | None = None


def _entry_bytes(n_bits: int) -> int:
    # a cache entry: dict slot + key int (+ an info mask): about 100 bytes measured with
    # tracemalloc; doubled for a dict's resizing (old and new table at once) and allocator slack
    return 190 + n_bits // 7


def _account(used: list[int], old: int, new: int) -> int:
    used[0] += new - old
    return new


def _impossible_read(c: Compiled) -> tuple[int, int, int] | None:
    """A definite read (or cas) that no linearization explains, found without a search:
    (op, -2, -2) when it needs a value no op invoked before it returned could have written,
    and that is not the initial value; (op, last writer or -1 for the initial value,
    replacing op) for a stale read, of a value that a definite write or cas replaced after
    every op that could write it had returned, and before the read was invoked. The one that
    returns first; None when there is none. Register family only (appends build values from
    others).

    A stale read is refuted because the value's writers all take effect before the replacing
    op, which takes effect before the read, and nothing puts the value back (a replacing op
    invoked after the value's last writer returned cannot itself write it). Both are cheap
    necessary conditions: they refute at once reads of garbage, of a failed write's value,
    and stale reads, which the search would have to exhaust every order of the crashed ops
    to refute.
    """
    if c.step is not None or 5 in c.kind:
        return None
    ops, kind, A, B, definite = c.ops, c.kind, c.a, c.b, c.definite
    inf = float("inf")
    first: dict[Any, int] = {}  # value -> first invocation of an op that may write it
    last: dict[Any, tuple[float, int]] = {c.init: (-1, -1)}  # value -> (last return, writer)
    setters: list[tuple[int, int, int]] = []  # definite writes and cas: (call, return, op)
    for i, op in enumerate(ops):
        k = kind[i]
        if k == 1 or k == 2 or k == 4:
            v = A[i] if k == 1 else B[i]
            call = op.call
            if call < first.get(v, inf):
                first[v] = call
            ret = op.ret if definite[i] else inf
            if ret > last.get(v, (-2, -1))[0]:
                last[v] = (ret, i)
            if k != 4 and definite[i]:
                setters.append((call, ret, i))  # type: ignore[arg-type]
    setters.sort()
    calls = [x[0] for x in setters]
    # suffix minimum of the setters' returns, by invocation: (return, op)
    suffix: list[tuple[int, int]] = [(0, 0)] * len(setters)
    if setters:
        best = (setters[-1][1], setters[-1][2])
        for n in range(len(setters) - 1, -1, -1):
            if setters[n][1] < best[0]:
                best = (setters[n][1], setters[n][2])
            suffix[n] = best
    init = c.init
    found: tuple[int, int, int] | None = None
    found_ret: float = inf
    for i, op in enumerate(ops):
        k = kind[i]
        if (k != 0 and k != 2) or not definite[i] or op.ret >= found_ret:  # type: ignore
            continue
        need = A[i]
        if need != init and first.get(need, inf) > op.ret:  # type: ignore[operator]
            found, found_ret = (i, -2, -2), op.ret  # type: ignore[assignment]
            continue
        w = last.get(need)
        if w is None or w[0] == inf:
            continue  # a crashed op may write it at any time
        n = bisect.bisect_right(calls, w[0])
        if n < len(setters) and suffix[n][0] < op.call:
            found, found_ret = (i, w[1], suffix[n][1]), op.ret  # type: ignore[assignment]
    return found


def _search(c: Compiled, budget: _Budget, used: list[int] | None = None) -> Generator[
    None, None, _Outcome
]:
    """Is the compiled object history linearizable? A generator that yields every few thousand
    configurations (so several keys can be searched in turns) and returns an _Outcome.

    `used` is a one-element list with the bytes of the caches of all searches in progress, so
    that the memory budget is for all of them together.

    A used info op must be seen: a blind write right after it would hide its effect, and
    the same linearization without that info op is just as good. So no write is tried right
    after an info op; such a configuration is memoized with bit 0 of its mask set, which makes
    it subsumed by, but not subsuming, the same configuration reached otherwise.

    Definite ops live in the linked list of call and return entries. Info ops are kept apart,
    in classes of identical ones: one is available once it was invoked before the first
    remaining return entry (the frontier), and is tried only after every definite candidate,
    so that a configuration is first reached with as few info ops used as possible, and later
    visits with more are subsumed.
    """
    used = used if used is not None else [0]
    out = _Outcome()
    ops = c.ops
    n = len(ops)
    definite = c.definite
    events: list[tuple[int, int, bool]] = []
    bitv = [0] * n
    info_ops: list[int] = []
    n_def = 0
    for i, op in enumerate(ops):
        if definite[i]:
            events.append((op.call, i, True))
            events.append((op.ret, i, False))  # type: ignore[arg-type]
            bitv[i] = 1 << n_def
            n_def += 1
        else:
            info_ops.append(i)
    if n_def == 0:
        return out
    bad = _impossible_read(c)
    if bad is not None:
        out.valid = False
        out.fail_op = bad[0]
        out.best_state = c.init
        if bad[1] == -2:
            out.unwritten = True
        else:
            out.stale = bad[1:]
        return out
    events.sort()
    n_ent = len(events)
    # entry 0 is the head sentinel, entries 1..n_ent the events, n_ent + 1 a tail sentinel
    # never reached (a return entry always precedes it while a definite op is left)
    tail = n_ent + 1
    nx = list(range(1, n_ent + 2)) + [tail]
    pv = [0] + list(range(0, n_ent + 1))
    entry_op = [0] * (n_ent + 2)
    entry_pos = [0] * (n_ent + 2)
    # match[e]: for a call entry, its return entry; -1 for a return entry
    match = [-1] * (n_ent + 2)
    call_entry = [0] * n
    for e, (pos, i, is_call) in enumerate(events, 1):
        entry_op[e] = i
        entry_pos[e] = pos
        if is_call:
            call_entry[i] = e
        else:
            match[call_entry[i]] = e

    # Info ops, grouped in classes of identical ones (same kind and arguments), each class in
    # invocation order. Identical info ops are interchangeable once invoked, since none has a
    # return, so a class is used in order: the candidate of class q is its op number used[q].
    # Classes are sorted by their first invocation, so a scan can stop at the first class not
    # yet invoked at the frontier.
    info_ops.sort(key=lambda i: ops[i].call)
    classes: dict[Any, list[int]] = {}
    for i in info_ops:
        try:
            classes.setdefault((c.kind[i], c.a[i], c.b[i]), []).append(i)
        except TypeError:
            classes[("unhashable", i)] = [i]  # no symmetry for it
    cops = list(classes.values())  # dict order is first invocation order
    n_cls = len(cops)
    ccall = [[ops[i].call for i in q] for q in cops]
    cfirst = [q[0] for q in ccall]
    clen = [len(q) for q in cops]
    # bit 0 of a memo mask marks a configuration just reached by an info op (see below)
    bit_of = {i: 2 << j for j, i in enumerate(info_ops)}
    cbits = [[bit_of[i] for i in q] for q in cops]
    used_in = [0] * n_cls
    info_base = tail + 1  # stack frames >= info_base are a use of class frame - info_base

    kind, A, B = c.kind, c.a, c.b
    observer = c.observers()
    step_fn, append_fn = c.step, c.append
    amemo: list[dict[Any, Any]] = [{} for _ in range(n)] if append_fn else []
    values, value_ids = c.values, c.value_ids
    if step_fn is not None:
        # Generic models' states (frozensets, tuples) are interned to ints here, so the memo
        # key is one int for every model.
        gstates: list[Any] = [c.init]
        gids: dict[Any, int] = {c.init: 0}
        raw_step = step_fn

        def step_fn(sid: int, payload: Any) -> Any:
            st = raw_step(gstates[sid], payload)
            if st is ILLEGAL:
                return st
            r = gids.get(st)
            if r is None:
                r = gids[st] = len(gstates)
                gstates.append(st)
            return r

        s = 0
    else:
        s = c.init
    # memo key: (definite set << 32) | state id, one int (a tuple costs twice the memory)
    cache: dict[int, Any] = {}
    cache_get = cache.get
    # The stack of linearized ops: a definite op's call entry (negated when the step was
    # forced, see below) or info_base + j for info op j; and the state before it.
    st_e: list[int] = []
    st_s: list[Any] = []
    push_e, push_s = st_e.append, st_s.append
    pop_e, pop_s = st_e.pop, st_s.pop
    D = 0  # linearized definite ops
    I = 0  # noqa: E741 - linearized info ops
    remaining = n_def
    best_e = 0
    best_frames: list[int] = []
    configurations = 0
    entry_cost = _entry_bytes(n_def)
    mask_cost = 48 + len(info_ops) // 8  # a mask in a list of incomparable ones
    masks = 0  # how many such masks the cache holds
    accounted = 0  # bytes of this search's cache counted in used[0]
    forced_scan = True
    forced_hits = 0
    e = nx[0]  # cursor over the definite candidates
    j = -1  # cursor over the info ops (>= 0 once the definite candidates are exhausted)
    frontier = 0
    pushed = dead = False  # set on every path that reaches the code after the scan
    # Values that grow (appends): resets[i] and iresets[i] are, for a read i, the definite and
    # the info writes and cases that could set the value before it returns.
    grow_only = 5 in kind
    resets = [0] * n
    iresets = [0] * n
    if grow_only:
        for target, mine in ((resets, True), (iresets, False)):
            setters = sorted(
                (ops[i].call, bitv[i] if mine else bit_of[i]) for i in range(n)
                if definite[i] == mine and kind[i] in (1, 2, 4)
            )
            set_calls = [call for call, _ in setters]
            upto = [0]  # upto[k]: the first k setters, by invocation
            for _, b in setters:
                upto.append(upto[-1] | b)
            for i in range(n):
                if kind[i] == 0 and definite[i]:
                    target[i] = upto[bisect.bisect_left(set_calls, ops[i].ret)]
    while True:
        if j < 0:
            r = match[e]
            if r > 0:
                # a definite op's call entry: try to linearize it now
                i = entry_op[e]
                k = kind[i]
                if k == 0:  # READ
                    if s != A[i]:
                        e = nx[e]
                        continue
                    ns = s
                elif k == 1:  # WRITE
                    if st_e and st_e[-1] >= info_base:
                        e = nx[e]  # it would hide the info op just used (see below)
                        continue
                    ns = A[i]
                elif k == 2:  # CAS
                    if s != A[i]:
                        e = nx[e]
                        continue
                    ns = B[i]
                elif k == 3:  # CAS_FAILED
                    if s == A[i]:
                        e = nx[e]
                        continue
                    ns = s
                elif k == 5:  # APPEND, inlined: nearly every append makes a new state
                    am = amemo[i]
                    ns = am.get(s)
                    if ns is None:
                        nv = values[s]
                        nv = A[i] if nv is None else nv + A[i]
                        ns = value_ids.get(nv)
                        if ns is None:
                            ns = value_ids[nv] = len(values)
                            values.append(nv)
                        am[s] = ns
                else:
                    ns = step_fn(s, A[i])  # type: ignore[misc]
                    if ns is ILLEGAL:
                        e = nx[e]
                        continue
                nD = D | bitv[i]
                key = (nD << 32) | ns
                prev = cache_get(key)
                dominated = False
                if prev is None:
                    cache[key] = I
                elif prev.__class__ is int:
                    if prev & I == prev:
                        dominated = True  # seen with no more info ops used: nothing new below
                    elif I & prev == I:
                        cache[key] = I
                    else:
                        cache[key] = [prev, I]
                        masks += 2
                else:
                    for m in prev:
                        if m & I == m:
                            dominated = True
                            break
                    else:
                        masks -= len(prev)
                        prev[:] = [m for m in prev if m & I != I]
                        prev.append(I)
                        masks += len(prev)
                # A definite observer (an op that never changes the state: a read, a failed
                # compare) that is legal now can be linearized now without loss: in any
                # linearization from here it can be moved to this point, since it changes
                # nothing wherever it is. So it is forced: no other choice is tried here. (A
                # write of the current value is not: later, the same write may matter.)
                forced = observer[i]
                if not dominated:
                    push_e(-e if forced else e)
                    push_s(s)
                    s = ns
                    D = nD
                    remaining -= 1
                    if remaining == 0:
                        out.configurations = configurations + 1
                        out.cache_size = len(cache)
                        _account(used, accounted, 0)
                        return out
                    p = pv[e]
                    q = nx[e]
                    nx[p] = q
                    pv[q] = p
                    p = pv[r]
                    q = nx[r]
                    nx[p] = q
                    pv[q] = p
                    pushed = True
                elif not forced:
                    e = nx[e]
                    continue
                else:
                    dead = True  # a forced step into an explored configuration
                    pushed = False
            else:
                # the frontier: a return entry whose op is not linearized yet. Before giving
                # up on this configuration, try the info ops invoked before it.
                if e > best_e:
                    best_e = e  # the furthest point reached so far
                    best_frames = st_e[:]
                    out.best_state = s
                frontier = entry_pos[e]
                j = 0
                pushed = dead = False
        if j >= 0 and not dead:
            while j < n_cls:
                if cfirst[j] >= frontier:
                    j = n_cls  # this class and the later ones were invoked after it
                    break
                u = used_in[j]
                if u == clen[j] or ccall[j][u] >= frontier:
                    j += 1
                    continue
                bit = cbits[j][u]
                i = cops[j][u]
                k = kind[i]
                if k == 1:  # WRITE
                    if st_e and st_e[-1] >= info_base:
                        j += 1
                        continue
                    ns = A[i]
                elif k == 4:  # CAS_ANY: ran or not, its compare decides
                    ns = B[i] if s == A[i] else s
                elif k == 5:  # APPEND
                    nv = values[s]
                    nv = A[i] if nv is None else nv + A[i]
                    ns = value_ids.get(nv)
                    if ns is None:
                        ns = value_ids[nv] = len(values)
                        values.append(nv)
                else:
                    ns = step_fn(s, A[i])  # type: ignore[misc]
                    if ns is ILLEGAL:
                        j += 1
                        continue
                if ns == s:
                    j += 1  # no effect here: the same as not using it
                    continue
                nI = I | bit | 1
                key = (D << 32) | ns
                prev = cache_get(key)
                if prev is None:
                    cache[key] = nI
                elif prev.__class__ is int:
                    if prev & nI == prev:
                        j += 1
                        continue
                    if nI & prev == nI:
                        cache[key] = nI
                    else:
                        cache[key] = [prev, nI]
                        masks += 2
                else:
                    for m in prev:
                        if m & nI == m:
                            break
                    else:
                        m = -1
                    if m >= 0:
                        j += 1
                        continue
                    masks -= len(prev)
                    prev[:] = [m for m in prev if m & nI != nI]
                    prev.append(nI)
                    masks += len(prev)
                push_e(info_base + j)
                push_s(s)
                used_in[j] = u + 1
                s = ns
                I = nI ^ 1  # noqa: E741
                pushed = True
                break
        if pushed:
            # A new configuration: take a forced step first if there is one, since it costs
            # no branching and shrinks what the other choices must consider.
            e = nx[0]
            j = -1
            if grow_only and s != st_s[-1]:
                # Appends only lengthen the value: a pending read of a value that does not
                # extend the new one can never be satisfied, unless a write still to come
                # resets it. Then this configuration is dead already.
                sv = values[s]
                f = e
                while True:
                    r = match[f]
                    if r < 0:
                        break
                    i = entry_op[f]
                    if kind[i] == 0 and not resets[i] & ~D and not iresets[i] & ~I:
                        rv = values[A[i]]
                        if sv is not None and (rv is None or not rv.startswith(sv)):
                            break
                    f = nx[f]
                if r >= 0:
                    pushed = False  # to the backtrack below
            if pushed and forced_scan:
                f = e
                while True:
                    r = match[f]
                    if r < 0:
                        break
                    i = entry_op[f]
                    k = kind[i]
                    if k == 0:
                        if s == A[i]:
                            e = f
                            break
                    elif k == 3:
                        if s != A[i]:
                            e = f
                            break
                    elif k == 6 and observer[i]:
                        if step_fn(s, A[i]) is not ILLEGAL:  # type: ignore[misc]
                            e = f
                            break
                    f = nx[f]
                if r >= 0:
                    forced_hits += 1
                if configurations == 4096 and forced_hits < 256:
                    # rarely pays here (e.g. appends, whose reads seldom match early)
                    forced_scan = False
            configurations += 1
            if configurations & _CHECK_EVERY == 0:
                accounted = _account(
                    used, accounted, len(cache) * entry_cost + masks * mask_cost
                )
                out.configurations = configurations
                yield
                if time.monotonic() > budget.deadline:
                    out.valid = "unknown"
                    out.reason = (
                        f"time limit of {budget.time_limit:g} s reached after "
                        f"{configurations} configurations"
                    )
                    break
                if used[0] > budget.memory_limit:
                    out.valid = "unknown"
                    out.reason = (
                        f"memory limit of {budget.memory_limit_mb:g} MB reached "
                        f"({len(cache)} memoized configurations)"
                    )
                    break
            if pushed:
                continue
        # Backtrack: undo the last choice (and the forced steps after it), try the next one.
        while True:
            if not st_e:
                out.valid = False
                break
            fr = pop_e()
            s = pop_s()
            if fr >= info_base:
                j = fr - info_base
                u = used_in[j] - 1
                used_in[j] = u
                I ^= cbits[j][u]  # noqa: E741
                j += 1
                dead = False
                # back in the parent configuration: its frontier is the first return entry
                f = nx[0]
                while match[f] > 0:
                    f = nx[f]
                frontier = entry_pos[f]
                break
            forced = fr < 0
            if forced:
                fr = -fr
            i = entry_op[fr]
            r = match[fr]
            D ^= bitv[i]
            remaining += 1
            pv[nx[r]] = r
            nx[pv[r]] = r
            pv[nx[fr]] = fr
            nx[pv[fr]] = fr
            if not forced:
                e = nx[fr]
                j = -1
                break
        if out.valid is False:
            break
    out.configurations = configurations
    out.cache_size = len(cache)
    if step_fn is not c.step:
        out.best_state = gstates[out.best_state or 0]
    if best_e:
        out.fail_op = entry_op[best_e]
        seen = [0] * n_cls
        for x in best_frames:
            if x >= info_base:
                q = x - info_base
                out.best_ops.append(cops[q][seen[q]])
                seen[q] += 1
            else:
                out.best_ops.append(entry_op[x if x > 0 else -x])
    _account(used, accounted, 0)
    return out


def _split(paired: list[Operation]) -> dict[Any, list[Operation]]:
    groups: dict[Any, list[Operation]] = {}
    for op in paired:
        k = op.key
        try:
            g = groups.get(k)
        except TypeError:
            k = repr(k)  # an unhashable key (a list): its printed form names it
            g = groups.get(k)
        if g is None:
            groups[k] = g = []
        g.append(op)
    return groups


def _resolve_model(model: str | Model, initial: Any) -> Model:
    if isinstance(model, Model):
        return model
    if initial is _UNSET:
        return _models.get(model)
    return _models.get(model, initial)


_UNSET = object()


def check(
    ops: list[dict],
    model: str | Model = "cas-register",
    *,
    time_limit: float = 60.0,
    memory_limit_mb: float = 1024,
    initial: Any = _UNSET,
    explain: bool = True,
    all_keys: bool = False,
    validated: bool = False,
) -> dict[str, Any]:
    """Check a history (DESIGN.md op dicts, in history order) for linearizability.

    The history is split by `key` and each key checked on its own (P-compositionality).
    Returns `{"valid": True | False | "unknown", "reason": str | None, ...}`; when invalid,
    `failure` explains the first failing key found (see explain.py); the search stops there
    unless `all_keys`; `validated`: the ops come from a reader of formats.py, which validated
    each. `info` ops may take effect at any time after their invocation, or
    never; `fail` ops did not happen. Raises HistoryError when the
    history makes no sense (unpaired events, an op the model does not know).
    """
    budget = _Budget(time_limit, memory_limit_mb)
    m = _resolve_model(model, initial)
    if _linfast is not None and type(m) is RegisterModel and type(ops) is list:
        fast = _fast(ops, m, budget, explain, all_keys, validated)
        if fast is not None:
            return fast
    paired = pair(ops, validated)
    return _check_paired(paired, m, budget, explain, all_keys)


# configurations per op the C search may visit before it leaves the history to Python's,
# which has the memo's subsumption of crashed ops; valid histories need about one
FAST_CONFIGURATIONS_PER_OP = 64


def _fast(ops: list[dict], m: RegisterModel, budget: _Budget, explain: bool, all_keys: bool,
          validated: bool) -> dict[str, Any] | None:
    """The C checker's verdict, when it reaches one this call may report: valid, or invalid
    on the first failing key when no explanation is to be built (the explanation is the
    Python checker's). None: the Python checker decides."""
    got = _linfast.check(ops, validated, m.cas, m.allow_append, m.initial, m.knossos,
                         budget.deadline,
                         FAST_CONFIGURATIONS_PER_OP, budget.memory_limit)
    if got is None:
        return None
    valid, failed_key, n, ok, fail, info, keys, configurations = got
    if valid is False and (explain or all_keys):
        return None
    result: dict[str, Any] = {
        "valid": valid,
        "reason": None if valid else f"not linearizable on key(s) {[failed_key]!r}",
        "model": m.name,
        "ops": n,
        "ok": ok,
        "fail": fail,
        "info": info,
        "keys": keys,
        "configurations": configurations,
    }
    if valid is False:
        result["failed_keys"] = [failed_key]
        if keys > 1:
            result["unchecked_keys"] = keys - 1
    result["seconds"] = round(time.monotonic() - budget.start, 6)
    return result


def check_operations(
    paired: list[Operation],
    model: str | Model = "cas-register",
    *,
    time_limit: float = 60.0,
    memory_limit_mb: float = 1024,
    initial: Any = _UNSET,
    explain: bool = True,
    all_keys: bool = False,
) -> dict[str, Any]:
    """`check` on already paired operations (history.pair)."""
    budget = _Budget(time_limit, memory_limit_mb)
    return _check_paired(paired, _resolve_model(model, initial), budget, explain, all_keys)


def _check_paired(
    paired: list[Operation], m: Model, budget: _Budget, explain: bool, all_keys: bool = False
) -> dict[str, Any]:
    groups = _split(paired) if m.split_by_key else {None: paired}
    failed: list[Any] = []
    unknown: list[Any] = []
    unknown_reason: str | None = None
    failure: dict[str, Any] | None = None
    configurations = 0
    status = Counter(op.status for op in paired)
    # Compile every key first: a history the model cannot read is bad input, whatever the
    # search would say about the other keys.
    compiled = [(key, m.compile(group), group) for key, group in groups.items()]
    used = [0]
    # The keys are searched in turns, a slice each, like Porcupine's parallel partitions: a
    # violation on a cheap key is found without first exhausting an expensive one.
    active = [(key, c, group, _search(c, budget, used)) for key, c, group in compiled]
    stop = False
    while active and not stop:
        still = []
        for item in active:
            key, c, group, gen = item
            try:
                next(gen)
            except StopIteration as done:
                outcome: _Outcome = done.value
                configurations += outcome.configurations
                if outcome.valid is False:
                    failed.append(key)
                    if failure is None and explain:
                        from checkers.explain import explain_failure

                        failure = explain_failure(m, c, outcome, key, group)
                    if not all_keys:
                        stop = True
                        break
                elif outcome.valid == "unknown":
                    unknown.append(key)
                    if unknown_reason is None:
                        where = f" on key {key!r}" if key is not None else ""
                        unknown_reason = f"{outcome.reason}{where}"
                continue
            still.append(item)
        active = still
    unchecked = [key for key, _, _, gen in active]
    for *_, gen in active:
        gen.close()
    result: dict[str, Any] = {
        "valid": True,
        "reason": None,
        "model": m.name,
        "ops": len(paired),
        "ok": status.get("ok", 0),
        "fail": status.get("fail", 0),
        "info": status.get("info", 0),
        "keys": len(groups),
        "configurations": configurations,
    }
    if failed:
        result["valid"] = False
        result["failed_keys"] = failed
        if failure is not None:
            result["reason"] = failure["message"]
            result["failure"] = failure
        else:
            result["reason"] = f"not linearizable on key(s) {failed!r}"
        if unchecked:
            # a verdict of false needs one failing key; the rest were not searched to the end
            result["unchecked_keys"] = len(unchecked)
    elif unknown:
        result["valid"] = "unknown"
        result["reason"] = unknown_reason
    elif not paired:
        # Nothing passes on nothing.
        result["valid"] = "unknown"
        result["reason"] = "the history has no operations"
    if unknown:
        result["unknown_keys"] = unknown
    result["seconds"] = round(time.monotonic() - budget.start, 6)
    return result
