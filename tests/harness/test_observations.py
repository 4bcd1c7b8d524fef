"""Every definite answer is evidence: a cas refused for its compare is an observation."""

from __future__ import annotations

import json

from checkers.linearizability import check
from harness.systems.paxos import outcome_of

CAS = {"f": "cas", "key": "k", "value": [1, 2]}


def test_precondition_and_missing_key_replies_are_observations() -> None:
    for code, error in ((22, "precondition-failed"), (20, "key-does-not-exist")):
        outcome = outcome_of(CAS, {"ok": False, "code": code, "error": error})
        assert outcome.kind == "fail" and outcome.compare_failed
    other = outcome_of(CAS, {"ok": False, "code": 12, "error": "malformed"})
    assert other.kind == "fail" and not other.compare_failed
    read = outcome_of({"f": "read", "key": "k", "value": None},
                      {"ok": False, "code": 20, "error": "key-does-not-exist"})
    assert read.kind == "ok" and read.value is None  # a read of a missing key saw nothing


def _history(compare_failed: bool) -> list[dict]:
    ops = [(0, "invoke", "write", 1), (0, "ok", "write", 1),
           (1, "invoke", "cas", [1, 2]), (1, "fail", "cas", [1, 2])]
    out = []
    for i, (p, t, f, v) in enumerate(ops):
        op = {"index": i, "time": i * 10, "process": p, "type": t, "f": f, "key": "k",
              "value": v}
        if t == "fail" and compare_failed:
            op["compare_failed"] = True
        out.append(op)
    return out


def test_a_wrongly_refused_cas_is_caught_only_as_an_observation() -> None:
    # The register holds 1 when the cas from 1 is refused for its compare: impossible.
    assert check(_history(compare_failed=True), model="kv")["valid"] is False
    # As a plain fail ("did not happen") it would pass.
    assert check(_history(compare_failed=False), model="kv")["valid"] is True


def test_runs_record_compare_failures(tmp_path) -> None:
    from tests.harness.conftest import harness

    store = tmp_path / "store"
    proc = harness("run", "--nemesis", "none", "--time-limit", "5", "--seed", "1", "--store",
                   str(store), "--quiet")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    history = [json.loads(line) for line in
               ((store / "latest").resolve() / "history.jsonl").read_text().splitlines()]
    observed = [op for op in history if op.get("compare_failed")]
    assert observed and all(op["type"] == "fail" and op["f"] == "cas" for op in observed)
    assert all(op.get("error") in ("precondition-failed", "key-does-not-exist")
               for op in observed)
