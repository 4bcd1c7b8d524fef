"""Lost unsynced writes: the sync journal, the loss it drives, and real runs under power cuts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from harness.backends.faultfs.unsynced import drop_unsynced, read_journal
from harness.backends.local import FAULTFS, SYNC_JOURNAL_ENV
from tests.harness.conftest import harness, node_processes

# Synced: a.log's first record, the directory with a.log. Unsynced: a.log's second record,
# b.log (created after the directory's sync), c.log's contents (its name was synced, it never).
WRITER = """
import os, signal, sys
d = sys.argv[1]
a = os.open(os.path.join(d, "a.log"), os.O_WRONLY | os.O_CREAT)
os.write(a, b"synced-1;")
os.fdatasync(a)
c = os.open(os.path.join(d, "c.log"), os.O_WRONLY | os.O_CREAT)
fd = os.open(d, os.O_RDONLY)
os.fsync(fd)
os.write(c, b"never synced")
os.write(a, b"unsynced-2;")
b = os.open(os.path.join(d, "b.log"), os.O_WRONLY | os.O_CREAT)
os.write(b, b"new file")
os.fsync(b)  # its data, not its name: the directory was not synced again
print("ready", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def run_writer(tmp_path: Path, script: str = WRITER) -> tuple[Path, Path]:
    """Run a script under the shim in a fresh data directory until it kills itself."""
    data = tmp_path / "data"
    data.mkdir()
    journal = tmp_path / "journal"
    env = {**os.environ, SYNC_JOURNAL_ENV: str(journal), "PYTHONPATH": str(FAULTFS)}
    proc = subprocess.run([sys.executable, "-c", script, str(data)], env=env,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    return data, journal


def test_only_synced_writes_survive_a_power_cut(tmp_path: Path) -> None:
    data, journal = run_writer(tmp_path)
    # Before the loss everything is there: SIGKILL alone keeps the page cache.
    assert (data / "a.log").read_bytes() == b"synced-1;unsynced-2;"
    assert (data / "c.log").read_bytes() == b"never synced"
    lost = drop_unsynced(str(data), str(journal))
    assert (data / "a.log").read_bytes() == b"synced-1;"
    assert (data / "c.log").read_bytes() == b""
    assert not (data / "b.log").exists()
    assert lost == {"files_cut": 2, "bytes_lost": len("unsynced-2;never syncednew file"),
                    "files_removed": 1, "bytes_restored": 0}
    # A second loss with nothing new written loses nothing more.
    assert drop_unsynced(str(data), str(journal))["bytes_lost"] == 0


# A preallocated log (zeros, synced) and a record file rewritten in place: what is overwritten
# after the last sync must come back, whether it was zeros or data; what was synced stays.
OVERWRITER = """
import os, signal, sys
d = sys.argv[1]
log = os.open(os.path.join(d, "wal"), os.O_WRONLY | os.O_CREAT)
os.pwrite(log, bytes(64), 0)
os.fdatasync(log)
os.pwrite(log, b"synced", 0)
os.fdatasync(log)
os.pwrite(log, b"lost-1", 6)
os.pwrite(log, b"LOST-2", 9)          # overlaps the first unsynced write
rec = os.open(os.path.join(d, "rec"), os.O_RDWR | os.O_CREAT)
os.write(rec, b"old-old-old")
os.fsync(rec)
os.lseek(rec, 4, os.SEEK_SET)
os.write(rec, b"NEW")                  # in place, through os.write at the file position
dfd = os.open(d, os.O_RDONLY)
os.fsync(dfd)
print("ready", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_overwrites_since_the_last_sync_are_undone(tmp_path: Path) -> None:
    data, journal = run_writer(tmp_path, OVERWRITER)
    assert (data / "wal").read_bytes()[:15] == b"syncedlosLOST-2"
    assert (data / "rec").read_bytes() == b"old-NEW-old"
    lost = drop_unsynced(str(data), str(journal))
    assert (data / "wal").read_bytes() == b"synced" + bytes(58)  # size unchanged: 64
    assert (data / "rec").read_bytes() == b"old-old-old"
    assert lost["bytes_restored"] == 6 + 6 + 3 and lost["files_cut"] == 0
    # the disk after the cut is what survived: a second cut with nothing new undoes nothing
    (data / "rec").write_bytes(b"old-old-old")
    assert drop_unsynced(str(data), str(journal))["bytes_restored"] == 0
    assert (data / "wal").read_bytes() == b"synced" + bytes(58)


def test_an_unsynced_record_in_a_preallocated_wal_is_lost(tmp_path: Path) -> None:
    """The node's own log, preallocated: the file's size never changes, yet the record written
    without fdatasync must not survive the cut (the fault would otherwise hide a node that
    replies before it syncs)."""
    data = tmp_path / "data"
    journal = tmp_path / "journal"
    script = ("import sys, os, signal\nfrom node.wal import WAL\n"
              "w = WAL(sys.argv[1], preallocate=4096)\nw.open()\n"
              "w.append([{'t': 'kept'}])\nw.append([{'t': 'lost'}], sync=False)\n"
              "os.kill(os.getpid(), signal.SIGKILL)\n")
    env = {**os.environ, SYNC_JOURNAL_ENV: str(journal),
           "PYTHONPATH": f"{FAULTFS}{os.pathsep}{Path(__file__).resolve().parents[2]}"}
    proc = subprocess.run([sys.executable, "-c", script, str(data)], env=env,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    from node.wal import WAL

    size = (data / "wal.log").stat().st_size
    lost = drop_unsynced(str(data), str(journal))
    assert lost["bytes_restored"] > 0 and (data / "wal.log").stat().st_size == size
    assert WAL(str(data), preallocate=4096).open() == [{"t": "kept"}]


def test_the_journal_is_bounded_and_keeps_the_latest_sync(tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    script = ("import os\nfd = os.open('f', os.O_WRONLY | os.O_CREAT)\n"
              "for i in range(40000):\n    os.write(fd, b'x')\n    os.fdatasync(fd)\n")
    env = {**os.environ, SYNC_JOURNAL_ENV: str(journal), "PYTHONPATH": str(FAULTFS)}
    subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path, check=True,
                   timeout=120)
    assert journal.stat().st_size < (1 << 20) + 4096
    sizes, _ = read_journal(str(journal))
    st = (tmp_path / "f").stat()
    assert sizes[(st.st_dev, st.st_ino)] == 40000


def test_a_torn_journal_line_is_ignored(tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    journal.write_text("1 2 30\n1 2 4")
    sizes, dirs = read_journal(str(journal))
    assert sizes == {(1, 2): 4} or sizes == {(1, 2): 30}
    assert dirs == {}


def _results(store: Path) -> dict:
    return json.loads(((store / "latest").resolve() / "results.json").read_text())


def test_a_node_that_never_syncs_loses_acknowledged_writes_in_a_power_cut(tmp_path: Path) -> None:
    store = tmp_path / "store"
    proc = harness("run", "--nemesis", "disk:power-cut", "--time-limit", "12", "--seed", "3",
                   "--store", str(store), "--quiet", "--node-arg=--unsafe-no-fsync")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    results = _results(store)
    assert results["valid"] is False
    run_dir = (store / "latest").resolve()
    logs = "".join((run_dir / "nodes" / n / "node.log").read_text() for n in ("n1", "n2", "n3"))
    assert "power cut: unsynced writes dropped" in logs
    assert not node_processes(run_dir.name)


def test_the_correct_node_survives_power_cuts_and_minority_crashes(tmp_path: Path) -> None:
    store = tmp_path / "store"
    proc = harness("run", "--nemesis", "disk:power-cut/lose-unsynced", "--time-limit", "14",
                   "--seed", "3", "--store", str(store), "--quiet")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    history = [json.loads(line) for line in
               ((store / "latest").resolve() / "history.jsonl").read_text().splitlines()]
    crashes = [op for op in history if op["process"] == "nemesis" and op["f"] == "lose-unsynced"
               and op["type"] == "info"]
    assert crashes and all(op["node"] for op in crashes)
    assert all(set(op["value"]["lost"]) == set(op["node"]) for op in crashes)


@pytest.mark.parametrize("backend", ["local"])
def test_default_nemesis_includes_crashes_for_durable_python_systems(backend: str) -> None:
    from harness.run.config import RunConfig

    assert "disk:lose-unsynced/power-cut" in RunConfig(backend=backend).nemesis
    assert "disk" not in RunConfig(system="etcd").nemesis
    assert "disk" not in RunConfig(backend="ssh").nemesis
