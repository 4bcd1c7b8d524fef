"""Each checker on crafted histories and logs: the violation it exists for is caught, a clean
input passes, and a vacuous input is never a pass."""

from __future__ import annotations

from typing import Any

from checkers import agreement, availability, exactly_once, perf, set_checker
from harness.report.analysis import merge_valid

MS = 1_000_000


class H:
    """A tiny history builder: ops by process, times in ms."""

    def __init__(self) -> None:
        self.events: list[tuple[float, int, dict]] = []

    def op(self, process: Any, f: str, value: Any, t0: float, t1: float | None,
           status: str = "ok", key: Any = "k", output: Any = None, seq: int | None = None,
           error: str | None = None) -> H:
        extra = {"client": f"c{process}", "seq": seq} if seq is not None else {}
        self.events.append((t0, 0, {"process": process, "type": "invoke", "f": f, "key": key,
                                    "value": value, **extra}))
        if t1 is not None:
            done = {"process": process, "type": status, "f": f, "key": key,
                    "value": output if f == "read" else value, **extra}
            if error:
                done["error"] = error
            self.events.append((t1, 1, done))
        return self

    def nemesis(self, f: str, t: float, nodes: list[str] | None = None,
                value: Any = None) -> H:
        for k, typ in ((0, "invoke"), (1, "info")):
            self.events.append((t + k * 0.01, k, {"process": "nemesis", "type": typ, "f": f,
                                                  "value": value, "node": nodes or []}))
        return self

    def build(self) -> list[dict]:
        ev = sorted(self.events, key=lambda e: (e[0], e[1]))
        return [{"index": i, "time": int(t * MS), **e} for i, (t, _, e) in enumerate(ev)]


def cmd(client: str, seq: int, op: str, key: str = "k", value: Any = None, **kw: Any) -> dict:
    return {"client": client, "seq": seq, "op": op, "key": key, "value": value, **kw}


def log_of(*commands: dict, first: int = 0) -> dict:
    return {"first": first, "entries": [{"slot": first + i, "value": c}
                                        for i, c in enumerate(commands)]}


def status(applied: int, digest: str) -> dict:
    return {"ok": True, "applied": applied, "chosen": applied, "digest": digest,
            "counters": {"elections": 1, "phase1_rounds": 1, "phase2_rounds": applied + 1,
                         "commits": applied + 1}}


# ------------------------------------------------------------------------------- agreement

CLEAN_LOG = log_of({"op": "noop"}, cmd("c0", 1, "write", value=1), cmd("c1", 1, "write", value=2))


def test_agreement_clean_logs_pass() -> None:
    r = agreement.check({"n1": CLEAN_LOG, "n2": CLEAN_LOG, "n3": CLEAN_LOG},
                        {"n1": status(2, "d"), "n2": status(2, "d"), "n3": status(2, "d")})
    assert r["valid"] is True, r
    assert r["slots_compared"] == 3
    assert r["convergence"]["valid"] is True


def test_agreement_catches_a_divergent_slot() -> None:
    other = log_of({"op": "noop"}, cmd("c0", 1, "write", value=1), cmd("c9", 1, "write", value=7))
    r = agreement.check({"n1": CLEAN_LOG, "n2": CLEAN_LOG, "n3": other})
    assert r["valid"] is False
    assert r["divergent_count"] == 1
    assert r["divergent"][0]["slot"] == 2
    assert "slot 2" in r["reason"]


def test_agreement_key_order_does_not_make_a_difference() -> None:
    reordered = {"first": 0, "entries": [
        {"slot": 0, "value": {"op": "noop"}},
        {"slot": 1, "value": {"value": 1, "key": "k", "op": "write", "seq": 1, "client": "c0"}},
        {"slot": 2, "value": {"value": 2, "seq": 1, "client": "c1", "op": "write", "key": "k"}}]}
    assert agreement.check({"n1": CLEAN_LOG, "n2": reordered})["valid"] is True


def test_agreement_lagging_and_compacted_logs_are_compared_where_they_overlap() -> None:
    lagging = log_of({"op": "noop"}, cmd("c0", 1, "write", value=1))
    compacted = {"first": 2, "entries": [{"slot": 2, "value": cmd("c1", 1, "write", value=2)}]}
    r = agreement.check({"n1": CLEAN_LOG, "n2": lagging, "n3": compacted})
    assert r["valid"] is True, r
    bad = {"first": 2, "entries": [{"slot": 2, "value": cmd("c1", 1, "write", value=3)}]}
    assert agreement.check({"n1": CLEAN_LOG, "n2": bad})["valid"] is False


