"""Time to first evidence, per failing checker."""

from __future__ import annotations

from harness.report.evidence import first_evidence_s

HISTORY = [
    {"index": 0, "time": 1_000_000_000, "process": 0, "type": "invoke", "f": "write",
     "client": "c0", "seq": 1},
    {"index": 1, "time": 2_000_000_000, "process": "nemesis", "type": "info", "f": "kill"},
    {"index": 2, "time": 3_000_000_000, "process": 0, "type": "ok", "f": "write",
     "client": "c0", "seq": 1},
    {"index": 3, "time": 4_000_000_000, "process": 1, "type": "invoke", "f": "read",
     "client": "c1", "seq": 1},
    {"index": 4, "time": 5_500_000_000, "process": 1, "type": "ok", "f": "read",
     "client": "c1", "seq": 1},
]


def test_linearizability_evidence_is_the_failing_completion() -> None:
    # complete_index is the completion's `index` field, which counts the nemesis op too: the
    # read's completion is index 4, the fifth entry but the fourth client entry
    results = {"checkers": {"linearizability": {"valid": False,
                                                "failure": {"op": {"complete_index": 4}}}}}
    assert first_evidence_s(results, HISTORY) == 5.5
    results["checkers"]["linearizability"]["failure"]["op"]["complete_index"] = 2
    assert first_evidence_s(results, HISTORY) == 3.0


def test_earliest_of_several_checkers() -> None:
    results = {"checkers": {
        "linearizability": {"valid": False, "failure": {"op": {"complete_index": 4}}},
        "exactly-once": {"valid": False, "duplicates": [{"client": "c0", "seq": 1}]},
        "availability": {"valid": False, "recovery": {"heal_s": 10.0, "bound_s": 2.0}},
    }}
    assert first_evidence_s(results, HISTORY) == 3.0


def test_no_failing_checker_no_evidence() -> None:
    results = {"checkers": {"linearizability": {"valid": True},
                            "availability": {"valid": "unknown"}}}
    assert first_evidence_s(results, HISTORY) is None
