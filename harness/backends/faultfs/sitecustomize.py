"""Disk faults under a Python node (the harness puts this directory first on PYTHONPATH).

Like Jepsen's LazyFS the faults sit under the node, whose own code is unchanged:

- Slow disk: while the file named by PAXOS_HARNESS_SLOW_DISK exists, every fsync and fdatasync
  first sleeps for the seconds written in it, as a saturated or failing disk would make them.
- Lost unsynced writes: with PAXOS_HARNESS_SYNC_JOURNAL set, every successful fsync or
  fdatasync of a regular file appends "<device> <inode> <size>" to that journal, and of a
  directory "<device> <inode> D <names>". After the node is killed the harness cuts each file
  back to its size at its last sync and removes names its directory never synced
  (unsynced.py), as a power cut would leave the disk. The journal needs no fsync of its own:
  the harness reads it after a SIGKILL, which the page cache survives.
"""

import os
import stat
import time

_FLAG = os.environ.get("PAXOS_HARNESS_SLOW_DISK")
_JOURNAL = os.environ.get("PAXOS_HARNESS_SYNC_JOURNAL")
_JOURNAL_LIMIT = 1 << 20  # then rewritten with the latest line per file (bounded)


def _slow() -> None:
    try:
        with open(_FLAG) as f:
            delay = float(f.read() or 0)
    except (OSError, ValueError):
        delay = 0.0
    if delay > 0:
        time.sleep(delay)


class _Journal:
    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = -1
        self.size = 0
        self.latest = {}

    def record(self, fd: int) -> None:
        try:
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode):
                line = f"{st.st_dev} {st.st_ino} {st.st_size}\n"
            elif stat.S_ISDIR(st.st_mode):
                names = "/".join(sorted(n for n in os.listdir(fd) if "/" not in n))
                line = f"{st.st_dev} {st.st_ino} D {names}\n"
            else:
                return
            self.latest[(st.st_dev, st.st_ino)] = line
            if self.fd < 0:
                self._open()
            if self.size > _JOURNAL_LIMIT:
                self._compact()
            data = line.encode()
            os.write(self.fd, data)
            self.size += len(data)
        except OSError:
            pass  # the journal is the harness's; the node's own fsync already succeeded

    def _open(self) -> None:
        try:  # an earlier incarnation's lines, so that a rewrite keeps them
            with open(self.path) as f:
                for old in f:
                    dev, ino = old.split(" ", 2)[:2]
                    self.latest.setdefault((int(dev), int(ino)), old)
        except (OSError, ValueError):
            pass
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.size = os.fstat(self.fd).st_size

    def _compact(self) -> None:
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.writelines(self.latest.values())
        os.replace(tmp, self.path)
        os.close(self.fd)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        self.size = os.fstat(self.fd).st_size


def _wrapped(real, journal):
    def call(fd):
        if _FLAG:
            _slow()
        result = real(fd)
        if journal is not None:
            journal.record(fd)
        return result

    return call


if _FLAG or _JOURNAL:
    _journal = _Journal(_JOURNAL) if _JOURNAL else None
    os.fsync = _wrapped(os.fsync, _journal)
    if hasattr(os, "fdatasync"):
        os.fdatasync = _wrapped(os.fdatasync, _journal)
