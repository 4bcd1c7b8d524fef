"""The slow-disk fault: the shim slows fsync only while the node's flag file says so."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from harness.backends.local import FAULTFS, SLOW_DISK_ENV, LocalBackend

PROBE = """
import os, time
fd = os.open(os.path.join(os.environ["TMP_DIR"], "probe.dat"), os.O_WRONLY | os.O_CREAT)
os.write(fd, b"x")
t = time.monotonic()
os.fsync(fd)
os.fdatasync(fd)
print(time.monotonic() - t)
"""


def fsync_seconds(tmp_path: Path, flag: Path) -> float:
    env = {**os.environ, SLOW_DISK_ENV: str(flag), "TMP_DIR": str(tmp_path),
           "PYTHONPATH": str(FAULTFS)}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                         text=True, check=True, timeout=30).stdout
    return float(out)


def test_flag_file_slows_fsync_and_fdatasync(tmp_path: Path) -> None:
    backend = LocalBackend(["n1"], tmp_path, [], "disk-test")
    backend.node_dir("n1").mkdir(parents=True)
    flag = backend.disk_flag("n1")
    assert fsync_seconds(tmp_path, flag) < 0.2
    backend.set_disk_delay("n1", 0.25)
    assert flag.exists()
    assert fsync_seconds(tmp_path, flag) >= 0.5  # both calls slowed
    backend.set_disk_delay("n1", 0.0)
    assert not flag.exists()
    assert fsync_seconds(tmp_path, flag) < 0.2
