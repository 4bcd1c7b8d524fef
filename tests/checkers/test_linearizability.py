"""The search against a brute-force oracle, on histories that are and are not linearizable."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checkers import linearizability
from checkers.history import HistoryError

from .histgen import (
    brute_force,
    kv_step,
    random_append_history,
    random_history,
    random_set_history,
    set_step,
    simulated_history,
)


@pytest.fixture(autouse=True, params=["c", "python"])
def checker(request, monkeypatch):
    """Every test here twice: with the C checker of the register family (which must have been
    built: a silent fallback would leave it untested) and with the Python search alone."""
    if request.param == "c":
        assert linearizability._linfast is not None, "checkers/_linfast.c was not built"
    else:
        monkeypatch.setattr(linearizability, "_linfast", None)
    return request.param


def _check(ops, model="cas-register", **kw):
    # no explanation asked: the C checker then reports its refutations itself
    kw.setdefault("explain", False)
    return linearizability.check(ops, model, **kw)["valid"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 6), procs=st.integers(1, 4))
def test_agrees_with_brute_force(seed, n, procs):
    ops = random_history(random.Random(seed), n, procs)
    assert _check(ops) is brute_force(ops)


def test_agrees_with_brute_force_on_both_verdicts():
    """The same comparison on a fixed sample, which must contain plenty of each verdict."""
    rng = random.Random(7)
    seen = {True: 0, False: 0}
    for _ in range(400):
        ops = random_history(rng, rng.randint(2, 7), rng.randint(2, 4))
        expected = brute_force(ops)
        assert _check(ops) is expected, ops
        seen[expected] += 1
    assert seen[True] >= 60 and seen[False] >= 60, seen


def _mutate(rng: random.Random, ops: list[dict]) -> list[dict]:
    """One completion's outcome changed at random: near-valid histories, where unsound
    pruning shows."""
    ops = [dict(op) for op in ops]
    done = [i for i, op in enumerate(ops) if op["type"] != "invoke"]
    if not done:
        return ops
    op = ops[rng.choice(done)]
    if op["f"] == "read":
        op["value"] = rng.choice((None, 0, 1, 2))
    elif op["f"] == "cas" and rng.random() < 0.5:
        op["type"] = "fail"
        op["compare_failed"] = True
    else:
        op.pop("compare_failed", None)
        op["type"] = rng.choice(("ok", "info"))
    return ops


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 7), procs=st.integers(1, 4),
       mutate=st.booleans())
def test_agrees_with_brute_force_near_valid(seed, n, procs, mutate):
    rng = random.Random(seed)
    ops = simulated_history(rng, n, procs)
    if mutate:
        ops = _mutate(rng, ops)
    assert _check(ops) is brute_force(ops)


def test_a_write_of_the_current_value_is_not_forced():
    """Regression: w(1) is a no-op after w(1), but not after a concurrent w(0)."""
    ops = [
        {"process": 7, "type": "invoke", "f": "write", "value": 1},
        {"process": 7, "type": "ok", "f": "write", "value": 1},
        {"process": 3, "type": "invoke", "f": "write", "value": 1},
        {"process": 15, "type": "invoke", "f": "write", "value": 0},
        {"process": 15, "type": "ok", "f": "write", "value": 0},
        {"process": 19, "type": "invoke", "f": "read", "value": None},
        {"process": 3, "type": "ok", "f": "write", "value": 1},
        {"process": 19, "type": "ok", "f": "read", "value": 1},
    ]
    assert brute_force(ops) is True
    assert _check(ops) is True


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 60), procs=st.integers(1, 8))
def test_simulated_register_is_linearizable(seed, n, procs):
    ops = simulated_history(random.Random(seed), n, procs)
    result = linearizability.check(ops, "cas-register")
    assert result["valid"] is True, result["reason"]


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 200))
def test_simulated_kv_is_linearizable(seed, n):
    ops = simulated_history(random.Random(seed), n, 10, keys=("a", "b", "c", 7))
    result = linearizability.check(ops, "kv")
    assert result["valid"] is True, result["reason"]
    assert result["keys"] == len({op.get("key") for op in ops})


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 40))
def test_corrupting_a_read_is_caught_or_still_possible(seed, n):
    """Change one read of a valid history to a value no op ever writes: never linearizable."""
    rng = random.Random(seed)
    ops = simulated_history(rng, n, 4)
    reads = [i for i, op in enumerate(ops) if op["type"] == "ok" and op["f"] == "read"]
    if not reads:
        return
    ops[rng.choice(reads)]["value"] = 99
    assert _check(ops) is False


def test_info_ops_are_open_ended():
    ops = [
        {"process": 0, "type": "invoke", "f": "write", "value": 1},
        {"process": 0, "type": "info", "f": "write", "value": 1},
        {"process": 1, "type": "invoke", "f": "read", "value": None},
        {"process": 1, "type": "ok", "f": "read", "value": None},
        {"process": 1, "type": "invoke", "f": "read", "value": None},
        {"process": 1, "type": "ok", "f": "read", "value": 1},
        {"process": 1, "type": "invoke", "f": "read", "value": None},
        {"process": 1, "type": "ok", "f": "read", "value": 1},
    ]
    assert _check(ops) is True  # the crashed write took effect between the reads
    ops[5]["value"] = ops[7]["value"] = None
    assert _check(ops) is True  # ... or never
    ops[7]["value"] = 1
    ops[5]["value"] = 2
    assert _check(ops) is False


def test_fail_did_not_happen_but_compare_failed_ran():
    ops = [
        {"process": 0, "type": "invoke", "f": "write", "value": 1},
        {"process": 0, "type": "ok", "f": "write", "value": 1},
        {"process": 0, "type": "invoke", "f": "cas", "value": [1, 2]},
        {"process": 0, "type": "fail", "f": "cas", "value": [1, 2]},
    ]
    assert _check(ops) is True  # Jepsen's fail: the cas did not happen
    ops[3]["compare_failed"] = True
    assert _check(ops) is False  # it ran, so the register cannot have held 1


def test_never_completed_invocation_is_indeterminate():
    ops = [
        {"process": 0, "type": "invoke", "f": "write", "value": 3},
        {"process": 1, "type": "invoke", "f": "read", "value": None},
        {"process": 1, "type": "ok", "f": "read", "value": 3},
    ]
    assert _check(ops) is True


def test_initial_value_is_configurable():
    ops = [
        {"process": 0, "type": "invoke", "f": "read", "value": None},
        {"process": 0, "type": "ok", "f": "read", "value": 0},
    ]
    assert _check(ops) is False  # absent by default
    assert _check(ops, initial=0) is True


def test_harness_kv_histories():
    """The harness's own shape: keys, ints, a never-written key read as null, nemesis events,
    fail and info completions with errors."""
    ops = [
        {"index": 0, "time": 5, "process": "nemesis", "type": "info", "f": "start-partition",
         "value": {"n1": ["n2"]}},
        {"index": 1, "time": 6, "process": 0, "type": "invoke", "f": "read", "key": "k1",
         "value": None},
        {"index": 2, "time": 7, "process": 0, "type": "ok", "f": "read", "key": "k1",
         "value": None, "node": "n1"},
        {"index": 3, "time": 8, "process": 1, "type": "invoke", "f": "cas", "key": "k2",
         "value": [0, 1]},
        {"index": 4, "time": 9, "process": 1, "type": "fail", "f": "cas", "key": "k2",
         "value": [0, 1], "error": "key-does-not-exist"},
        {"index": 5, "time": 10, "process": 2, "type": "invoke", "f": "write", "key": "k2",
         "value": 4},
        {"index": 6, "time": 11, "process": 2, "type": "info", "f": "write", "key": "k2",
         "value": 4, "error": "timeout"},
        {"index": 7, "time": 12, "process": 3, "type": "invoke", "f": "read", "key": "k2",
         "value": None},
        {"index": 8, "time": 13, "process": 3, "type": "ok", "f": "read", "key": "k2",
         "value": 4},
    ]
    result = linearizability.check(ops, model="kv")
    assert result["valid"] is True
    assert result["keys"] == 2 and result["ops"] == 4
    ops[8]["value"] = 5
    result = linearizability.check(ops, model="kv")
    assert result["valid"] is False
    assert result["failed_keys"] == ["k2"]
    assert "k2" in result["reason"]


def test_keys_are_independent():
    """A value written to one key is never read on another."""
    ops = [
        {"process": 0, "type": "invoke", "f": "write", "key": "a", "value": 1},
        {"process": 0, "type": "ok", "f": "write", "key": "a", "value": 1},
        {"process": 0, "type": "invoke", "f": "read", "key": "b", "value": None},
        {"process": 0, "type": "ok", "f": "read", "key": "b", "value": 1},
    ]
    assert _check(ops, "kv") is False
    assert _check(ops, "map") is False


def _concurrent_writes_then(reads: list, n: int = 18) -> list[dict]:
    ops = [{"process": p, "type": "invoke", "f": "write", "value": p} for p in range(n)]
    ops += [{"process": p, "type": "ok", "f": "write", "value": p} for p in range(n)]
    for v in reads:
        ops += [{"process": 0, "type": "invoke", "f": "read", "value": None},
                {"process": 0, "type": "ok", "f": "read", "value": v}]
    return ops


def test_budget_gives_unknown_with_a_reason():
    # 18 concurrent writes, then reads of two of their values in a row: refuting it means
    # visiting every subset of the writes, far beyond the budget
    ops = _concurrent_writes_then([0, 1])
    result = linearizability.check(ops, time_limit=0.3)
    assert result["valid"] == "unknown"
    assert "time limit" in result["reason"]
    result = linearizability.check(ops, memory_limit_mb=1)
    assert result["valid"] == "unknown"
    assert "memory limit" in result["reason"]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 6), procs=st.integers(1, 4))
def test_set_model_agrees_with_brute_force(seed, n, procs):
    ops = random_set_history(random.Random(seed), n, procs)
    assert _check(ops, "set") is brute_force(ops, frozenset(), set_step)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 7), procs=st.integers(1, 4))
def test_append_model_agrees_with_brute_force(seed, n, procs):
    """Porcupine's kv model (get, put, append on strings, initial ""), where the search prunes
    on values that only grow."""
    ops = random_append_history(random.Random(seed), n, procs)
    assert _check(ops, "kv", initial="") is brute_force(ops, "", kv_step)


def test_set_model():
    ops = [
        {"process": 0, "type": "invoke", "f": "add", "value": 1},
        {"process": 1, "type": "invoke", "f": "add", "value": 2},
        {"process": 2, "type": "invoke", "f": "read", "value": None},
        {"process": 2, "type": "ok", "f": "read", "value": [2]},
        {"process": 0, "type": "ok", "f": "add", "value": 1},
        {"process": 1, "type": "info", "f": "add", "value": 2},
        {"process": 2, "type": "invoke", "f": "read", "value": None},
        {"process": 2, "type": "ok", "f": "read", "value": [1, 2]},
    ]
    assert _check(ops, "set") is True
    ops[7]["value"] = [1]  # 2 was seen, so it cannot vanish
    assert _check(ops, "set") is False


def test_queue_model():
    ops = [
        {"process": 0, "type": "invoke", "f": "enqueue", "value": 1},
        {"process": 0, "type": "ok", "f": "enqueue", "value": 1},
        {"process": 0, "type": "invoke", "f": "enqueue", "value": 2},
        {"process": 0, "type": "ok", "f": "enqueue", "value": 2},
        {"process": 1, "type": "invoke", "f": "dequeue", "value": None},
        {"process": 1, "type": "ok", "f": "dequeue", "value": 1},
    ]
    assert _check(ops, "queue") is True
    ops[5]["value"] = 2
    assert _check(ops, "queue") is False


@pytest.mark.parametrize(
    "ops,message",
    [
        ([{"process": 0, "type": "ok", "f": "read", "value": 1}], "no invocation"),
        ([{"process": 0, "type": "invoke", "f": "read", "value": None},
          {"process": 0, "type": "invoke", "f": "read", "value": None}], "still pending"),
        ([{"process": 0, "type": "invoke", "f": "read", "value": None},
          {"process": 0, "type": "ok", "f": "write", "value": 1}], "completes an invocation"),
        ([{"process": 0, "type": "begin", "f": "read", "value": None}], "unknown op type"),
        ([{"process": 0, "type": "invoke", "f": "frob", "value": None}], "no operation 'frob'"),
        ([{"process": 0, "type": "invoke", "f": "cas", "value": 3},
          {"process": 0, "type": "ok", "f": "cas", "value": 3}], "[from, to]"),
    ],
)
def test_nonsense_histories_raise_history_error(ops, message):
    with pytest.raises(HistoryError) as err:
        linearizability.check(ops)
    assert message in str(err.value)
    assert err.value.index is not None


def test_large_harness_history_is_fast_enough():
    """Thousands of ops over many keys, the harness's path: checked well inside the default
    budget (a generous bound; the point is that it is not exponential)."""
    rng = random.Random(3)
    ops = []
    for k in range(40):
        for op in simulated_history(rng, 60, 5, keys=(f"k{k}",)):
            op["process"] = f"{k}-{op['process']}"
            ops.append(op)
    result = linearizability.check(ops, "kv", time_limit=30)
    assert result["valid"] is True
    assert result["keys"] == 40
    assert result["seconds"] < 20


@pytest.mark.slow
def test_brute_force_sweep():
    """Thousands of small histories, random and near-valid, against the oracle."""
    rng = random.Random(2024)
    for _ in range(4000):
        n = rng.randint(1, 8)
        if rng.random() < 0.5:
            ops = random_history(rng, n, rng.randint(1, 4))
        else:
            ops = _mutate(rng, simulated_history(rng, n, rng.randint(1, 4)))
        assert _check(ops) is brute_force(ops), ops


@pytest.mark.slow
def test_simulated_sweep():
    rng = random.Random(99)
    for _ in range(1500):
        ops = simulated_history(rng, rng.randint(1, 150), rng.randint(1, 12),
                                keys=tuple(range(rng.randint(1, 4))))
        result = linearizability.check(ops, "kv")
        assert result["valid"] is True, (result["reason"], ops)


def test_a_value_nothing_wrote_is_refuted_at_once():
    """A read of a value no op could have written before it returned (here: only a failed
    write, which did not happen, wrote it) needs no search, however large the history."""
    ops = _concurrent_writes_then([99], n=40)
    ops[2:2] = [{"process": 50, "type": "invoke", "f": "write", "value": 99},
                {"process": 50, "type": "fail", "f": "write", "value": 99}]
    result = linearizability.check(ops, time_limit=5)
    assert result["valid"] is False
    assert result["configurations"] == 0
    assert "could have written" in result["reason"] and "read() -> 99" in result["reason"]
    assert "write(99) -> fail (did not happen)" in result["reason"]
    # written only by an op invoked after the read completed: the same verdict
    ops[2]["type"] = ops[3]["type"] = "ok"
    ops[2:4] = []
    ops += [{"process": 51, "type": "invoke", "f": "write", "value": 99},
            {"process": 51, "type": "ok", "f": "write", "value": 99}]
    assert linearizability.check(ops, time_limit=5)["valid"] is False
    # the initial value needs no writer
    read99 = [{"process": 0, "type": "invoke", "f": "read", "value": None},
              {"process": 0, "type": "ok", "f": "read", "value": 99}]
    assert linearizability.check(read99)["valid"] is False
    assert linearizability.check(read99, initial=99)["valid"] is True


def test_a_stale_read_is_refuted_at_once_and_names_the_write_it_missed():
    ops = [
        {"process": 0, "type": "invoke", "f": "write", "value": 1},
        {"process": 0, "type": "ok", "f": "write", "value": 1},
        {"process": 1, "type": "invoke", "f": "write", "value": 2},
        {"process": 1, "type": "ok", "f": "write", "value": 2},
        # crashed ops that could write anything but 1: the search would try them all
        *[e for p in range(10, 30) for e in (
            {"process": p, "type": "invoke", "f": "write", "value": 3 + p},
            {"process": p, "type": "info", "f": "write", "value": 3 + p})],
        {"process": 2, "type": "invoke", "f": "read", "value": None},
        {"process": 2, "type": "ok", "f": "read", "value": 1},
    ]
    r = linearizability.check(ops, "cas-register")
    assert r["valid"] is False and "stale read" in r["reason"]
    assert r["failure"]["missed"]["value"] == 2 and r["failure"]["read_from"]["value"] == 1
    assert r["configurations"] == 0
    # a crashed op that may write 1 again makes it legal
    ops.insert(4, {"process": 9, "type": "invoke", "f": "write", "value": 1})
    assert linearizability.check(ops, "cas-register")["valid"] is True


def test_the_stale_reads_page_shows_the_write_it_read_and_the_one_it_missed():
    from checkers.explain import render_html

    ops = [
        {"process": 0, "type": "invoke", "f": "write", "value": 1},
        {"process": 0, "type": "ok", "f": "write", "value": 1},
        {"process": 1, "type": "invoke", "f": "write", "value": 2},
        {"process": 1, "type": "ok", "f": "write", "value": 2},
        {"process": 2, "type": "invoke", "f": "read", "value": None},
        {"process": 2, "type": "ok", "f": "read", "value": 1},
    ]
    page = render_html(linearizability.check(ops, "cas-register"))
    roles = {role: page.count(f'class="op {role}"') for role in ("source", "missed", "failing")}
    assert roles == {"source": 1, "missed": 1, "failing": 1}
    assert ">write(1)</text>" in page and ">write(2)</text>" in page  # labelled, not slivers
    assert "a stale read" in page and "None: no other op" in page
    assert "longest linearizable prefix found" not in page  # no search was needed
    assert 'id="stepper"' not in page and "<script" not in page  # nothing linearized to step
