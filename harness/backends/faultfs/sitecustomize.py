"""Slow-disk fault for node processes (the harness puts this directory first on PYTHONPATH).

While the file named by PAXOS_HARNESS_SLOW_DISK exists, every fsync and fdatasync first sleeps
for the seconds written in it, as a saturated or failing disk would make them wait. Like Jepsen's
LazyFS, the fault sits under the node: the node's own code is unchanged.
"""

import os
import time

_FLAG = os.environ.get("PAXOS_HARNESS_SLOW_DISK")


def _slowed(real):
    def call(fd):
        try:
            with open(_FLAG) as f:
                delay = float(f.read() or 0)
        except (OSError, ValueError):
            delay = 0.0
        if delay > 0:
            time.sleep(delay)
        return real(fd)

    return call


if _FLAG:
    os.fsync = _slowed(os.fsync)
    os.fdatasync = _slowed(os.fdatasync)
