"""Every history of Porcupine's corpus gets the verdict in EXPECTED.csv."""

from __future__ import annotations

import csv

import pytest

from checkers import linearizability, models
from checkers.formats import read

from .conftest import CORPUS


def _rows() -> list[tuple[str, bool]]:
    with (CORPUS / "EXPECTED.csv").open(newline="") as fh:
        return [(r["file"], r["expected_linearizable"] == "true") for r in csv.DictReader(fh)]


ROWS = _rows() if (CORPUS / "EXPECTED.csv").is_file() else []


def test_corpus_is_complete(corpus):
    assert len(ROWS) == 109  # 103 etcd logs and 6 kv histories
    assert sum(1 for f, _ in ROWS if f.startswith("jepsen/")) == 103


@pytest.mark.parametrize("name,expected", ROWS, ids=[r[0] for r in ROWS])
def test_expected_verdict(corpus, name, expected):
    hist = read(corpus / name)
    model = models.get(hist.defaults["model"], hist.defaults["initial"])
    result = linearizability.check(hist.ops, model, time_limit=60)
    if not hist.ops:
        # Porcupine asserts nothing of an empty file; nothing passes on nothing.
        assert result["valid"] == "unknown" and result["reason"] == "the history has no operations"
        return
    assert result["valid"] is expected, result.get("reason")
    if not expected:
        failure = result["failure"]
        assert failure["op"]["text"]
        assert failure["prefix_length"] == len(failure["prefix"])


def test_etcd_reader_makes_semantics_explicit(corpus):
    hist = read(corpus / "jepsen/etcd_000.log")
    assert hist.format == "porcupine-etcd"
    failed_cas = [op for op in hist.ops if op["type"] == "fail" and op["f"] == "cas"]
    assert failed_cas and all(op.get("compare_failed") is True for op in failed_cas)
    assert not [op for op in hist.ops if op["type"] == "fail" and op["f"] != "cas"]
    infos = [op for op in hist.ops if op["type"] == "info"]
    assert infos and all(op.get("error") == "timed-out" for op in infos)
    # an info completion keeps the invoked value (DESIGN.md), not the log's `:timed-out`
    assert all(op["value"] is not None for op in infos if op["f"] != "read")


def test_kv_per_key_agrees_with_the_whole_map(corpus):
    """Checking key by key (P-compositionality) and the whole map as one object agree."""
    for name in ("kv/c01-ok.txt", "kv/c01-bad.txt"):
        hist = read(corpus / name)
        expected = name.endswith("-ok.txt")
        assert linearizability.check(hist.ops, models.get("kv", ""))["valid"] is expected
        whole = linearizability.check(hist.ops, models.get("map", ""))
        assert whole["valid"] is expected
        assert whole["keys"] == 1


@pytest.mark.slow
def test_kv_per_key_agrees_with_the_whole_map_c10(corpus):
    for name in ("kv/c10-ok.txt", "kv/c10-bad.txt"):
        hist = read(corpus / name)
        whole = linearizability.check(hist.ops, models.get("map", ""))
        assert whole["valid"] is name.endswith("-ok.txt")
