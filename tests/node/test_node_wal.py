"""Write-ahead log: framing, group commit, torn tails, corruption, snapshots, recovery."""

from __future__ import annotations

import os
import random

import pytest

from node.core import Config, Replica
from node.wal import (
    MAGIC,
    WAL,
    WalCorruption,
    encode_record,
    read_snapshot,
    write_snapshot,
)


def recs(n: int) -> list[dict]:
    return [{"t": "chosen", "e": [[i, {"op": "noop"}]]} for i in range(n)]


def test_round_trip(tmp_path) -> None:
    w = WAL(str(tmp_path))
    assert w.open() == []
    w.append(recs(3))
    w.append(recs(2)[1:], sync=False)
    w.close()
    w2 = WAL(str(tmp_path))
    assert w2.open() == recs(3) + recs(2)[1:]
    assert w2.truncated_bytes == 0


@pytest.mark.parametrize("preallocate", [0, 1 << 16])
# (a torn prefix of zero bytes only, such as the first byte of a short record's length, is the
# same as nothing written: it is cut as unused space, not reported torn)
@pytest.mark.parametrize("cut", [4, 5, 8, 12])
def test_torn_tail_is_cut_off(tmp_path, cut: int, preallocate: int) -> None:
    w = WAL(str(tmp_path), preallocate=preallocate)
    w.open()
    w.append(recs(4))
    end = w.end
    w.close()
    path = os.path.join(tmp_path, "wal.log")
    last = len(encode_record(recs(4)[3]))
    # the last record was being written when the process died: only part of it is there (the
    # rest of the file is cut off, or still the preallocated zeros)
    with open(path, "r+b") as f:
        if preallocate:
            assert os.path.getsize(path) == len(MAGIC) + preallocate
            f.seek(end - last + cut)
            f.write(bytes(last - cut))
        else:
            assert os.path.getsize(path) == end
            f.truncate(end - last + cut)
    w2 = WAL(str(tmp_path), preallocate=preallocate)
    assert w2.open() == recs(3)
    assert w2.truncated_bytes == cut
    assert os.path.getsize(path) == end - last == w2.end
    # and appending continues cleanly after the cut
    w2.append([{"t": "prom", "b": [1, "n1"]}])
    w2.close()
    assert WAL(str(tmp_path)).open() == recs(3) + [{"t": "prom", "b": [1, "n1"]}]


def test_torn_tail_of_zeros_or_garbage(tmp_path) -> None:
    w = WAL(str(tmp_path), preallocate=0)
    w.open()
    w.append(recs(2))
    w.close()
    path = os.path.join(tmp_path, "wal.log")
    with open(path, "ab") as f:
        f.write(b"\0" * 300)
    assert WAL(str(tmp_path)).open() == recs(2)
    with open(path, "ab") as f:
        f.write(random.Random(3).randbytes(50))
    assert WAL(str(tmp_path)).open() == recs(2)


def test_the_log_grows_by_preallocated_zeros_and_records_overwrite_them(tmp_path) -> None:
    path = os.path.join(tmp_path, "wal.log")
    w = WAL(str(tmp_path), preallocate=4096)
    w.open()
    w.append(recs(3))
    assert os.path.getsize(path) == len(MAGIC) + 4096  # grown once, records inside
    big = [{"t": "chosen", "e": [[i, {"op": "write", "value": "x" * 300}]]} for i in range(20)]
    w.append(big)  # does not fit: grows by what it needs
    size = os.path.getsize(path)
    assert size >= w.end > len(MAGIC) + 4096
    w.close()
    data = open(path, "rb").read()
    assert not data[w.end:].strip(b"\0")  # after the records: only zeros
    w2 = WAL(str(tmp_path), preallocate=4096)
    assert w2.open() == recs(3) + big
    assert w2.truncated_bytes == 0 and w2.end == w.end and os.path.getsize(path) == size
    w2.append([{"t": "prom", "b": [2, "n3"]}])  # goes where the records end, not at EOF
    w2.close()
    assert WAL(str(tmp_path)).open() == recs(3) + big + [{"t": "prom", "b": [2, "n3"]}]
    assert os.path.getsize(path) == size


