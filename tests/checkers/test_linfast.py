"""The register family's checker in C against the Python checker: the same verdicts, the same
refusals of bad input, and the generated classes decided in C without falling back."""

from __future__ import annotations

import random

import pytest

from checkers import generate, linearizability
from checkers.history import HistoryError

from .histgen import random_append_history, random_history, simulated_history


@pytest.fixture
def fast():
    assert linearizability._linfast is not None, "checkers/_linfast.c was not built"
    return linearizability._linfast


def _python(ops, model="cas-register", **kw):
    saved = linearizability._linfast
    linearizability._linfast = None
    try:
        return linearizability.check(ops, model, **kw)
    finally:
        linearizability._linfast = saved


def _decided(fast, ops, cas=True, initial=None, knossos=False, append=False):
    """The C checker's own verdict, or None when it leaves the history to Python."""
    got = fast.check(ops, False, cas, append, initial, knossos, float("inf"),
                     linearizability.FAST_CONFIGURATIONS_PER_OP, 2**30)
    return None if got is None else got[0]


CLASSES = [
    {"processes": 3, "crashed": 0.0},
    {"processes": 5, "crashed": 0.1},
    {"processes": 10, "crashed": 0.2},
    {"processes": 10, "crashed": 0.1, "keys": 8},
]


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: f"{c['processes']}p-{c['crashed']}")
def test_the_generated_classes_are_decided_in_c(fast, cls):
    for seed in range(3):
        valid = generate.register_history(ops=1000, seed=seed, **cls)
        stale = generate.register_history(ops=1000, seed=seed, stale_read=True, **cls)
        assert _decided(fast, valid) is True
        assert _decided(fast, stale) is False
        assert _python(stale, explain=False)["valid"] is False


def test_same_verdicts_as_the_python_checker_on_random_histories(fast):
    """Many keys, crashed ops, failed compares, both semantics and initial values: wherever C
    decides, it decides as Python does; and it decides most of them itself."""
    rng = random.Random(11)
    decided = {True: 0, False: 0}
    for n in range(1500):
        if n % 2:
            ops = simulated_history(rng, rng.randint(5, 40), rng.randint(2, 6),
                                    keys=("a", "b", 3)[: rng.randint(1, 3)])
        else:
            ops = random_history(rng, rng.randint(3, 12), rng.randint(2, 4))
        if rng.random() < 0.2 and len(ops) > 2:
            ops.insert(rng.randrange(len(ops)), {"process": "nemesis", "type": "info",
                                                 "f": "start-partition", "value": {"n1": [2]}})
        model = rng.choice(("cas-register", "kv"))
        knossos = rng.random() < 0.25
        initial = rng.choice((None, 0))
        m = linearizability._models.get(model, initial, knossos=knossos)
        expected = _python(ops, m, explain=False)["valid"]
        got = _decided(fast, ops, True, initial, knossos)
        if got is not None:
            assert got is expected, (ops, model, knossos, initial)
            decided[got] += 1
        full = linearizability.check(ops, m, explain=False)
        assert full["valid"] is expected
    assert decided[True] >= 500 and decided[False] >= 100, decided


def test_same_verdicts_as_the_python_checker_with_appends(fast):
    """Porcupine's kv model: gets, puts and appends on strings from "" (the search prunes a
    configuration whose value a pending get can no longer see)."""
    rng = random.Random(5)
    decided = {True: 0, False: 0}
    m = linearizability._models.get("kv", "")
    for _ in range(1500):
        ops = random_append_history(rng, rng.randint(2, 14), rng.randint(2, 5))
        expected = _python(ops, m, explain=False)["valid"]
        got = _decided(fast, ops, True, "", False, append=True)
        assert got is not None, ops
        assert got is expected, ops
        decided[got] += 1
    assert decided[True] >= 150 and decided[False] >= 150, decided


def test_a_valid_result_has_the_python_checkers_fields(fast):
    ops = generate.register_history(ops=200, keys=3, seed=4)
    ours = linearizability.check(ops)
    theirs = _python(ops)
    assert ours["valid"] is theirs["valid"] is True
    assert set(ours) == set(theirs)
    for name in ("model", "ops", "ok", "fail", "info", "keys"):
        assert ours[name] == theirs[name], name


def test_an_explanation_still_comes_from_the_python_checker(fast):
    ops = generate.register_history(ops=300, seed=2, stale_read=True)
    r = linearizability.check(ops)
    assert r["valid"] is False and "stale read" in r["reason"] and "failure" in r


BAD = [
    # a completion without an invocation
    [{"process": 0, "type": "ok", "f": "read", "value": 1}],
    # two invocations pending on one process
    [{"process": 0, "type": "invoke", "f": "write", "value": 1},
     {"process": 0, "type": "invoke", "f": "write", "value": 2}],
    # an op the model does not know
    [{"process": 0, "type": "invoke", "f": "dequeue", "value": None},
     {"process": 0, "type": "ok", "f": "dequeue", "value": 1}],
    # a completion of another function
    [{"process": 0, "type": "invoke", "f": "write", "value": 1},
     {"process": 0, "type": "ok", "f": "read", "value": 1}],
    # a cas whose value is not [from, to]
    [{"process": 0, "type": "invoke", "f": "cas", "value": 1},
     {"process": 0, "type": "ok", "f": "cas", "value": 1}],
    # compare_failed on a write
    [{"process": 0, "type": "invoke", "f": "write", "value": 1},
     {"process": 0, "type": "fail", "f": "write", "value": 1, "compare_failed": True}],
    # a value nested past the limit
    [{"process": 0, "type": "invoke", "f": "write", "value": 1, "x": [[[[[[[[[[[[[[[[[[[[[[[[[[[
        [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]
        ]]]]]]]]]]]]]]]]]]]]]]]]]]]},
     {"process": 0, "type": "ok", "f": "write", "value": 1}],
    # an unknown type
    [{"process": 0, "type": "done", "f": "write", "value": 1}],
    # a key that changes between invocation and completion
    [{"process": 0, "type": "invoke", "f": "write", "key": "a", "value": 1},
     {"process": 0, "type": "ok", "f": "write", "key": "b", "value": 1}],
]


@pytest.mark.parametrize("ops", BAD, ids=range(len(BAD)))
def test_bad_input_gets_the_python_checkers_refusal(fast, ops):
    assert _decided(fast, ops) is None
    with pytest.raises(HistoryError) as ours:
        linearizability.check(ops)
    with pytest.raises(HistoryError) as theirs:
        _python(ops)
    assert str(ours.value) == str(theirs.value)


def test_processes_python_counts_equal_are_left_to_python(fast):
    # True == 1 for a dict: Python pairs these two events; the C checker must not differ
    ops = [{"process": True, "type": "invoke", "f": "write", "value": 1},
           {"process": 1, "type": "ok", "f": "write", "value": 1},
           {"process": 2, "type": "invoke", "f": "read", "value": None},
           {"process": 2, "type": "ok", "f": "read", "value": 1}]
    assert _decided(fast, ops) is None
    assert linearizability.check(ops)["valid"] is _python(ops)["valid"] is True


def test_values_it_cannot_intern_are_left_to_python(fast):
    ops = [{"process": 0, "type": "invoke", "f": "write", "value": [1, 2]},
           {"process": 0, "type": "ok", "f": "write", "value": [1, 2]},
           {"process": 1, "type": "invoke", "f": "read", "value": None},
           {"process": 1, "type": "ok", "f": "read", "value": [1, 2]}]
    assert _decided(fast, ops) is None
    assert linearizability.check(ops)["valid"] is True
