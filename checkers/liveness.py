"""Liveness during faults: whenever a majority could serve, it must.

From the nemesis record the checker rebuilds which nodes were up (not killed, not paused, not
behind a fault that leaves no plain cut to reason about) and which links were cut. Wherever a
majority of the nodes was up and every link among them open, both ways, for longer than the
bound, operations must complete: a stretch of that longer than `bound_s` with no ok update
(write, cas, add) while updates were being tried is a stall, and so is one with no ok read.
Updates and reads are judged apart, so reads served by a stuck cluster do not hide stalled
writes. Closed-loop clients make a stall look like "fewer operations"; this is where it shows.

The bound is the caller's (the harness derives it from the election timeout and the clients'
op timeout: an op stuck at a node that just went away must time out and be retried elsewhere,
after an election). A fault is taken to be in force from its invocation until its end
*completed* (conservative: a majority counts as healthy only once a heal is done).
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

from checkers.perf import NEMESIS, pair_ops

UPDATES = ("write", "cas", "add")
# nemesis f -> what it does to the state, and when it counts (invoke: at once; done: completed)
STARTS = {"start-partition", "start-delay", "pause", "kill", "start-slow-disk",
          "lose-unsynced"}
ENDS = {"stop-partition", "stop-delay", "resume", "restart", "stop-slow-disk", "heal"}
MAX_LISTED = 20


def bound(op_timeout_s: float, election_timeout_ms: float) -> float:
    """Seconds a majority that is up and connected may go without completing an operation:
    an op stuck at a member that just went away times out (the clients' op timeout), then
    two elections of at most 2 T each, and a second for restarts and retries."""
    return round(float(op_timeout_s) + 4 * float(election_timeout_ms) / 1000.0 + 1.0, 3)


class _State:
    def __init__(self) -> None:
        self.down: set[str] = set()          # killed or paused
        self.impaired: set[str] = set()      # under a shape with no plain cut (time-varying)
        self.cut: set[tuple[str, str]] = set()

    def apply(self, f: str, value: Any, nodes: list[str]) -> None:
        value = value if isinstance(value, dict) else {}
        if f == "start-partition":
            cut = value.get("cut")
            if isinstance(cut, list) and all(isinstance(e, list) and len(e) == 2 for e in cut):
                self.cut = {(str(a), str(b)) for a, b in cut}
            else:
                self.impaired |= set(nodes)
            if value.get("shape") == "lagging-takeover":
                self.impaired |= set(nodes)  # its cut changes while it starts
        elif f == "stop-partition":
            self.cut, self.impaired = set(), set()
        elif f in ("pause", "kill", "lose-unsynced"):
            self.down |= set(nodes)
            if value.get("hold_s"):            # stall-leader: its links held back as well
                self.impaired |= set(nodes)
        elif f in ("resume", "restart"):
            self.down -= set(nodes)
            self.impaired -= set(nodes)
        elif f == "heal":
            self.down, self.impaired, self.cut = set(), set(), set()
        # delays and slow disks slow a majority down; they do not stop it

    def serving_majority(self, nodes: list[str]) -> list[str] | None:
        """A majority of up nodes, all linked both ways, or None."""
        up = [n for n in nodes if n not in self.down and n not in self.impaired]
        need = len(nodes) // 2 + 1
        if len(up) < need:
            return None
        if len(nodes) > 15:  # too many subsets to try: only all the up nodes together
            groups: Any = [up]
        else:
            groups = (g for size in range(len(up), need - 1, -1)
                      for g in combinations(up, size))
        for group in groups:
            if all((a, b) not in self.cut for a in group for b in group if a != b):
                return list(group)
        return None


def healthy_windows(history: list[dict], nodes: list[str], end: int,
                    begin: int = 0) -> list[tuple[int, int, list[str]]]:
    """[(start ns, end ns, the majority)] where a majority could serve, from `begin` (the
    first client operation: before it the cluster was still starting) up to `end`."""
    events: list[tuple[int, int, str, Any, list[str]]] = []
    for pos, op in enumerate(history):
        if op.get("process") != NEMESIS:
            continue
        f, type_ = op.get("f"), op.get("type")
        counts = (f in STARTS and type_ == "invoke") or (f in ENDS and type_ != "invoke")
        if not counts:
            continue
        raw_nodes = op.get("node")
        targets = [str(n) for n in raw_nodes] if isinstance(raw_nodes, list) else []
        events.append((int(op.get("time") or 0), pos, str(f), op.get("value"), targets))
    events.sort(key=lambda e: (e[0], e[1]))
    state = _State()
    windows: list[tuple[int, int, list[str]]] = []
    t = 0
    group = state.serving_majority(nodes)
    for time, _, f, value, targets in [*events, (end, 1 << 62, "", None, [])]:
        time = min(time, end)
        if group is not None and time > t:
            if windows and windows[-1][1] == t and windows[-1][2] == group:
                windows[-1] = (windows[-1][0], time, group)
            else:
                windows.append((t, time, group))
        t = max(t, time)
        if f:
            state.apply(f, value, targets)
            group = state.serving_majority(nodes)
    clipped = [(max(a, begin), b, g) for a, b, g in windows]
    return [w for w in clipped if w[1] > w[0]]


def check(history: list[dict], nodes: list[str], bound_s: float,
          end: int | None = None) -> dict[str, Any]:
    """`end`: judge up to this time (ns; the final reads' start), else the last completion."""
    ops = pair_ops(history)
    if not ops:
        return {"valid": "unknown", "reason": "no client operation was invoked", "stalls": []}
    if not nodes:
        return {"valid": "unknown", "reason": "the run names no nodes", "stalls": []}
    if not any(o.status == "ok" for o in ops):
        # Then the clients may never have reached the cluster: harness trouble as likely as a
        # stall, so no verdict (the availability checker says the same).
        return {"valid": "unknown", "reason": "no operation succeeded at all", "stalls": []}
    last = max((o.end or o.start) for o in ops)
    end = last if end is None else min(end, last)
    bound = int(bound_s * 1e9)
    windows = healthy_windows(history, nodes, end, min(o.start for o in ops))
    stalls: list[dict[str, Any]] = []
    judged_ns = 0
    for kind, fs in (("update", UPDATES), ("read", ("read",))):
        tried = [o for o in ops if o.f in fs]
        done = sorted(o.end for o in tried if o.status == "ok" and o.end is not None)
        if not done:
            continue  # none of this kind ever succeeded: vacuous, as for availability
        for start, stop, group in windows:
            if stop - start <= bound:
                continue
            judged_ns += stop - start if kind == "update" else 0
            inside = [t for t in done if start <= t <= stop]
            marks = [start, *inside, stop]
            for a, b in zip(marks, marks[1:], strict=False):
                if b - a <= bound:
                    continue
                attempted = any(o.start < b and (o.end is None or o.end > a) for o in tried)
                if attempted:
                    stalls.append({"kind": kind, "start_s": round(a / 1e9, 3),
                                   "end_s": round(b / 1e9, 3), "length_s": round((b - a) / 1e9, 3),
                                   "majority": group,
                                   "window_s": [round(start / 1e9, 3), round(stop / 1e9, 3)]})
    stalls.sort(key=lambda s: s["start_s"])
    result: dict[str, Any] = {
        "valid": True, "reason": None, "bound_s": bound_s,
        "healthy_windows": [{"start_s": round(a / 1e9, 3), "end_s": round(b / 1e9, 3),
                             "majority": g} for a, b, g in windows][:200],
        "judged_s": round(judged_ns / 1e9, 3),
        "stalls": stalls[:MAX_LISTED], "stall_count": len(stalls),
    }
    if stalls:
        s = stalls[0]
        result["valid"] = False
        result["reason"] = (f"{len(stalls)} stall(s) with a majority up and connected; first: no "
                            f"{s['kind']} completed from {s['start_s']:.2f} s to "
                            f"{s['end_s']:.2f} s ({s['length_s']:.1f} s, bound {bound_s:g} s) "
                            f"while {', '.join(s['majority'])} were up and connected")
    elif judged_ns == 0:
        result["valid"] = "unknown"
        result["reason"] = (f"no stretch longer than the bound ({bound_s:g} s) had a majority "
                            "up and connected: liveness was not observed")
    return result
