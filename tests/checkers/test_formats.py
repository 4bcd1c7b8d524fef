"""Reading and writing history files, and clear errors on malformed ones."""

from __future__ import annotations

import io
import json
import random

import pytest

from checkers import formats, linearizability
from checkers.formats import load, read
from checkers.history import HistoryError

from .histgen import simulated_history

ETCD = """\
INFO  jepsen.util - 0\t:invoke\t:write\t1
INFO  jepsen.util - 0\t:ok\t:write\t1
INFO  jepsen.util - 1   :invoke :cas    [1 2]
INFO  jepsen.util - 1   :fail   :cas    [1 2]
"""


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_etcd_fail_cas_means_compare_failed(tmp_path):
    """The same four events: invalid as a Porcupine etcd log (the cas ran and saw a value
    other than 1, impossible right after write 1), valid as Jepsen EDN (it did not happen)."""
    hist = read(_write(tmp_path, "a.log", ETCD))
    assert hist.format == "porcupine-etcd"
    assert hist.ops[3]["compare_failed"] is True
    assert linearizability.check(hist.ops)["valid"] is False
    edn = "\n".join(
        f"{{:process {p}, :type :{t}, :f :{f}, :value {v}}}"
        for p, t, f, v in [(0, "invoke", "write", "1"), (0, "ok", "write", "1"),
                           (1, "invoke", "cas", "[1 2]"), (1, "fail", "cas", "[1 2]")]
    )
    hist = read(_write(tmp_path, "a.edn", edn))
    assert hist.format == "edn"
    assert "compare_failed" not in hist.ops[3]
    assert linearizability.check(hist.ops)["valid"] is True


def test_etcd_timed_out_read_and_crashed_write(tmp_path):
    text = (
        "INFO  jepsen.util - 0 :invoke :write 3\n"
        "INFO  jepsen.util - 0 :info :write :timed-out\n"
        "some other log line\n"
        "INFO  jepsen.util - 1 :invoke :read nil\n"
        "INFO  jepsen.util - 1 :fail :read :timed-out\n"
        "INFO  jepsen.util - 1 :invoke :read nil\n"
        "INFO  jepsen.util - 1 :ok :read 3\n"
    )
    hist = read(_write(tmp_path, "b.log", text))
    assert [op["type"] for op in hist.ops] == ["invoke", "info", "invoke", "info", "invoke",
                                                "ok"]
    assert hist.ops[1]["value"] == 3  # the invoked value is kept
    assert hist.lines == [1, 2, 4, 5, 6, 7]
    assert linearizability.check(hist.ops)["valid"] is True


def test_porcupine_kv_reader(tmp_path):
    text = (
        '{:process 1, :type :invoke, :f :append, :key "k", :value "x"}\n'
        '{:process 1, :type :ok, :f :append, :key "k", :value "x"}\n'
        '{:process 2, :type :invoke, :f :get, :key "k", :value nil}\n'
        '{:process 2, :type :ok, :f :get, :key "k", :value "x"}\n'
    )
    hist = read(_write(tmp_path, "c.txt", text))
    assert hist.format == "porcupine-kv"
    assert hist.defaults == {"model": "kv", "initial": ""}
    assert hist.ops[3] == {"index": 3, "process": 2, "type": "ok", "f": "get", "key": "k",
                           "value": "x"}
    # the generic EDN reader reads the same ops
    assert formats.parse_edn(text).ops == hist.ops


def test_edn_vector_and_records(tmp_path):
    text = """[{:type :invoke, :f :write, :value 1, :process 0, :time 10}
 {:type :ok, :f :write, :value 1, :process 0, :time 20}
 #jepsen.history.Op{:type :invoke, :f :read, :value nil, :process :nemesis}
 {:type :invoke :f :cas :value [1 2] :process 3}
 {:type :ok :f :cas :value [1 2] :process 3 :note #{1 2}}]"""
    hist = read(_write(tmp_path, "h.edn", text))
    assert len(hist.ops) == 5
    # the fast reader finds the ops' lines only when an error needs one
    assert hist.error_at(HistoryError("bad", index=3)).line == 4
    assert hist.lines == [1, 2, 3, 4, 5]
    assert hist.ops[2]["process"] == "nemesis"
    assert hist.ops[3]["value"] == [1, 2]
    assert hist.ops[4]["note"] == [1, 2]