def test_agreement_catches_digest_mismatch_at_equal_applied_index() -> None:
    logs = {"n1": CLEAN_LOG, "n2": CLEAN_LOG}
    r = agreement.check(logs, {"n1": status(2, "aa"), "n2": status(2, "bb")})
    assert r["valid"] is False
    assert "digest" in r["reason"]
    # a lagging replica is reported, not a violation
    r = agreement.check(logs, {"n1": status(2, "aa"), "n2": status(2, "aa"),
                               "n3": status(1, "zz")})
    assert r["valid"] is True
    assert r["convergence"]["lagging"] == {"n3": 1}


def test_agreement_without_two_logs_is_unknown_not_a_pass() -> None:
    assert agreement.check({"n1": CLEAN_LOG, "n2": None, "n3": None})["valid"] == "unknown"
    assert agreement.check({"n1": None})["valid"] == "unknown"
    empty = log_of()
    assert agreement.check({"n1": empty, "n2": empty})["valid"] == "unknown"


def test_agreement_self_conflict() -> None:
    log = {"first": 0, "entries": [{"slot": 0, "value": {"op": "noop"}},
                                   {"slot": 0, "value": cmd("c0", 1, "write", value=1)}]}
    r = agreement.check({"n1": log, "n2": CLEAN_LOG})
    assert r["valid"] is False


# ---------------------------------------------------------------------------- exactly-once


def writes_history() -> list[dict]:
    return (H().op(0, "write", 1, 0, 2, seq=1).op(1, "write", 2, 1, 3, seq=1)
            .op(0, "cas", [5, 6], 4, 5, status="fail", error="precondition-failed", seq=2)
            .op(1, "write", 3, 4, 6, status="info", error="timeout", seq=2)
            .op(0, "read", None, 7, 8, output=2, seq=3)
            .build())


def test_exactly_once_clean() -> None:
    log = log_of({"op": "noop"}, cmd("c0", 1, "write", value=1), cmd("c1", 1, "write", value=2),
                 cmd("c0", 2, "cas", value=None, **{"from": 5, "to": 6}))
    r = exactly_once.check(writes_history(), {"n1": log, "n2": log})
    assert r["valid"] is True, r
    assert r["acknowledged"] == 2 and r["acknowledged_found"] == 2
    assert r["indeterminate"] == {"applied": 0, "not_applied": 1}


def test_exactly_once_catches_a_duplicate_application() -> None:
    log = log_of({"op": "noop"}, cmd("c0", 1, "write", value=1), cmd("c1", 1, "write", value=2),
                 cmd("c0", 1, "write", value=1))
    r = exactly_once.check(writes_history(), {"n1": log, "n2": log})
    assert r["valid"] is False
    assert r["duplicates"][0]["slots"] == [1, 3]
    assert "more than once" in r["reason"]


def test_exactly_once_leaves_a_divergent_slot_to_agreement() -> None:
    n1 = log_of({"op": "noop"}, cmd("c0", 1, "write", value=1), cmd("c1", 1, "write", value=2))
    n2 = log_of({"op": "noop"}, cmd("c1", 1, "write", value=2), cmd("c0", 1, "write", value=1))
    r = exactly_once.check(writes_history(), {"n1": n1, "n2": n2})
    assert r["valid"] is True, r
    # ... but one node holding one command in two slots is a duplicate application
    n2 = log_of({"op": "noop"}, cmd("c0", 1, "write", value=1), cmd("c0", 1, "write", value=1),
                cmd("c1", 1, "write", value=2))
    r = exactly_once.check(writes_history(), {"n1": n1, "n2": n2})
    assert r["valid"] is False and r["duplicates"][0]["nodes"] == ["n2"]


def test_exactly_once_a_retried_read_twice_is_only_a_note() -> None:
    log = log_of({"op": "noop"}, cmd("c0", 1, "write", value=1), cmd("c1", 1, "write", value=2),
                 cmd("c0", 3, "read"), cmd("c0", 3, "read"))
    r = exactly_once.check(writes_history(), {"n1": log})
    assert r["valid"] is True
    assert r["duplicate_reads"] == 1


