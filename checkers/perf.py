"""Latency, throughput and node-counter statistics over the windows of a run.

Pure library: history ops (DESIGN.md shape, with `time` in ns), phases (`phases.json`) and status
samples (`status-samples.json`) in; plain dicts out. Nothing here gives a verdict.

An operation belongs to the window in which it was *invoked*: its latency is what a client that
started during that window saw, even if a fault that began later stretched it.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

NEMESIS = "nemesis"
WINDOWS = ("warmup", "faults", "recovery")
# `messages`: messages between members (Maelstrom's `net` figure; the Maelstrom bridge counts
# them), None for a system that does not report it.
COUNTERS = ("elections", "phase1_rounds", "phase2_rounds", "commits", "messages")
# status-sample label that opens each window; a window closes at the next window's label
_OPENING_LABEL = {"warmup": "warmup-start", "faults": "faults-start", "recovery": "recovery-start"}


@dataclass(slots=True)
class Op:
    """A client operation: invocation paired with its completion (status "info" when none)."""

    process: Any
    f: str
    key: Any
    value: Any  # invoked value
    output: Any  # completion value
    status: str  # ok | fail | info
    start: int  # ns
    end: int | None  # ns; None when never completed
    error: Any = None
    client: Any = None
    seq: Any = None
    node: Any = None
    invoke_index: int = 0
    complete_index: int | None = None

    @property
    def latency_ns(self) -> int | None:
        return None if self.end is None else self.end - self.start

    def to_dict(self) -> dict[str, Any]:
        d = {"process": self.process, "f": self.f, "key": self.key, "value": self.value,
             "status": self.status, "start": self.start, "end": self.end,
             "invoke_index": self.invoke_index}
        if self.output is not None:
            d["output"] = self.output
        if self.error is not None:
            d["error"] = self.error
        if self.client is not None:
            d["client"], d["seq"] = self.client, self.seq
        return d


def pair_ops(history: list[dict]) -> list[Op]:
    """Pair client invocations with their completions, by process, in history order.

    Tolerant by design (reports must render even for odd histories): a completion with no
    pending invocation is dropped; an invocation never completed stays `info` with no end.
    """
    pending: dict[Any, Op] = {}
    out: list[Op] = []
    for pos, op in enumerate(history):
        proc = op.get("process")
        if proc == NEMESIS:
            continue
        t = op.get("type")
        try:
            hash(proc)
        except TypeError:
            continue
        if t == "invoke":
            o = Op(process=proc, f=op.get("f", "?"), key=op.get("key"), value=op.get("value"),
                   output=None, status="info", start=int(op.get("time") or 0), end=None,
                   client=op.get("client"), seq=op.get("seq"), node=op.get("node"),
                   invoke_index=op.get("index", pos))
            pending[proc] = o
            out.append(o)
        elif t in ("ok", "fail", "info"):
            o = pending.pop(proc, None)
            if o is None:
                continue
            o.status = t
            o.end = int(op.get("time") or o.start)
            o.output = op.get("value")
            o.error = op.get("error")
            o.complete_index = op.get("index", pos)
            if o.client is None:
                o.client, o.seq = op.get("client"), op.get("seq")
    return out


def quantile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank quantile (the value some op really had, not an interpolation)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def latency_summary(latencies_ms: list[float]) -> dict[str, Any]:
    s = sorted(latencies_ms)
    return {"count": len(s), "p50": _r(quantile(s, 0.50)), "p95": _r(quantile(s, 0.95)),
            "p99": _r(quantile(s, 0.99)), "max": _r(s[-1] if s else None)}


def _r(v: float | None, digits: int = 3) -> float | None:
    return None if v is None else round(v, digits)


def window_bounds(phases: list[dict]) -> dict[str, tuple[int, int]]:
    """(start, end) in ns of each of warmup/faults/recovery present in phases.json."""
    bounds = {}
    for p in phases or []:
        if p.get("name") in WINDOWS and p.get("start") is not None:
            end = p.get("end")
            bounds[p["name"]] = (int(p["start"]), int(end) if end is not None else int(p["start"]))
    return bounds


RESTART_SLACK_S = 1.0  # a status reply can lag its sample's timestamp by up to this much


def _restarted_between(a: dict, b: dict, elapsed_s: float) -> bool:
    """Whether a node's process at the closing sample is younger than the window, so it began
    inside it (uptime is monotonic: a pause does not stop it). Only the closing uptime counts:
    a slow reply at the opening sample must not look like a restart."""
    ub = b.get("uptime_s")
    if not isinstance(ub, (int, float)) or not isinstance(a.get("uptime_s"), (int, float)):
        return False
    return ub + RESTART_SLACK_S < elapsed_s


def _counter_delta(samples: list[dict], window: str) -> dict[str, Any] | None:
    """Counter increments summed over nodes between the status samples that bound a window."""
    by_label = {s.get("label"): s for s in samples or []}
    opening = by_label.get(_OPENING_LABEL[window])
    if opening is None:
        return None
    later = [s for s in samples if s.get("time", 0) > opening.get("time", 0)]
    closing = min(later, key=lambda s: s.get("time", 0)) if later else None
    if closing is None:
        return None
    totals: Counter = Counter()
    per_node: dict[str, dict[str, int]] = {}
    missing: list[str] = []
    restarted: list[str] = []
    seen: set[str] = set()
    elapsed_s = (closing.get("time", 0) - opening.get("time", 0)) / 1e9
    chosen_start, chosen_end = [], []
    for node in sorted(set(opening.get("nodes") or {}) | set(closing.get("nodes") or {})):
        a = (opening.get("nodes") or {}).get(node)
        b = (closing.get("nodes") or {}).get(node)
        if not a or not b:
            # paused, killed or partitioned away from the controller at a boundary
            missing.append(node)
            continue
        if isinstance(a.get("chosen"), int) and isinstance(b.get("chosen"), int):
            chosen_start.append(a["chosen"])
            chosen_end.append(b["chosen"])
        ca, cb = a.get("counters") or {}, b.get("counters") or {}
        if _restarted_between(a, b, elapsed_s) or any(
                isinstance(ca.get(n), int) and isinstance(cb.get(n), int) and cb[n] < ca[n]
                for n in COUNTERS):
            # counters are per process: what it counted before the restart is gone, so the
            # window's sums are unknown, not the smaller figure the new process reports
            restarted.append(node)
            per_node[node] = None
            continue
        node_delta = {}
        for name in COUNTERS:
            x, y = ca.get(name), cb.get(name)
            if not isinstance(x, int) or not isinstance(y, int):
                continue
            node_delta[name] = y - x
            totals[name] += y - x
            seen.add(name)
        per_node[node] = node_delta
    # No node answered at both boundaries, or no node reports that counter (a system
    # without Phase-1 rounds): unknown, not zero.
    out: dict[str, Any] = {name: totals.get(name, 0) if name in seen and not restarted
                           else None for name in COUNTERS}
    # Slots chosen cluster-wide: the highest chosen index moved by this much. Unambiguous whether
    # a node's `commits` counts slots it led or slots it learned.
    out["slots_chosen"] = (max(chosen_end) - max(chosen_start)) if chosen_end else None
    out["nodes"] = per_node
    out["approximate"] = bool(missing or restarted)
    if missing:
        out["unreachable"] = missing
    if restarted:
        out["restarted"] = sorted(set(restarted))
    commits = out["slots_chosen"] if out["slots_chosen"] else out["commits"]
    if commits and out["phase1_rounds"] is not None:
        ratio = out["phase1_rounds"] / commits
        out["phase1_per_commit"] = round(ratio, 4)
        # One Phase-1 round taken as one commit that needed it: classic Paxos (a Phase 1 per
        # slot) gives 0, a stable Multi-Paxos leader gives 1.
        out["fast_path_fraction"] = round(max(0.0, 1.0 - ratio), 4)
    else:
        out["phase1_per_commit"] = None
        out["fast_path_fraction"] = None
    return out


def longest_outage(ops: list[Op], start: int, end: int) -> dict[str, Any] | None:
    """The longest stretch in [start, end) with no ok completion (edges count as ok)."""
    oks = sorted(o.end for o in ops if o.status == "ok" and o.end is not None  # type: ignore
                 and start <= o.end < end)
    if end <= start:
        return None
    points = [start, *oks, end]
    gap, at = max(((b - a), a) for a, b in pairwise(points))
    return {"seconds": round(gap / 1e9, 4), "from_s": round(at / 1e9, 4)}


def window_stats(ops: list[Op], start: int, end: int) -> dict[str, Any]:
    """Latency by f, throughput and outcome counts of ops invoked in [start, end)."""
    inside = [o for o in ops if start <= o.start < end]
    counts = Counter(o.status for o in inside)
    by_f: dict[str, list[float]] = {}
    all_ok: list[float] = []
    for o in inside:
        if o.status == "ok" and o.end is not None:
            ms = (o.end - o.start) / 1e6
            by_f.setdefault(o.f, []).append(ms)
            all_ok.append(ms)
    seconds = max(0.0, (end - start) / 1e9)
    latency = {"all": latency_summary(all_ok)}
    for f in sorted(by_f):
        latency[f] = latency_summary(by_f[f])
    by_f_counts = {f: dict(Counter(o.status for o in inside if o.f == f))
                   for f in sorted({o.f for o in inside})}
    return {
        "start_s": round(start / 1e9, 3),
        "end_s": round(end / 1e9, 3),
        "duration_s": round(seconds, 3),
        "invoked": len(inside),
        "ok": counts.get("ok", 0),
        "fail": counts.get("fail", 0),
        "info": counts.get("info", 0),
        "ok_rate": round(counts.get("ok", 0) / len(inside), 4) if inside else None,
        "throughput": round(counts.get("ok", 0) / seconds, 2) if seconds > 0 else None,
        # by completion time: how long clients went without any success in this window
        "longest_outage_s": (longest_outage(ops, start, end) or {}).get("seconds"),
        "latency_ms": latency,
        "by_f": by_f_counts,
    }


def windows(history: list[dict], phases: list[dict],
            samples: list[dict] | None = None) -> dict[str, Any]:
    """The fast-path windows: {"warmup": {...}, "faults": {...}, "recovery": {...}}, the ones the
    run had. Each window's `counters` are None when the samples needed are missing."""
    ops = pair_ops(history)
    out: dict[str, Any] = {}
    for name, (start, end) in window_bounds(phases).items():
        stats = window_stats(ops, start, end)
        counters = stats["counters"] = _counter_delta(samples or [], name)
        if counters is not None:
            messages = counters.get("messages")
            counters["messages_per_op"] = (round(messages / stats["invoked"], 2)
                                           if messages is not None and stats["invoked"]
                                           else None)
        out[name] = stats
    return {w: out[w] for w in WINDOWS if w in out}


