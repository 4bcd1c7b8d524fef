"""analyze() over hand-made run directories: every checker composed into results.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.report.analysis import analyze
from tests.report.fakerun import make_run


@pytest.mark.parametrize("workload", ["register", "set"])
def test_clean_run_is_valid(tmp_path: Path, workload: str) -> None:
    results = analyze(make_run(tmp_path, workload=workload))
    assert results["valid"] is True, results["reason"]
    assert results["reason"] is None
    names = set(results["checkers"])
    assert {"agreement", "exactly-once", "availability"} <= names
    assert ("linearizability" if workload == "register" else "set") in names
    windows = results["perf"]["windows"]
    assert list(windows) == ["warmup", "faults", "recovery"]
    for w in windows.values():
        assert w["ok"] > 0 and w["latency_ms"]["all"]["p50"] is not None
        assert w["counters"] is not None
    assert results["perf"]["recovery"]["time_to_first_ok_s"] is not None
    assert results["perf"]["fast_path"]["p50_ratio"] is not None
    assert results["run"]["workload"] == workload
    json.dumps(results)  # results.json must serialize


@pytest.mark.parametrize("workload,fault,checker,verdict", [
    ("register", "divergent", "agreement", False),
    ("register", "digest", "agreement", False),
    ("register", "duplicate", "exactly-once", False),
    ("set", "duplicate", "exactly-once", False),
    ("set", "lost-add", "set", False),
    ("register", "vacuous", "availability", "unknown"),
    ("set", "vacuous", "set", "unknown"),
    ("register", "no-recovery", "availability", False),
])
def test_each_fault_is_caught(tmp_path: Path, workload: str, fault: str, checker: str,
                              verdict: object) -> None:
    results = analyze(make_run(tmp_path, workload=workload, fault=fault))
    assert results["checkers"][checker]["valid"] == verdict, results["checkers"][checker]
    assert results["valid"] == verdict
    assert results["reason"]


def test_lost_add_is_also_a_lost_update_for_exactly_once(tmp_path: Path) -> None:
    results = analyze(make_run(tmp_path, workload="set", fault="lost-add"))
    assert results["checkers"]["exactly-once"]["lost_count"] == 1


def test_a_crashing_checker_is_unknown_not_a_lost_analysis(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    (run_dir / "nodes" / "n1" / "log.json").write_text('{"first": 0, "entries": 7}')
    results = analyze(run_dir)
    assert results["checkers"]["agreement"]["valid"] == "unknown"
    assert "checker error" in results["checkers"]["agreement"]["reason"]
    assert results["checkers"]["availability"]["valid"] is True
    assert results["valid"] == "unknown"


def test_missing_node_files_and_phases(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    for node in ("n1", "n2", "n3"):
        (run_dir / "nodes" / node / "log.json").write_text("null")
        (run_dir / "nodes" / node / "status.json").write_text("null")
    (run_dir / "phases.json").unlink()
    results = analyze(run_dir)
    assert results["checkers"]["agreement"]["valid"] == "unknown"
    assert results["valid"] == "unknown"
    assert results["perf"]["windows"] == {}


def test_the_failing_op_is_named_with_the_node_that_served_it() -> None:
    # the checker names ops by their `index` field, which counts nemesis entries too: a
    # position among client ops would land two entries later, on n2's write
    from harness.report.analysis import _linearizability

    def op(i: int, p: int, t: str, f: str, v: object, node: str) -> dict:
        return {"index": i, "time": i * 1_000_000, "process": p, "type": t, "f": f,
                "key": "k", "value": v, "node": node}

    client_ops = [op(2, 0, "invoke", "write", 1, "n1"), op(3, 0, "ok", "write", 1, "n1"),
                  op(4, 1, "invoke", "read", None, "n3"), op(5, 1, "ok", "read", None, "n3"),
                  op(6, 2, "invoke", "write", 2, "n2"), op(7, 2, "ok", "write", 2, "n2")]
    result = _linearizability(client_ops)
    assert result["valid"] is False
    assert result["failure"]["op"]["complete_index"] == 5
    assert result["failure"]["op"]["node"] == "n3"
    assert result["reason"].endswith("(served by n3)")