def test_exactly_once_catches_a_lost_acknowledged_write() -> None:
    log = log_of({"op": "noop"}, cmd("c0", 1, "write", value=1))
    r = exactly_once.check(writes_history(), {"n1": log, "n2": log})
    assert r["valid"] is False
    assert r["lost_count"] == 1 and r["lost"][0]["client"] == "c1"
    assert r["reason"].endswith("first write k = 2 by c1 seq 1"), r["reason"]


def test_exactly_once_lost_with_incomplete_logs_is_unknown() -> None:
    log = log_of({"op": "noop"}, cmd("c0", 1, "write", value=1))
    r = exactly_once.check(writes_history(), {"n1": log, "n2": None})
    assert r["valid"] == "unknown"
    compacted = {"first": 5, "entries": [{"slot": 5, "value": cmd("c0", 1, "write", value=1)}]}
    assert exactly_once.check(writes_history(), {"n1": compacted})["valid"] == "unknown"


def test_exactly_once_catches_failed_update_in_the_log_and_unknown_commands() -> None:
    h = H().op(0, "write", 1, 0, 1, status="fail", error="unavailable", seq=1).build()
    r = exactly_once.check(h, {"n1": log_of(cmd("c0", 1, "write", value=1))})
    assert r["valid"] is False and r["failed_applied_count"] == 1
    h = H().op(0, "write", 1, 0, 1, seq=1).build()
    r = exactly_once.check(h, {"n1": log_of(cmd("c0", 1, "write", value=1),
                                            cmd("c7", 1, "write", value=9))})
    assert r["valid"] is False and r["unexpected_count"] == 1
    r = exactly_once.check(h, {"n1": log_of(cmd("c0", 1, "write", value=2))})
    assert r["valid"] is False and r["mismatched_count"] == 1


def test_exactly_once_is_unknown_without_ids_or_without_anything() -> None:
    h = H().op(0, "write", 1, 0, 1).build()  # no client/seq
    assert exactly_once.check(h, {"n1": log_of({"op": "noop"})})["valid"] == "unknown"
    h = H().op(0, "write", 1, 0, 1, status="fail", error="unavailable", seq=1).build()
    assert exactly_once.check(h, {"n1": log_of({"op": "noop"})})["valid"] == "unknown"


# ------------------------------------------------------------------------------------- set


def set_history(final: list[list[int]], add_status: dict[int, str] | None = None) -> list[dict]:
    h = H()
    add_status = add_status or {}
    for v in range(1, 6):
        st = add_status.get(v, "ok")
        h.op(v % 2, "add", v, v * 10, v * 10 + 5 if st != "pending" else None,
             status=st if st != "pending" else "ok", key="set", seq=v)
    for i, value in enumerate(final):
        h.op(10 + i, "read", None, 100 + i * 10, 105 + i * 10, key="set", output=value, seq=1)
    return h.build()


def test_set_clean_passes() -> None:
    r = set_checker.check(set_history([[1, 2, 3, 4, 5]] * 3), final_reads_start=100 * MS)
    assert r["valid"] is True, r
    assert r["final_reads"] == 3 and r["acknowledged"] == 5


def test_set_catches_a_lost_acknowledged_add() -> None:
    r = set_checker.check(set_history([[1, 2, 4, 5]] * 3), final_reads_start=100 * MS)
    assert r["valid"] is False
    assert r["lost"] == [3]
    assert "lost" in r["reason"]


def test_set_catches_unexpected_elements() -> None:
    r = set_checker.check(set_history([[1, 2, 3, 4, 5, 99]]), final_reads_start=100 * MS)
    assert r["valid"] is False and r["never_attempted"] == [99]
    r = set_checker.check(set_history([[1, 2, 3, 4, 5]], {3: "fail"}))
    assert r["valid"] is False and r["failed_but_present"] == [3]


def test_set_reports_recovered_indeterminate_adds() -> None:
    r = set_checker.check(set_history([[1, 2, 3, 4, 5]], {2: "info", 4: "info", 5: "pending"}))
    assert r["valid"] is True
    assert r["recovered"] == [2, 4, 5]
    r = set_checker.check(set_history([[1, 3]], {2: "info", 4: "info", 5: "info"}))
    assert r["valid"] is True and r["indeterminate_absent"] == 3


