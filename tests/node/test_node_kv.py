"""The KV state machine and its session table."""

from __future__ import annotations

import json

from node.kv import KV


def cmd(seq: int, op: str, key: object = "k", client: str = "c", **kw: object) -> dict:
    return {"client": client, "seq": seq, "op": op, "key": key, **kw}


def test_register_ops_and_errors() -> None:
    kv = KV()
    assert kv.apply(cmd(1, "read"))["code"] == 20
    assert kv.apply(cmd(2, "cas", **{"from": 1, "to": 2}))["code"] == 20
    assert kv.apply(cmd(3, "write", value=1)) == {"ok": True}
    assert kv.apply(cmd(4, "read")) == {"ok": True, "value": 1}
    r = kv.apply(cmd(5, "cas", **{"from": 7, "to": 2}))
    assert r["code"] == 22 and r["definite"] is True
    assert kv.apply(cmd(6, "cas", **{"from": 1, "to": 2})) == {"ok": True}
    assert kv.apply(cmd(7, "read")) == {"ok": True, "value": 2}


def test_cas_compares_json_values_strictly() -> None:
    kv = KV()
    kv.apply(cmd(1, "write", value=True))
    # 1 == True in Python, but they are different JSON values
    assert kv.apply(cmd(2, "cas", **{"from": 1, "to": 5}))["code"] == 22
    kv.apply(cmd(3, "write", value={"a": [1, 2]}))
    assert kv.apply(cmd(4, "cas", **{"from": {"a": [1, 2]}, "to": 0})) == {"ok": True}


def test_add_builds_a_sorted_set() -> None:
    kv = KV()
    for i, v in enumerate([5, 3, 9, 3]):
        assert kv.apply(cmd(i + 1, "add", key="s", value=v)) == {"ok": True}
    assert kv.apply(cmd(10, "read", key="s")) == {"ok": True, "value": [3, 5, 9]}
    kv.apply(cmd(11, "add", key="m", value="b"))
    kv.apply(cmd(12, "add", key="m", value=2))
    assert kv.apply(cmd(13, "read", key="m"))["value"] == [2, "b"]
    kv.apply(cmd(14, "write", key="r", value=1))
    assert kv.apply(cmd(15, "add", key="r", value=1))["code"] == 22


def test_retry_applies_once_and_gets_the_same_reply() -> None:
    kv = KV()
    kv.apply(cmd(1, "write", value=1))
    first = kv.apply(cmd(2, "cas", **{"from": 1, "to": 2}))
    kv.apply(cmd(1, "write", key="o", value=10, client="other"))
    # the retry of seq 2 must not run the cas again (it would now fail)
    assert kv.apply(cmd(2, "cas", **{"from": 1, "to": 2})) == first == {"ok": True}
    assert kv.apply(cmd(3, "add", key="s", value=1)) == {"ok": True}
    before = kv.digest()
    assert kv.apply(cmd(3, "add", key="s", value=1)) == {"ok": True}
    assert kv.digest() == before
    # an older seq than the last applied one is ignored
    assert kv.apply(cmd(1, "write", value=99)) is None
    assert kv.value_of("k") == (True, 2)


def test_without_dedup_a_retry_applies_twice() -> None:
    kv = KV(dedup=False)
    kv.apply(cmd(1, "write", value=1))
    kv.apply(cmd(1, "write", value=2, client="d"))
    kv.apply(cmd(1, "write", value=1))
    assert kv.value_of("k") == (True, 1)


def test_snapshot_round_trip_and_digest() -> None:
    kv = KV()
    kv.apply(cmd(1, "write", key=7, value=[1, 2]))
    kv.apply(cmd(2, "add", key="s", value=4))
    kv.apply(cmd(3, "write", key="7", value="str-key"))
    snap = json.loads(json.dumps(kv.snapshot()))
    kv2 = KV.from_snapshot(snap)
    assert kv2.digest() == kv.digest()
    assert kv2.value_of(7) == (True, [1, 2])
    assert kv2.value_of("7") == (True, "str-key")
    assert kv2.session_reply("c", 3)[0] == "done"
    kv2.apply(cmd(4, "write", key=7, value=0))
    assert kv2.digest() != kv.digest()


def test_digest_does_not_depend_on_insertion_order() -> None:
    a, b = KV(), KV()
    a.apply(cmd(1, "write", key="x", value=1, client="p"))
    a.apply(cmd(1, "write", key="y", value=2, client="q"))
    b.apply(cmd(1, "write", key="y", value=2, client="q"))
    b.apply(cmd(1, "write", key="x", value=1, client="p"))
    assert a.digest() == b.digest()
