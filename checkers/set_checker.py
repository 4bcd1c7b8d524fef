"""The set workload: unique adds to one key, then final reads after recovery.

Every final read starts after every add has completed (or was abandoned as indeterminate), so
each final read must contain every acknowledged add. Outcomes per element:

- lost: acknowledged (`ok`) but missing from a final read;
- unexpected: present in a final read but never attempted, or its add `fail`ed (did not happen);
- recovered: its add was indeterminate (`info`) and it is present: it did happen;
- also a value seen by one final read and missing from a later one (it disappeared) is lost.
"""

from __future__ import annotations

from typing import Any

from checkers.perf import Op, pair_ops

MAX_LISTED = 50


def _as_set(value: Any) -> set | None:
    if value is None:
        return set()  # a read of a key never written: the empty set
    if isinstance(value, (list, tuple, set, frozenset)):
        try:
            return set(value)
        except TypeError:
            return None
    return None


def _sorted(xs: set) -> list:
    try:
        return sorted(xs)
    except TypeError:
        return sorted(xs, key=repr)


def _listed(items: list[Any], limit: int = 10) -> str:
    """`3, 7, 9` (and `...` past the limit): elements in words, not a Python list."""
    shown = ", ".join(str(x) for x in items[:limit])
    return shown + (" ..." if len(items) > limit else "")


def check(history: list[dict], key: Any = "set",
          final_reads_start: int | None = None) -> dict[str, Any]:
    """`final_reads_start`: ns on the history clock where the final-reads phase began; reads
    invoked from then on are final reads. None: every ok read of `key` is a final read."""
    ops = pair_ops(history)
    adds = [o for o in ops if o.f == "add" and o.key == key]
    reads = [o for o in ops if o.f == "read" and o.key == key and o.status == "ok"
             and (final_reads_start is None or o.start >= final_reads_start)]
    attempted: dict[Any, str] = {}
    for o in adds:
        # several adds of one element (not expected from the workload): the strongest outcome
        prev = attempted.get(o.value)
        rank = {"ok": 2, "info": 1, "fail": 0}
        if prev is None or rank[o.status] > rank[prev]:
            attempted[o.value] = o.status
    ok_adds = {v for v, s in attempted.items() if s == "ok"}
    info_adds = {v for v, s in attempted.items() if s == "info"}
    failed_adds = {v for v, s in attempted.items() if s == "fail"}

    read_sets: list[tuple[Op, set]] = []
    malformed: list[int] = []
    for r in reads:
        s = _as_set(r.output)
        if s is None:
            malformed.append(r.invoke_index)
        else:
            read_sets.append((r, s))

    seen_any: set = set().union(*(s for _, s in read_sets)) if read_sets else set()
    lost: set = set()
    for _, s in read_sets:
        lost |= ok_adds - s
    disappeared: set = set()
    for r1, s1 in read_sets:
        for r2, s2 in read_sets:
            if r1.end is not None and r2.start > r1.end:
                disappeared |= s1 - s2
    never = seen_any - set(attempted)
    failed_present = seen_any & failed_adds
    unexpected = never | failed_present
    recovered = seen_any & info_adds
    result: dict[str, Any] = {
        "valid": True,
        "reason": None,
        "attempted": len(attempted),
        "acknowledged": len(ok_adds),
        "failed": len(failed_adds),
        "indeterminate": len(info_adds),
        "final_reads": len(read_sets),
        "read_counts": [len(s) for _, s in read_sets],
        "ok_count": len(ok_adds - lost - disappeared),
        "lost_count": len(lost | disappeared),
        "lost": _sorted(lost | disappeared)[:MAX_LISTED],
        "disappeared": _sorted(disappeared)[:MAX_LISTED],
        "unexpected_count": len(unexpected),
        "unexpected": _sorted(unexpected)[:MAX_LISTED],
        "never_attempted": _sorted(never)[:MAX_LISTED],
        "failed_but_present": _sorted(failed_present)[:MAX_LISTED],
        "recovered_count": len(recovered),
        "recovered": _sorted(recovered)[:MAX_LISTED],
        "indeterminate_absent": len(info_adds - seen_any),
    }
    if malformed:
        result["malformed_reads"] = malformed[:MAX_LISTED]
    problems = []
    if lost or disappeared:
        everything = _sorted(lost | disappeared)
        problems.append(f"{len(everything)} acknowledged add(s) lost: "
                        f"{_listed(everything)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected element(s) "
                        f"(never added or add failed): {_listed(_sorted(unexpected))}")
    if problems:
        result["valid"] = False
        result["reason"] = "; ".join(problems)
    elif not read_sets:
        result["valid"] = "unknown"
        why = " (some returned something other than a list)" if malformed else ""
        result["reason"] = f"no final read of {key!r} succeeded{why}: nothing to judge"
    elif not ok_adds:
        result["valid"] = "unknown"
        result["reason"] = "no add was acknowledged: a pass would be vacuous"
    return result
