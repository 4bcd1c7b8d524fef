"""Lose what a killed process wrote but never synced (LazyFS's "lose unsynced writes").

Reads the journal the faultfs shim keeps (sitecustomize.py) and, for every file under a data
directory: puts back what os.write/os.pwrite overwrote since its last fsync/fdatasync (latest
first), cuts it back to its size at that sync, empties it if it was never synced, and removes
it if its directory was synced since without it (a creation the directory never made
durable). Then it records the disk as it is now as synced: what survived a power cut is what
the disk holds, and a later cut must not undo it again. Run after the process is dead, before
it starts again. Standard library only: it also runs inside a container (`python3 unsynced.py
DATA_DIR JOURNAL`).

Not undone: a rename over an older file that the directory never synced, and overwrites made
other than through os.write/os.pwrite (the older contents are nowhere to restore).
"""

from __future__ import annotations

import os
import sys


def read_journal(path: str) -> tuple[dict[tuple[int, int], int], dict[tuple[int, int], set]]:
    """({(dev, ino): synced size}, {(dev, ino): names synced in that directory})."""
    sizes: dict[tuple[int, int], int] = {}
    dirs: dict[tuple[int, int], set] = {}
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return sizes, dirs
    for line in lines:
        parts = line.split(" ", 3)
        try:
            key = (int(parts[0]), int(parts[1]))
            if parts[2] == "D":
                dirs[key] = set(filter(None, (parts[3] if len(parts) > 3 else "").split("/")))
            else:
                sizes[key] = int(parts[2])
        except (IndexError, ValueError):
            continue  # a torn last line: the sync it records may not have returned
    return sizes, dirs


def read_undo(path: str) -> dict[tuple[int, int], list[tuple[int, bytes]]]:
    """{(dev, ino): [(offset, the bytes a write overwrote)]} written since each file's last
    sync, oldest first."""
    undo: dict[tuple[int, int], list[tuple[int, bytes]]] = {}
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return undo
    for line in lines:
        parts = line.split(" ")
        try:
            key = (int(parts[0]), int(parts[1]))
            if parts[2] == "Z":
                undo.setdefault(key, []).append((int(parts[3]), bytes(int(parts[4]))))
            elif parts[2] == "U":
                undo.setdefault(key, []).append((int(parts[3]), bytes.fromhex(parts[4])))
            else:
                undo.pop(key, None)  # a sync: what came before it is durable
        except (IndexError, ValueError):
            continue  # a torn last line: the write it precedes had not begun
    return undo


def drop_unsynced(data_dir: str, journal: str) -> dict[str, int]:
    """Apply the loss; returns what was lost: {"files_cut", "bytes_lost", "files_removed",
    "bytes_restored"}."""
    sizes, dirs = read_journal(journal)
    undo = read_undo(journal)
    lost = {"files_cut": 0, "bytes_lost": 0, "files_removed": 0, "bytes_restored": 0}
    now_synced: list[str] = []
    for root, subdirs, names in os.walk(data_dir):
        st_root = os.stat(root)
        synced_names = dirs.get((st_root.st_dev, st_root.st_ino))
        kept = []
        for name in names:
            path = os.path.join(root, name)
            st = os.lstat(path)
            if not os.path.isfile(path) or os.path.islink(path):
                kept.append(name)
                continue
            if synced_names is not None and name not in synced_names:
                os.unlink(path)
                lost["files_removed"] += 1
                lost["bytes_lost"] += st.st_size
                continue
            kept.append(name)
            key = (st.st_dev, st.st_ino)
            overwritten = undo.get(key, [])
            if overwritten:
                fd = os.open(path, os.O_WRONLY)
                try:
                    for offset, old in reversed(overwritten):
                        os.pwrite(fd, old, offset)
                        lost["bytes_restored"] += len(old)
                finally:
                    os.close(fd)
            keep = sizes.get(key, 0)
            size = os.stat(path).st_size
            if size > keep:
                os.truncate(path, keep)
                lost["files_cut"] += 1
                lost["bytes_lost"] += size - keep
            now_synced.append(f"{st.st_dev} {st.st_ino} {min(size, keep)}\n")
        names_now = "/".join(sorted(n for n in kept + subdirs if "/" not in n))
        now_synced.append(f"{st_root.st_dev} {st_root.st_ino} D {names_now}\n")
    if os.path.exists(journal):
        with open(journal, "a") as f:
            f.writelines(now_synced)
    return lost


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print("usage: unsynced.py DATA_DIR JOURNAL", file=sys.stderr)
        sys.exit(2)
    result = drop_unsynced(sys.argv[1], sys.argv[2])
    print(" ".join(f"{k}={v}" for k, v in result.items()))