def test_set_catches_an_element_that_disappears() -> None:
    r = set_checker.check(set_history([[1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5]], {}))
    # 6 was never attempted (unexpected) and then vanished (lost)
    assert r["valid"] is False
    r = set_checker.check(set_history([[1, 2, 3, 4, 5], [1, 2, 3, 4, 5]], {2: "info"}))
    assert r["valid"] is True
    r = set_checker.check(set_history([[1, 2, 3, 4, 5], [1, 3, 4, 5]], {2: "info"}))
    assert r["valid"] is False and r["disappeared"] == [2]


def test_set_vacuous_runs_are_not_a_pass() -> None:
    r = set_checker.check(set_history([[]], {v: "fail" for v in range(1, 6)}))
    assert r["valid"] == "unknown"
    r = set_checker.check(set_history([]))
    assert r["valid"] == "unknown" and "no final read" in r["reason"]


# ---------------------------------------------------------------------------- availability

PHASES = [{"name": "warmup", "start": 0, "end": 100 * MS},
          {"name": "faults", "start": 100 * MS, "end": 200 * MS},
          {"name": "recovery", "start": 200 * MS, "end": 300 * MS},
          {"name": "final-reads", "start": 300 * MS, "end": 310 * MS}]


def avail_history(after_heal: str = "ok", before: str = "ok", heal: bool = True) -> list[dict]:
    h = H()
    for i in range(10):
        h.op(0, "write", i, i * 10, i * 10 + 2, status=before, seq=i)
    h.op(1, "write", 0, 120, 180, status="fail", error="unavailable", seq=1)
    h.nemesis("start-partition", 110, ["n1", "n2", "n3"], {"shape": "halves"})
    if heal:
        h.nemesis("heal", 200)
    latencies = [20, 15, 8] + [2] * 15
    t = 201.0
    for i, lat in enumerate(latencies):
        h.op(2, "write", i, t, t + lat, status=after_heal, seq=100 + i)
        t += lat + 1
    return h.build()


def test_availability_clean_with_recovery_times() -> None:
    r = availability.check(avail_history(), PHASES)
    assert r["valid"] is True, r
    rec = r["recovery"]
    assert rec["warmup_p50_ms"] == 2.0 and rec["threshold_ms"] == 3.0
    assert abs(rec["time_to_first_ok_s"] - 0.021) < 0.002
    # latencies 20, 15, 8, 2, 2, 2: the median of the last 5 is 2 ms at the sixth op
    assert rec["time_to_latency_recovered_s"] is not None
    assert 0.04 < rec["time_to_latency_recovered_s"] < 0.06
    assert r["phases"]["faults"]["ok_rate"] == 0.0
    assert r["phases"]["warmup"]["ok_rate"] == 1.0


def test_availability_a_vacuous_run_is_not_a_pass() -> None:
    r = availability.check(avail_history(after_heal="fail", before="fail"), PHASES)
    assert r["valid"] == "unknown"
    assert r["ok"] == 0


def test_availability_no_ok_after_the_heal_is_invalid() -> None:
    r = availability.check(avail_history(after_heal="fail"), PHASES)
    assert r["valid"] is False
    assert "after the final heal" in r["reason"]


def test_availability_slow_recovery_beyond_the_bound_is_invalid() -> None:
    assert availability.check(avail_history(), PHASES, recovery_bound_s=0.05)["valid"] is True
    r = availability.check(avail_history(), PHASES, recovery_bound_s=0.01)
    assert r["valid"] is False and "bound" in r["reason"]


def test_availability_longest_outage_per_phase() -> None:
    r = availability.check(avail_history(), PHASES)
    faults = r["phases"]["faults"]["longest_outage"]
    assert faults == {"seconds": 0.1, "from_s": 0.1}  # nothing succeeded during the faults
    assert r["phases"]["warmup"]["longest_outage"]["seconds"] == 0.01


def test_availability_without_a_heal_is_unknown() -> None:
    r = availability.check(avail_history(heal=False), PHASES)
    assert r["valid"] == "unknown"


# ------------------------------------------------------------------------------- perf/merge


