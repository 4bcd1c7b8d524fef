"""An asyncio event loop on simulated time.

The harness's own coroutines (clients, nemesis, controller) run unchanged on it: `loop.time()`,
`asyncio.sleep`, `wait_for` and every timer follow a virtual clock that jumps straight to the
next scheduled callback instead of waiting. Nothing here touches a file descriptor, a thread or
the wall clock, so the same callbacks in the same order give the same run on any machine.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class SimulationStalled(RuntimeError):
    """Nothing is ready and nothing is scheduled: the run would wait forever."""


class _NoSelector:
    """Stands where the selector would: instead of blocking until the next timer is due, the
    clock moves to it."""

    def __init__(self, loop: VirtualLoop) -> None:
        self.loop = loop

    def select(self, timeout: float | None) -> list[Any]:
        loop = self.loop
        if loop._ready or loop._stopping:  # type: ignore[attr-defined]
            return []
        scheduled = loop._scheduled  # type: ignore[attr-defined]
        if scheduled:
            when = scheduled[0]._when
            if when > loop.now:
                loop.now = when
            return []
        raise SimulationStalled("the simulation has nothing left to do (every task waits on "
                                "something that never comes)")

    def close(self) -> None:
        return None


class VirtualLoop(asyncio.BaseEventLoop):
    """Besides asyncio's own timers, a fast lane for the simulated cluster's events (message
    deliveries, fsyncs, ticks): plain (time, order, function, args) tuples on a heap of their
    own, run in time order between asyncio's iterations. asyncio's timer handles compare in
    Python; these compare as tuples, and there are ten of them for every client operation."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self._selector = _NoSelector(self)
        self._clock_resolution = 1e-9
        self.fast: list[tuple[float, int, Callable[..., Any], tuple[Any, ...]]] = []
        self._order = itertools.count()

    def at(self, when: float, fn: Callable[..., Any], *args: Any) -> None:
        """Run fn(*args) at simulated time `when` (no handle: it cannot be cancelled)."""
        heapq.heappush(self.fast, (when, next(self._order), fn, args))

    def later(self, delay: float, fn: Callable[..., Any], *args: Any) -> None:
        heapq.heappush(self.fast, (self.now + delay, next(self._order), fn, args))

    def _run_once(self) -> None:
        fast = self.fast
        if fast and not self._ready and not self._stopping:  # type: ignore[attr-defined]
            scheduled = self._scheduled  # type: ignore[attr-defined]
            while scheduled and scheduled[0]._cancelled:
                heapq.heappop(scheduled)._scheduled = False
                self._timer_cancelled_count -= 1  # type: ignore[attr-defined]
            next_timer = scheduled[0]._when if scheduled else math.inf
            if fast[0][0] <= next_timer:
                if fast[0][0] > self.now:
                    self.now = fast[0][0]
                now = self.now
                while fast and fast[0][0] <= now:
                    _, _, fn, args = heapq.heappop(fast)
                    try:
                        fn(*args)
                    except Exception as exc:  # noqa: BLE001 - as asyncio treats a callback's
                        self.call_exception_handler({"message": f"simulated event {fn!r}",
                                                     "exception": exc})
                return
        super()._run_once()  # type: ignore[misc]

    def time(self) -> float:
        return self.now

    def time_ns(self) -> int:
        return round(self.now * 1e9)

    def _process_events(self, event_list: list[Any]) -> None:
        return None

    def _write_to_self(self) -> None:
        return None  # no thread ever wakes this loop

    def run_in_executor(self, executor: Any, func: Any, *args: Any) -> asyncio.Future:
        raise RuntimeError("no threads in a simulation: call the function directly")


def run(main: Coroutine[Any, Any, T]) -> tuple[T, float]:
    """Run `main` on simulated time; returns its result and the simulated seconds it took."""
    loop = VirtualLoop()
    with asyncio.Runner(loop_factory=lambda: loop) as runner:
        result = runner.run(main)
    return result, loop.now