def time_series(ops: list[Op], bucket_s: float, t_end_ns: int | None = None) -> dict[str, Any]:
    """Per bucket (by completion time): ok/fail/info completions per second and ok latency
    quantiles (ms). For throughput and quantile plots."""
    done = [o for o in ops if o.end is not None]
    if not done:
        return {"t": [], "ok": [], "fail": [], "info": [], "p50": [], "p95": [], "p99": [],
                "max": []}
    bucket_ns = max(1, int(bucket_s * 1e9))
    last = max(t_end_ns or 0, max(o.end for o in done))  # type: ignore[type-var]
    n = last // bucket_ns + 1
    counts = {k: [0] * n for k in ("ok", "fail", "info")}
    lat: list[list[float]] = [[] for _ in range(n)]
    for o in done:
        b = o.end // bucket_ns  # type: ignore[operator]
        counts[o.status][b] += 1
        if o.status == "ok":
            lat[b].append((o.end - o.start) / 1e6)  # type: ignore[operator]
    out: dict[str, Any] = {"t": [(i + 0.5) * bucket_s for i in range(n)]}
    for k in counts:
        out[k] = [c / bucket_s for c in counts[k]]
    for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("max", 1.0)):
        out[name] = [quantile(sorted(xs), q) if xs else None for xs in lat]
    return out
