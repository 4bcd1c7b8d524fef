"""EDN histories are judged by Knossos's rules (knossos/model.clj), model by model, on small
crafted histories; JSONL keeps the harness's own semantics where they differ on purpose."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from checkers import formats, linearizability, models
from checkers.history import HistoryError
from harness.cli import main


def _edn(*events: str) -> str:
    return "\n".join("{" + e + "}" for e in events) + "\n"


def _verdict(tmp_path: Path, text: str, model: str | None = None, initial=models._UNSET,
             name: str = "h.edn") -> object:
    p = tmp_path / name
    p.write_text(text)
    hist = formats.read(p)
    m = models.for_history(hist, model, *(() if initial is models._UNSET else (initial,)))
    return linearizability.check(hist.ops, m)["valid"]


def _as_jsonl(tmp_path: Path, text: str) -> str:
    hist = formats.read(_write(tmp_path, "x.edn", text))
    return "".join(json.dumps(op) + "\n" for op in hist.ops)


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


WRITE_1_READ_NIL = _edn(
    ":process 0, :type :invoke, :f :write, :value 1",
    ":process 0, :type :ok, :f :write, :value 1",
    ":process 1, :type :invoke, :f :read, :value nil",
    ":process 1, :type :ok, :f :read, :value nil",
)


@pytest.mark.parametrize("model", ["register", "cas-register"])
def test_a_nil_read_is_always_legal_in_edn_but_absent_in_jsonl(tmp_path, model):
    assert _verdict(tmp_path, WRITE_1_READ_NIL, model, 0) is True
    # the same ops as the harness's JSONL: null means the key was absent, which it was not
    jsonl = _as_jsonl(tmp_path, WRITE_1_READ_NIL)
    assert _verdict(tmp_path, jsonl, model, 0, name="h.jsonl") is False


def test_a_read_of_a_value_never_written_is_still_invalid_in_edn(tmp_path):
    text = WRITE_1_READ_NIL.replace(":ok, :f :read, :value nil", ":ok, :f :read, :value 2")
    assert _verdict(tmp_path, text, "cas-register", 0) is False


def test_every_edn_fail_did_not_happen_even_a_compare_failed_cas(tmp_path):
    # after write 1 a cas [1 2] must succeed; our JSONL's compare_failed says it ran and saw
    # another value (impossible), Knossos reads any :fail as "did not happen" (fine)
    text = _edn(
        ":process 0, :type :invoke, :f :write, :value 1",
        ":process 0, :type :ok, :f :write, :value 1",
        ":process 1, :type :invoke, :f :cas, :value [1 2]",
        ":process 1, :type :fail, :f :cas, :value [1 2], :compare-failed true",
        ":process 1, :type :invoke, :f :read, :value nil",
        ":process 1, :type :ok, :f :read, :value 1",
    )
    assert _verdict(tmp_path, text, "cas-register") is True
    assert _verdict(tmp_path, _as_jsonl(tmp_path, text), "cas-register",
                    name="h.jsonl") is False


def test_an_ok_ops_value_is_its_completions(tmp_path):
    # Knossos's history/complete fills the invocation's value from the :ok
    text = _edn(
        ":process 0, :type :invoke, :f :write, :value 1",
        ":process 0, :type :ok, :f :write, :value 2",
        ":process 1, :type :invoke, :f :read, :value nil",
        ":process 1, :type :ok, :f :read, :value 2",
    )
    assert _verdict(tmp_path, text, "register") is True
    assert _verdict(tmp_path, text.replace(":value 2}\n{:process 1, :type :invoke",
                                           ":value 1}\n{:process 1, :type :invoke"),
                    "register") is False


MUTEX = [
    ":process 0, :type :invoke, :f :acquire, :value nil",
    ":process 0, :type :ok, :f :acquire, :value nil",
    ":process 1, :type :invoke, :f :acquire, :value nil",
    ":process 1, :type :ok, :f :acquire, :value nil",
]


def test_mutex_two_holders_is_invalid_and_a_release_between_is_valid(tmp_path):
    assert _verdict(tmp_path, _edn(*MUTEX)) is False  # the model is inferred: mutex
    released = MUTEX[:2] + [":process 0, :type :invoke, :f :release, :value nil",
                            ":process 0, :type :ok, :f :release, :value nil"] + MUTEX[2:]
    assert _verdict(tmp_path, _edn(*released)) is True
    # a crashed release may have happened
    crashed = MUTEX[:2] + [":process 0, :type :invoke, :f :release, :value nil",
                           ":process 0, :type :info, :f :release, :value nil"] + MUTEX[2:]
    assert _verdict(tmp_path, _edn(*crashed)) is True
    # a release of a free mutex is not held
    assert _verdict(tmp_path, _edn(":process 0, :type :invoke, :f :release, :value nil",
                                   ":process 0, :type :ok, :f :release, :value nil")) is False


def _txn(p: int, t: str, value: str) -> str:
    return f":process {p}, :type :{t}, :f :txn, :value {value}"


def test_multi_register_reads_writes_and_nil_reads(tmp_path):
    text = _edn(_txn(0, "invoke", "[[:write :x 1] [:read :y nil]]"),
                _txn(0, "ok", "[[:write :x 1] [:read :y 0]]"),
                _txn(1, "invoke", "[[:read :x nil] [:read :y nil]]"),
                _txn(1, "ok", "[[:read :x 1] [:read :y nil]]"))
    assert _verdict(tmp_path, text, None, {"x": 0, "y": 0}) is True
    # y was never written: from an empty initial map it holds nil, never 0
    assert _verdict(tmp_path, text) is False
    stale = text.replace("[[:read :x 1] [:read :y nil]]", "[[:read :x 0] [:read :y nil]]")
    assert _verdict(tmp_path, stale, None, {"x": 0, "y": 0}) is False
    # a txn's reads see its own earlier writes
    own = _edn(_txn(0, "invoke", "[[:write :x 5] [:read :x nil]]"),
               _txn(0, "ok", "[[:write :x 5] [:read :x 5]]"))
    assert _verdict(tmp_path, own, None, {"x": 0}) is True
    assert _verdict(tmp_path, own.replace(":read :x 5", ":read :x 0"), None, {"x": 0}) is False


def test_multi_register_refuses_a_malformed_txn(tmp_path):
    text = _edn(_txn(0, "invoke", "[[:increment :x 1]]"), _txn(0, "ok", "[[:increment :x 1]]"))
    with pytest.raises(HistoryError, match=r"\[read\|write, key, value\]"):
        _verdict(tmp_path, text)


def _queue(*ops: tuple[int, str, str, str]) -> str:
    return _edn(*(f":process {p}, :type :{t}, :f :{f}, :value {v}" for p, t, f, v in ops))


def test_fifo_queue_by_knossos_a_dequeue_from_empty_is_illegal(tmp_path):
    text = _queue((0, "invoke", "dequeue", "nil"), (0, "ok", "dequeue", "nil"))
    assert _verdict(tmp_path, text, "fifo-queue") is False
    # the harness's own queue: a dequeue that returned nothing saw it empty
    assert _verdict(tmp_path, _as_jsonl(tmp_path, text), "fifo-queue", name="h.jsonl") is True
    ordered = _queue((0, "invoke", "enqueue", "1"), (0, "ok", "enqueue", "1"),
                     (0, "invoke", "enqueue", "2"), (0, "ok", "enqueue", "2"),
                     (1, "invoke", "dequeue", "nil"), (1, "ok", "dequeue", "2"))
    assert _verdict(tmp_path, ordered, "fifo-queue") is False
    assert _verdict(tmp_path, ordered, "unordered-queue") is True
    twice = ordered + _queue((1, "invoke", "dequeue", "nil"), (1, "ok", "dequeue", "2"))
    assert _verdict(tmp_path, twice, "unordered-queue") is False


def test_set_by_knossos_a_nil_read_never_matches(tmp_path):
    text = _queue((0, "invoke", "add", "1"), (0, "ok", "add", "1"),
                  (1, "invoke", "read", "nil"), (1, "ok", "read", "#{1}"))
    assert _verdict(tmp_path, text) is True  # inferred: set
    assert _verdict(tmp_path, text.replace("#{1}", "#{1 2}")) is False
    assert _verdict(tmp_path, text.replace("#{1}", "nil")) is False


def test_a_model_without_the_operation_names_the_one_that_has_it(tmp_path, capsys):
    p = _write(tmp_path, "t.edn", _edn(_txn(0, "invoke", "[[:read :x nil]]"),
                                       _txn(0, "ok", "[[:read :x 1]]")))
    assert main(["check", "--model", "cas-register", str(p)]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "model cas-register has no operation 'txn' (process 0); multi-register has it " \
           "(--model multi-register)" in err[0]
    assert f"{p}:" in err[0]
    # without --model the operations choose it
    assert main(["check", "--initial", '{"x": 1}', str(p)]) == 0
    assert "model multi-register" in capsys.readouterr().out


def test_check_on_the_command_line_reports_knossos_semantics(tmp_path, capsys):
    p = _write(tmp_path, "h.edn", WRITE_1_READ_NIL)
    assert main(["check", "--json", "--initial", "0", str(p)]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["valid"] is True and row["semantics"] == "knossos" and row["format"] == "edn"
