"""The catalogue of injectable bugs (issue 6). All are off unless named with `--bug NAME`.

Each one is a bug class that real consensus systems shipped; the harness must catch every one.
"""

from __future__ import annotations

BUGS: dict[str, str] = {
    "read-local": "serve reads from local state without confirming leadership, and never step "
                  "down for lack of a quorum (stale reads from a deposed leader)",
    "skip-recovery": "a new leader ignores the accepted values reported in promises (chosen "
                     "values overwritten after a leader change)",
    "volatile-acceptor": "promises and accepted values are not kept across a restart (amnesia)",
    "accept-lower-ballot": "accept without checking the promised ballot",
    "small-quorum": "a quorum of n//2 instead of n//2+1 (split brain)",
    "ack-before-chosen": "reply ok to the client as soon as an update is proposed, before its "
                         "slot is chosen",
    "no-dedup": "no session table: retries are proposed and applied again",
    "no-takeover-noop": "a new leader serves at once instead of waiting for its takeover slots "
                        "(re-proposed values and no-ops) to be chosen: reads get its commit "
                        "point as it stands, which can miss writes the previous leader chose "
                        "and acknowledged (stale reads after a leader change)",
    "reply-before-fsync": "send Promise/Accepted before the write-ahead log is flushed; writes "
                          "are buffered in the process and lost with it on SIGKILL",
    "no-election-jitter": "fixed election timeouts, and a failed election is retried at once "
                          "without backoff: simultaneous candidates keep refusing each other "
                          "(a liveness bug)",
}


def check(names: list[str]) -> list[str]:
    """The names, deduplicated and sorted; ValueError on an unknown one."""
    unknown = [n for n in names if n not in BUGS]
    if unknown:
        raise ValueError(f"unknown bug {unknown[0]!r} (known: {', '.join(BUGS)})")
    return sorted(set(names))
