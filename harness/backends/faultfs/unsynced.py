"""Lose what a killed process wrote but never synced (LazyFS's "lose unsynced writes").

Reads the journal the faultfs shim keeps (sitecustomize.py) and, for every file under a data
directory: cuts it back to its size at its last fsync/fdatasync, empties it if it was never
synced, and removes it if its directory was synced since without it (a creation the directory
never made durable). Run after the process is dead, before it starts again. Standard library
only: it also runs inside a container (`python3 unsynced.py DATA_DIR JOURNAL`).

The model is an append-only disk's: a file's synced prefix survives, the rest is gone. Data
overwritten in place after a sync, and a rename over an older file that the directory never
synced, are not undone (the older contents are no longer anywhere to restore).
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


def drop_unsynced(data_dir: str, journal: str) -> dict[str, int]:
    """Apply the loss; returns what was lost: {"files_cut", "bytes_lost", "files_removed"}."""
    sizes, dirs = read_journal(journal)
    lost = {"files_cut": 0, "bytes_lost": 0, "files_removed": 0}
    for root, _subdirs, names in os.walk(data_dir):
        st_root = os.stat(root)
        synced_names = dirs.get((st_root.st_dev, st_root.st_ino))
        for name in names:
            path = os.path.join(root, name)
            st = os.lstat(path)
            if not os.path.isfile(path) or os.path.islink(path):
                continue
            if synced_names is not None and name not in synced_names:
                os.unlink(path)
                lost["files_removed"] += 1
                lost["bytes_lost"] += st.st_size
                continue
            keep = sizes.get((st.st_dev, st.st_ino), 0)
            if st.st_size > keep:
                os.truncate(path, keep)
                lost["files_cut"] += 1
                lost["bytes_lost"] += st.st_size - keep
    return lost


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print("usage: unsynced.py DATA_DIR JOURNAL", file=sys.stderr)
        sys.exit(2)
    result = drop_unsynced(sys.argv[1], sys.argv[2])
    print(" ".join(f"{k}={v}" for k, v in result.items()))
