"""When faults happen: a plan drawn from the seed before the run starts.

The plan is a list of faults, each with a start and an end (seconds from the start of the fault
phase), a kind, a shape and a seed for the choices made when it starts. Choices that need the
cluster's state (who leads) are made then; everything else is fixed here, so the same seed gives
the same schedule.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class PlannedFault:
    start: float
    end: float
    kind: str
    shape: str
    seed: int

    def to_dict(self) -> dict:
        return asdict(self)


TIMINGS = ("scales", "fixed")


def plan(spec: dict[str, tuple[str, ...]], duration: float, interval: float,
         rng: random.Random, timing: str = "fixed",
         election_s: float = 0.3) -> list[PlannedFault]:
    """Each kind on its own timeline, composed as Jepsen composes nemeses: faults of different
    kinds may overlap (a partition during a pause), faults of one kind never do.

    On each timeline quiet gaps and faults alternate. Gaps last `interval` seconds with +-50%
    jitter. With `fixed` timing so do faults; with `scales` a fault's length is drawn from
    three scales: a quarter of the faults are shorter than an election timeout (a blip nobody
    should notice, or a leader that resumes before it is replaced), half last about the
    interval, and a quarter two to four intervals (many election timeouts: long enough to see
    whether a degraded cluster still serves). A fault that would run past the end is cut short
    there (the final heal follows the fault phase anyway). Each kind draws from its own
    stream, so adding a kind leaves the others' timelines as they were.
    """
    if timing not in TIMINGS:
        raise ValueError(f"unknown nemesis timing {timing!r}; choose {' or '.join(TIMINGS)}")
    if not spec or duration <= 0:
        return []
    base = rng.getrandbits(64)
    faults: list[PlannedFault] = []
    for kind in sorted(spec):
        stream = random.Random(f"{base}:{kind}")
        faults += _timeline(kind, spec[kind], duration, interval, stream, timing, election_s)
    return sorted(faults, key=lambda f: (f.start, f.kind))


def _length(rng: random.Random, interval: float, timing: str, election_s: float) -> float:
    if timing == "fixed":
        return interval * rng.uniform(0.5, 1.5)
    scale = rng.random()
    if scale < 0.25:
        return max(0.02, election_s * rng.uniform(0.2, 1.0))
    if scale < 0.75:
        return interval * rng.uniform(0.5, 1.5)
    return interval * rng.uniform(2.0, 4.0)


def _timeline(kind: str, shapes: tuple[str, ...], duration: float, interval: float,
              rng: random.Random, timing: str, election_s: float) -> list[PlannedFault]:
    faults: list[PlannedFault] = []
    t = interval * rng.uniform(0.25, 1.0)
    while t < duration - 0.5:
        shape = rng.choice(shapes)
        length = _length(rng, interval, timing, election_s)
        end = min(t + length, duration)
        faults.append(PlannedFault(round(t, 3), round(end, 3), kind, shape, rng.getrandbits(32)))
        t = end + interval * rng.uniform(0.5, 1.5)
    return faults