def test_perf_windows_latency_throughput_and_counters() -> None:
    h = H()
    for i in range(100):
        h.op(i, "write" if i % 2 else "read", i, i, i + 1 + (i % 10), seq=i)
    samples = [
        {"time": 0, "label": "warmup-start",
         "nodes": {"n1": status(-1, "a"), "n2": status(-1, "a")}},
        {"time": 100 * MS, "label": "faults-start",
         "nodes": {"n1": {**status(99, "a"),
                          "counters": {"elections": 1, "phase1_rounds": 1,
                                       "phase2_rounds": 100, "commits": 100}},
                   "n2": None}},
    ]
    w = perf.windows(h.build(), PHASES[:1], samples)
    warm = w["warmup"]
    assert warm["ok"] == 100 and warm["throughput"] == 1000.0
    assert warm["latency_ms"]["all"]["max"] == 10.0
    assert warm["latency_ms"]["all"]["p50"] == 5.0
    assert set(warm["latency_ms"]) == {"all", "read", "write"}
    c = warm["counters"]
    assert c["slots_chosen"] == 100
    assert c["approximate"] and c["unreachable"] == ["n2"]
    assert c["phase1_rounds"] == 0 and c["fast_path_fraction"] == 1.0


def _st(elections: int, commits: int, chosen: int, uptime: float | None = None) -> dict:
    d: dict = {"chosen": chosen, "counters": {"elections": elections,
                                              "phase1_rounds": elections,
                                              "phase2_rounds": commits, "commits": commits}}
    if uptime is not None:
        d["uptime_s"] = uptime
    return d


def test_perf_counters_across_a_restart_are_unknown_not_smaller() -> None:
    # the counters went down: a new process; what the old one counted in the window is gone
    samples = [{"time": 0, "label": "recovery-start",
                "nodes": {"n1": _st(5, 100, 99), "n2": _st(2, 50, 99)}},
               {"time": 10, "label": "end", "nodes": {"n1": _st(1, 10, 109),
                                                      "n2": _st(2, 60, 109)}}]
    c = perf._counter_delta(samples, "recovery")
    assert c is not None and c["restarted"] == ["n1"] and c["approximate"]
    for name in ("elections", "phase1_rounds", "phase2_rounds", "commits"):
        assert c[name] is None, name
    assert c["phase1_per_commit"] is None and c["fast_path_fraction"] is None
    assert c["slots_chosen"] == 10  # the chosen index survives restarts
    assert c["nodes"]["n1"] is None and c["nodes"]["n2"]["commits"] == 10


def test_perf_restart_seen_by_uptime_even_when_counters_grew_back() -> None:
    # killed and back within the 20 s window: its counters passed the old ones again, but the
    # process is 3 s old where it would be 25 s had it run through
    nodes_a = {"n1": _st(1, 100, 99, uptime=5.0)}
    samples = [{"time": 0, "label": "faults-start", "nodes": nodes_a},
               {"time": 20_000_000_000, "label": "recovery-start",
                "nodes": {"n1": _st(2, 150, 400, uptime=3.0)}}]
    c = perf._counter_delta(samples, "faults")
    assert c is not None and c["restarted"] == ["n1"] and c["commits"] is None
    # the same figures from a process that ran through (or was only paused): exact
    samples[1]["nodes"]["n1"]["uptime_s"] = 24.6
    c = perf._counter_delta(samples, "faults")
    assert c is not None and "restarted" not in c and c["commits"] == 50
    # an opening reply that came late (its uptime larger than the sample's time says) is no
    # restart either
    samples[0]["nodes"]["n1"]["uptime_s"] = 9.0
    c = perf._counter_delta(samples, "faults")
    assert c is not None and "restarted" not in c and c["commits"] == 50


def test_quantile_is_nearest_rank() -> None:
    xs = [float(i) for i in range(1, 101)]
    assert perf.quantile(xs, 0.5) == 50.0
    assert perf.quantile(xs, 0.99) == 99.0
    assert perf.quantile(xs, 1.0) == 100.0
    assert perf.quantile([], 0.5) is None


def test_merge_valid_priority() -> None:
    assert merge_valid([True, "unknown", False]) is False
    assert merge_valid([True, "unknown"]) == "unknown"
    assert merge_valid([True, True]) is True
    assert merge_valid([]) == "unknown"
