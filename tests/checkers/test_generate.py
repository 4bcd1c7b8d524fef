"""The history generator's classes: valid by construction, invalid with the stale read."""

from __future__ import annotations

import pytest

from checkers import generate, linearizability
from checkers.generate import STALE, register_history

# (refuting the stale read of the many-crashed classes is the hard search: kept short here)
CLASSES = [
    dict(ops=300, processes=5, keys=1, crashed=0.1),
    dict(ops=80, processes=10, keys=1, crashed=0.2),
    dict(ops=300, processes=3, keys=4, crashed=0.0),
    dict(ops=150, processes=8, keys=3, crashed=0.3),
]


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_generated_history_is_valid_and_its_stale_twin_is_not(cls, seed):
    model = "kv" if cls["keys"] > 1 else "cas-register"
    good = register_history(seed=seed, **cls)
    assert linearizability.check(good, model, time_limit=60)["valid"] is True
    bad = register_history(seed=seed, stale_read=True, **cls)
    r = linearizability.check(bad, model, time_limit=60)
    assert r["valid"] is False, r["reason"]
    # the twins differ only in the final read's value
    diff = [(a, b) for a, b in zip(good, bad, strict=True) if a != b]
    assert len(diff) == 1 and diff[0][1]["f"] == "read" and diff[0][1]["value"] == STALE


def test_the_classes_have_what_they_say():
    h = register_history(ops=2000, processes=10, crashed=0.2, seed=7)
    invokes = [op for op in h if op["type"] == "invoke"]
    infos = [op for op in h if op["type"] == "info"]
    assert len(invokes) == 2000
    assert 0.15 < len(infos) / len(invokes) < 0.25
    # a crashed client comes back as a new process: none acts after its info
    crashed_at = {op["process"]: op["index"] for op in infos}
    assert all(op["index"] <= crashed_at.get(op["process"], op["index"]) for op in h)
    assert len({op["process"] for op in h}) > len(infos)
    assert register_history(ops=100, seed=3) == register_history(ops=100, seed=3)
    assert register_history(ops=100, seed=3) != register_history(ops=100, seed=4)


def test_bad_parameters_are_refused_in_one_line(capsys):
    assert generate.main(["--ops", "5"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ops >= 10" in err[0]
