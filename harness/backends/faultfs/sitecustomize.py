"""Disk faults under a Python node (the harness puts this directory first on PYTHONPATH).

Like Jepsen's LazyFS the faults sit under the node, whose own code is unchanged:

- Slow disk: while the file named by PAXOS_HARNESS_SLOW_DISK exists, every fsync and fdatasync
  first sleeps for the seconds written in it, as a saturated or failing disk would make them.
- Lost unsynced writes: with PAXOS_HARNESS_SYNC_JOURNAL set, every successful fsync or
  fdatasync of a regular file appends "<device> <inode> <size>" to that journal, and of a
  directory "<device> <inode> D <names>". Before an os.write or os.pwrite overwrites bytes a
  regular file already holds (a preallocated log's zeros, a record rewritten in place), it
  appends what they were: "<device> <inode> Z <offset> <length>" for zeros, "<device> <inode>
  U <offset> <hex>" otherwise. After the node is killed the harness puts back what was
  overwritten since each file's last sync, cuts each file back to its size at that sync and
  removes names its directory never synced (unsynced.py), as a power cut would leave the disk.
  The journal needs no fsync of its own: the harness reads it after a SIGKILL, which the page
  cache survives.
"""

import fcntl
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


_REAL_WRITE = os.write


class _Journal:
    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = -1
        self.size = 0
        self.synced = {}  # (dev, ino) -> its latest sync line
        self.undo = {}  # (dev, ino) -> the undo lines written since that sync

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
            key = (st.st_dev, st.st_ino)
            self.synced[key] = line
            self.undo.pop(key, None)  # made durable: nothing before this is undone
            self._append(line)
        except OSError:
            pass  # the journal is the harness's; the node's own fsync already succeeded

    def before_write(self, fd: int, offset, length: int) -> None:
        """Keep what a write is about to overwrite (appends past the end need nothing: the
        synced size already undoes them)."""
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or length <= 0:
                return
            if offset is None:
                appending = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_APPEND
                offset = st.st_size if appending else os.lseek(fd, 0, os.SEEK_CUR)
            end = min(offset + length, st.st_size)
            if end <= offset:
                return
            old = self._read(fd, offset, end - offset)
            key = (st.st_dev, st.st_ino)
            if old.count(0) == len(old):
                line = f"{st.st_dev} {st.st_ino} Z {offset} {len(old)}\n"
            else:
                line = f"{st.st_dev} {st.st_ino} U {offset} {old.hex()}\n"
            self.undo.setdefault(key, []).append(line)
            self._append(line)
        except OSError:
            pass

    @staticmethod
    def _read(fd: int, offset: int, length: int) -> bytes:
        try:
            return os.pread(fd, length, offset)
        except OSError:  # opened write-only: read it through another descriptor
            rfd = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY)
            try:
                return os.pread(rfd, length, offset)
            finally:
                os.close(rfd)

    def _append(self, line: str) -> None:
        if self.fd < 0:
            self._open()
        if self.size > _JOURNAL_LIMIT:
            self._compact()
        data = line.encode()
        _REAL_WRITE(self.fd, data)
        self.size += len(data)

    def _open(self) -> None:
        try:  # an earlier incarnation's lines, so that a rewrite keeps them
            with open(self.path) as f:
                for old in f:
                    parts = old.split(" ", 3)
                    key = (int(parts[0]), int(parts[1]))
                    if len(parts) > 2 and parts[2] in ("Z", "U"):
                        self.undo.setdefault(key, []).append(old)
                    else:
                        self.synced[key] = old  # the latest one counts
                        self.undo.pop(key, None)
        except (OSError, ValueError, IndexError):
            pass
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.size = os.fstat(self.fd).st_size

    def _compact(self) -> None:
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.writelines(self.synced.values())
            for lines in self.undo.values():
                f.writelines(lines)
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


def _journalled_write(journal):
    def write(fd, data):
        journal.before_write(fd, None, len(data))
        return _REAL_WRITE(fd, data)

    return write


def _journalled_pwrite(real, journal):
    def pwrite(fd, data, offset):
        journal.before_write(fd, offset, len(data))
        return real(fd, data, offset)

    return pwrite


if _FLAG or _JOURNAL:
    _journal = _Journal(_JOURNAL) if _JOURNAL else None
    os.fsync = _wrapped(os.fsync, _journal)
    if hasattr(os, "fdatasync"):
        os.fdatasync = _wrapped(os.fdatasync, _journal)
    if _journal is not None:
        os.write = _journalled_write(_journal)
        os.pwrite = _journalled_pwrite(os.pwrite, _journal)
