"""Availability and recovery: no vacuous passes, and how fast service came back after the heal.

- The ok rate of the operations invoked in each phase.
- Not a pass when nothing succeeded: no ok operation at all is `unknown` (the harness may be at
  fault: clients that never reached a node); ok operations before the faults but none after the
  final heal is `false` (the cluster did not recover); a run that never reached the final heal is
  `unknown`.
- Recovery: the time from the final heal (the nemesis op `heal`) to the first ok completion, and
  to the first point at which the median latency of the last few ok ops is back within
  `factor` x the warm-up p50.
"""

from __future__ import annotations

from statistics import median
from typing import Any

from checkers.perf import NEMESIS, Op, longest_outage, pair_ops, quantile

FACTOR = 1.5
RECOVERY_RUN = 5  # recent ok ops whose median latency must be back under the threshold


def final_heal_time(history: list[dict]) -> int | None:
    """ns of the last `heal` nemesis op's completion (its invocation if it never completed)."""
    t = None
    for op in history:
        if op.get("process") == NEMESIS and op.get("f") == "heal":
            t = int(op.get("time") or 0)
    return t


def phase_rates(ops: list[Op], phases: list[dict]) -> dict[str, dict[str, Any]]:
    out = {}
    for p in phases or []:
        start = p.get("start")
        if start is None:
            continue
        end = p.get("end")
        end = float("inf") if end is None else end
        inside = [o for o in ops if start <= o.start < end]
        ok = sum(1 for o in inside if o.status == "ok")
        out[p["name"]] = {
            "invoked": len(inside), "ok": ok,
            "fail": sum(1 for o in inside if o.status == "fail"),
            "info": sum(1 for o in inside if o.status == "info"),
            "ok_rate": round(ok / len(inside), 4) if inside else None,
        }
    return out


def latency_recovery(ops: list[Op], heal: int, baseline_ms: float | None,
                     until: int | None = None, factor: float = FACTOR) -> float | None:
    """Seconds from the heal to the completion of the first ok op (invoked after the heal) at
    which the median of the last RECOVERY_RUN ok latencies, that op's included, is within
    factor x baseline: the majority of recent clients see warm-up latency again. None if never,
    or without a baseline."""
    if baseline_ms is None:
        return None
    after = sorted((o for o in ops if o.status == "ok" and o.end is not None and o.start >= heal
                    and (until is None or o.start < until)), key=lambda o: o.end or 0)
    limit = factor * baseline_ms
    need = min(RECOVERY_RUN, len(after))
    for i, o in enumerate(after):
        if i + 1 < need:
            continue
        recent = [(x.end - x.start) / 1e6 for x in after[i + 1 - need:i + 1]]  # type: ignore
        if median(recent) <= limit:
            return round((o.end - heal) / 1e9, 4)  # type: ignore[operator]
    return None


def check(history: list[dict], phases: list[dict],
          recovery_bound_s: float | None = None) -> dict[str, Any]:
    """`recovery_bound_s`: the first ok op after the final heal must come within this many
    seconds, else the verdict is false (None: any time before the run ends will do)."""
    ops = pair_ops(history)
    by_name = {p.get("name"): p for p in phases or []}
    rates = phase_rates(ops, phases)
    heal = final_heal_time(history)
    faults = by_name.get("faults")
    f_start = faults.get("start") if faults else None
    f_end = faults.get("end") if faults else None

    def during_faults(o: Op) -> bool:
        t = o.end if o.end is not None else o.start
        return f_start is not None and f_start <= t < (f_end if f_end is not None else 1 << 62)

    ok_ops = [o for o in ops if o.status == "ok"]
    ok_outside = [o for o in ok_ops if not during_faults(o)]
    ok_after_heal = [o for o in ok_ops if heal is not None and o.end is not None and o.end >= heal]

    warm = by_name.get("warmup")
    warm_lat = sorted((o.end - o.start) / 1e6 for o in ok_ops  # type: ignore[operator]
                      if warm and warm["start"] <= o.start < (warm.get("end") or 1 << 62))
    warm_p50 = quantile(warm_lat, 0.5)
    final_reads = by_name.get("final-reads")
    first_ok = min((o.end for o in ok_after_heal), default=None)  # type: ignore[type-var]
    recovery: dict[str, Any] = {
        "heal_s": round(heal / 1e9, 4) if heal is not None else None,
        "time_to_first_ok_s": round((first_ok - heal) / 1e9, 4)
        if first_ok is not None and heal is not None else None,
        "warmup_p50_ms": round(warm_p50, 3) if warm_p50 is not None else None,
        "threshold_ms": round(FACTOR * warm_p50, 3) if warm_p50 is not None else None,
        "factor": FACTOR,
        "time_to_latency_recovered_s": latency_recovery(
            ops, heal, warm_p50, until=final_reads.get("start") if final_reads else None)
        if heal is not None else None,
    }
    for p in phases or []:
        if p.get("name") in rates and p.get("start") is not None and p.get("end") is not None:
            rates[p["name"]]["longest_outage"] = longest_outage(ops, p["start"], p["end"])
    recovery["bound_s"] = recovery_bound_s
    result: dict[str, Any] = {
        "valid": True,
        "reason": None,
        "phases": rates,
        "ok": len(ok_ops),
        "ok_outside_faults": len(ok_outside),
        "ok_after_heal": len(ok_after_heal),
        "recovery": recovery,
    }
    if not ops:
        result["valid"] = "unknown"
        result["reason"] = "no client operation was invoked"
    elif not ok_ops:
        result["valid"] = "unknown"
        result["reason"] = (f"none of {len(ops)} operations succeeded: a pass would be vacuous "
                            "(the cluster never served, or the clients never reached it)")
    elif heal is None:
        result["valid"] = "unknown"
        result["reason"] = "the run never reached the final heal, so recovery was not observed"
    elif not ok_after_heal:
        result["valid"] = False
        after = [o for o in ops if o.start >= heal]
        result["reason"] = (f"no operation succeeded after the final heal at "
                            f"{heal / 1e9:.1f} s ({len(after)} invoked after it): the cluster "
                            "did not recover")
    elif (recovery_bound_s is not None and recovery["time_to_first_ok_s"] is not None
          and recovery["time_to_first_ok_s"] > recovery_bound_s):
        result["valid"] = False
        result["reason"] = (f"the first operation after the final heal succeeded only after "
                            f"{recovery['time_to_first_ok_s']:.2f} s (bound "
                            f"{recovery_bound_s:g} s)")
    elif not ok_outside:
        result["valid"] = "unknown"
        result["reason"] = "no operation succeeded outside the fault window"
    return result