def test_corrupt_record_in_the_middle_stops_recovery(tmp_path) -> None:
    w = WAL(str(tmp_path))
    w.open()
    w.append(recs(5))
    w.close()
    path = os.path.join(tmp_path, "wal.log")
    data = bytearray(open(path, "rb").read())
    second = len(MAGIC) + len(encode_record(recs(5)[0]))
    data[second + 12] ^= 0xFF        # flip a payload byte of record 1 of 5
    open(path, "wb").write(bytes(data))
    with pytest.raises(WalCorruption) as exc:
        WAL(str(tmp_path)).open()
    msg = str(exc.value)
    assert "checksum mismatch" in msg and f"offset {second}" in msg
    assert "refusing to start" in msg
    # nothing was truncated: the evidence is kept
    assert open(path, "rb").read() == bytes(data)


def test_bad_header_is_corruption(tmp_path) -> None:
    open(os.path.join(tmp_path, "wal.log"), "wb").write(b"NOTAWAL!" + encode_record({"t": 1}))
    with pytest.raises(WalCorruption):
        WAL(str(tmp_path)).open()


def test_rewrite_is_atomic_and_replaces_the_log(tmp_path) -> None:
    w = WAL(str(tmp_path))
    w.open()
    w.append(recs(10))
    w.rewrite(recs(2))
    w.append([{"t": "prom", "b": [3, "n2"]}])
    w.close()
    assert WAL(str(tmp_path)).open() == recs(2) + [{"t": "prom", "b": [3, "n2"]}]
    assert not os.path.exists(os.path.join(tmp_path, "wal.log.tmp"))


def test_snapshot_files(tmp_path) -> None:
    assert read_snapshot(str(tmp_path)) is None
    write_snapshot(str(tmp_path), 41, '{"data":[],"sets":[],"sessions":[]}')
    write_snapshot(str(tmp_path), 42, '{"data":[["k",1]],"sets":[],"sessions":[]}')
    assert read_snapshot(str(tmp_path)) == (42, '{"data":[["k",1]],"sets":[],"sessions":[]}')
    path = os.path.join(tmp_path, "snapshot.bin")
    data = bytearray(open(path, "rb").read())
    data[-3] ^= 1
    open(path, "wb").write(bytes(data))
    with pytest.raises(WalCorruption):
        read_snapshot(str(tmp_path))


def test_replica_recovers_promise_accepted_and_chosen(tmp_path) -> None:
    """The records a replica writes are enough to rebuild it: same promise, same accepted
    values, same state; and its next ballot is above the persisted promise."""
    cfg = Config(node_id="n1", peers=["n2", "n3"], election_ticks=5, heartbeat_ticks=1)
    w = WAL(str(tmp_path))
    w.open()
    r = Replica(cfg, random.Random(1))
    r.step({"type": "prepare", "from": "n2", "to": "n1", "ballot": [7, "n2"], "first": 0})
    cmd = {"client": "c", "seq": 1, "op": "write", "key": "k", "value": 5}
    r.step({"type": "accept", "from": "n2", "to": "n1", "ballot": [7, "n2"],
            "entries": [[0, cmd], [1, {"op": "noop"}]], "commit": -1})
    r.step({"type": "accept", "from": "n2", "to": "n1", "ballot": [7, "n2"],
            "entries": [], "commit": 0})
    while r.has_ready():
        rd = r.ready()
        w.append(rd.records, sync=rd.sync)
        r.advance(rd)
    w.close()
    w2 = WAL(str(tmp_path))
    back = Replica.restore(cfg, random.Random(2), None, w2.open())
    assert back.promised == (7, "n2")
    assert back.accepted[1] == ((7, "n2"), {"op": "noop"})
    assert back.applied == 0 and back.sm.value_of("k") == (True, 5)
    assert back.sm.digest() == r.sm.digest()
    # time passes without a leader: its own ballot must be above everything it promised
    for _ in range(50):
        back.tick()
        if back.role == "candidate" and back.ballot != (0, ""):
            break
    back.step({"type": "prevote_reply", "from": "n3", "to": "n1",
               "ballot": list(back.prevote_ballot), "granted": True, "promised": [0, ""],
               "leader": None})
    assert back.ballot > (7, "n2") and back.ballot[1] == "n1"
