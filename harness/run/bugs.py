"""The node's injectable bugs, by name (issue 6). The node refuses names it does not know too;
checking here lets a run or a campaign refuse a typo before anything starts."""

from __future__ import annotations

BUGS = (
    "read-local",
    "skip-recovery",
    "volatile-acceptor",
    "accept-lower-ballot",
    "small-quorum",
    "ack-before-chosen",
    "no-dedup",
    "no-takeover-noop",
    "reply-before-fsync",
    "no-election-jitter",
)


def known_bugs() -> tuple[str, ...]:
    return BUGS
