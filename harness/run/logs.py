"""The chosen logs, recorded while the run goes on, so that compaction loses no evidence.

A member compacts its log into a snapshot every so many slots; a log fetched only at the end
then starts at the last snapshot, and the agreement and exactly-once checkers could not decide
about the slots before it. The tracker asks every member for the entries it has chosen since the
last poll, a few times a second, and keeps every entry it was ever shown: a slot shown with two
different values (a chosen value that changed) is kept twice, which the agreement checker
reports.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

POLL_S = 0.25
POLL_TIMEOUT_S = 1.0


class LogRecord:
    """Every entry one member showed, across polls and restarts."""

    def __init__(self) -> None:
        self.entries: dict[int, Any] = {}
        self.changed: list[dict[str, Any]] = []   # later, different values for a slot
        self.first: int | None = None             # the lowest slot it still held when asked
        self.next = 0                              # where the next poll starts
        self.polls = 0
        self.unseen = 0                            # slots compacted before any poll saw them

    def merge(self, log: dict[str, Any] | None) -> None:
        if not isinstance(log, dict):
            return
        self.polls += 1
        first = log.get("first")
        if isinstance(first, int):
            if self.first is None:
                self.first = first
            if first > self.next:
                self.unseen += first - self.next
        for entry in log.get("entries") or []:
            slot = entry.get("slot") if isinstance(entry, dict) else None
            if not isinstance(slot, int):
                continue
            value = entry.get("value")
            if slot not in self.entries:
                self.entries[slot] = value
            elif _canonical(self.entries[slot]) != _canonical(value) and \
                    not any(c["slot"] == slot and _canonical(c["value"]) == _canonical(value)
                            for c in self.changed):
                self.changed.append({"slot": slot, "value": value})
            self.next = max(self.next, slot + 1)

    def to_json(self) -> dict[str, Any] | None:
        """The shape of a fetched log (`first`, `entries`), every entry ever shown."""
        if not self.polls:
            return None
        entries = [{"slot": s, "value": self.entries[s]} for s in sorted(self.entries)]
        entries += [{"slot": c["slot"], "value": c["value"]} for c in self.changed]
        return {"first": min(self.entries, default=self.first or 0), "entries": entries,
                "polls": self.polls, "compacted_unseen": self.unseen}


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


class LogTracker:
    def __init__(self, system: Any, addresses: dict[str, tuple[str, int]]) -> None:
        self.system = system
        self.addresses = addresses
        self.records = {node: LogRecord() for node in addresses}

    async def poll(self, node: str, timeout: float = POLL_TIMEOUT_S) -> None:
        record = self.records[node]
        try:
            log = await self.system.fetch_log(self.addresses[node], record.next, timeout)
        except (TimeoutError, OSError, ValueError):
            return  # down, paused or cut off from the controller: the next poll will do
        record.merge(log)

    async def run(self, stop: asyncio.Event) -> None:
        """Poll every member until `stop`; each on its own, so a paused one delays nobody."""
        async def follow(node: str) -> None:
            while not stop.is_set():
                await self.poll(node)
                try:
                    await asyncio.wait_for(stop.wait(), POLL_S)
                except TimeoutError:
                    pass

        await asyncio.gather(*(follow(n) for n in self.records))
