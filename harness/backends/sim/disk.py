"""A member's simulated disk: its write-ahead log as the bytes the real node would write, with
what fsync means kept.

Three levels, as on a real machine: records the process holds (lost when it crashes), bytes
written to the operating system (they survive a process crash, not a power cut) and bytes
synced (they survive everything). A power cut keeps the synced bytes and, as a real disk may,
some prefix of the unsynced ones: possibly ending inside a record, which the log's own recovery
(node.wal.scan) must then cut off as a torn tail.
"""

from __future__ import annotations

import json
import random
from typing import Any

from node.wal import encode_record, scan


class SimDisk:
    """Records are kept as the objects the core handed over and encoded (node.wal's framing)
    only when a crash needs their bytes: most are never read back."""

    def __init__(self) -> None:
        self.written: list[Any] = []  # records written to the operating system
        self.synced = 0               # how many of them are durable
        self.torn = b""               # the start of a record a power cut tore, on the disk
        self.held: list[Any] = []     # records still in the process
        self.snapshot: tuple[int, str] | None = None
        self.fsyncs = 0

    def hold(self, records: list[Any]) -> None:
        self.held.extend(records)

    def write(self) -> None:
        """What the process holds goes to the operating system (not yet durable)."""
        if self.held:
            self.written.extend(self.held)
            self.held.clear()

    def sync(self) -> None:
        self.write()
        self.synced = len(self.written)
        self.fsyncs += 1

    def rewrite(self, records: list[Any], snapshot: tuple[int, str] | None) -> None:
        """A compaction: the new snapshot and log replace the old ones, durably (the real node
        writes both aside, syncs them and renames them into place)."""
        if snapshot is not None:
            self.snapshot = snapshot
        self.held.clear()
        self.written = list(records)
        self.torn = b""
        self.sync()

    def crash(self) -> int:
        """The process died: what it held is gone. Returns the records lost."""
        lost = len(self.held)
        self.held.clear()
        return lost

    def power_cut(self, rng: random.Random) -> dict[str, int]:
        """The machine died: the process's records and the unsynced written ones are gone,
        except that, as on a real disk, some of the unsynced bytes may have reached it: a drawn
        prefix, possibly ending inside a record (torn)."""
        held = self.crash()
        unsynced = b"".join(encode_record(r) for r in self.written[self.synced:])
        kept = rng.randint(0, len(unsynced)) if unsynced and rng.random() < 0.5 else 0
        payloads, end, _ = scan(unsynced[:kept])
        lost = held + len(self.written) - self.synced - len(payloads)
        self.written[self.synced:] = [json.loads(p) for p in payloads]
        self.torn = unsynced[end:kept]
        self.synced = len(self.written)
        return {"records_lost": lost, "bytes_lost": len(unsynced) - kept,
                "unsynced_bytes_kept": kept}

    def recover(self) -> tuple[tuple[int, str] | None, list[Any], int]:
        """(snapshot, records, torn bytes cut) as the node's recovery would read them: the
        log's bytes through node.wal.scan, which cuts a torn tail."""
        data = b"".join(encode_record(r) for r in self.written) + self.torn
        payloads, end, _problem = scan(data)
        torn = len(data) - end
        self.torn = b""
        self.written = [json.loads(p) for p in payloads]
        self.synced = len(self.written)
        return self.snapshot, list(self.written), torn