def test_jsonl_round_trip_through_edn(tmp_path):
    ops = simulated_history(random.Random(5), 80, 5, keys=("a", "b"))
    ops[3]["error"] = "timeout"
    ops.append({"index": len(ops), "time": 9, "process": "nemesis", "type": "info",
                "f": "start-partition", "value": {"n1": ["n2", "n3"]}})
    buf = io.StringIO()
    formats.write_edn(ops, buf)
    back = formats.parse_edn(buf.getvalue()).ops
    assert back == ops
    p = tmp_path / "history.jsonl"
    with p.open("w") as fh:
        formats.write_jsonl(ops, fh)
    assert load(p) == ops


def test_edn_writer_escapes_strings():
    op = {"index": 0, "process": 1, "type": "ok", "f": "read", "key": 'a"b\\c\nd',
          "value": "x y"}
    text = formats.dumps_edn(op)
    assert formats.parse_edn(text).ops == [op]


@pytest.mark.parametrize(
    "name,text,line,message",
    [
        ("t.edn", "{:process 0, :type :invoke, :f :read, :value nil}\n"
                  "{:process 0, :type :ok, :f :read, :va", 2, "never closed"),
        ("t.edn", "{:process 0, :type :invoke, :f :read}\n{:process 0, :type :bogus, :f :read}\n",
         2, "unknown op type 'bogus'"),
        ("t.edn", "{:process 0, :type :invoke, :f :read}\n{:process 0 :type}\n", 2,
         "EDN syntax error"),
        ("t.edn", "{:process 0, :type :invoke, :f :read}\n:oops\n", 2, "expected an op map"),
        ("t.edn", "{:a 1}}\n", 1, "unbalanced"),
        ("t.jsonl", '{"process": 0, "type": "invoke", "f": "read"}\n{"process": 0,\n'
                    '{"process": 0, "type": "ok", "f": "read"}\n', 2, "not JSON"),
        ("t.jsonl", '{"process": 0, "type": "done", "f": "read"}\n', 1, "unknown op type"),
        ("t.jsonl", '{"type": "invoke", "f": "read"}\n', 1, "no process"),
        ("t.log", "INFO  jepsen.util - 0 :invoke :frob 1\n", 1, "unknown function"),
        ("t.log", "INFO  jepsen.util - 0 :invoke :write [1\n", 1, "cannot read the value"),
        ("t.log", "INFO  jepsen.util - 0 :begin :write 1\n", 1, "unknown op type"),
    ],
)
def test_malformed_files_name_the_line(tmp_path, name, text, line, message):
    p = _write(tmp_path, name, text)
    with pytest.raises(HistoryError) as err:
        read(p)
    assert err.value.line == line
    assert message in str(err.value)
    assert str(err.value).startswith(f"{p}:{line}: ")
    assert "\n" not in str(err.value)


def test_torn_last_jsonl_line_is_a_warning(tmp_path):
    good = {"index": 0, "process": 0, "type": "invoke", "f": "read", "value": None}
    p = _write(tmp_path, "h.jsonl", json.dumps(good) + '\n{"index": 1, "proc')
    hist = read(p)
    assert hist.ops == [good]
    assert hist.warnings and "truncated" in hist.warnings[0]


def test_completion_without_invocation_names_the_line(tmp_path):
    p = _write(tmp_path, "h.jsonl", "\n".join([
        json.dumps({"process": 0, "type": "invoke", "f": "write", "value": 1}),
        "",
        json.dumps({"process": 0, "type": "ok", "f": "write", "value": 1}),
        json.dumps({"process": 4, "type": "ok", "f": "read", "value": 1}),
    ]) + "\n")
    hist = read(p)
    with pytest.raises(HistoryError) as err:
        linearizability.check(hist.ops)
    located = hist.error_at(err.value)
    assert located.line == 4
    assert "no invocation" in str(located)


def test_unknown_format_is_refused(tmp_path):
    p = _write(tmp_path, "notes.txt", "hello world\n")
    with pytest.raises(HistoryError) as err:
        read(p)
    assert "format" in str(err.value)
    with pytest.raises(HistoryError):
        read(p, "yaml")


def test_empty_etcd_log_is_an_empty_history(tmp_path):
    hist = read(_write(tmp_path, "etcd_095.log", ""))
    assert hist.ops == [] and hist.format == "porcupine-etcd"
    # nothing passes on nothing (issue 13): an empty history is unknown, not valid
    assert linearizability.check(hist.ops)["valid"] == "unknown"
