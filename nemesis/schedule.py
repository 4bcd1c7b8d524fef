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


def plan(spec: dict[str, tuple[str, ...]], duration: float, interval: float,
         rng: random.Random) -> list[PlannedFault]:
    """Each kind on its own timeline, composed as Jepsen composes nemeses: faults of different
    kinds may overlap (a partition during a pause), faults of one kind never do.

    On each timeline quiet gaps and faults alternate, each lasting `interval` seconds with
    +-50% jitter; a fault that would run past the end is cut short there (the final heal
    follows the fault phase anyway). Each kind draws from its own stream, so adding a kind
    leaves the others' timelines as they were.
    """
    if not spec or duration <= 0:
        return []
    base = rng.getrandbits(64)
    faults: list[PlannedFault] = []
    for kind in sorted(spec):
        stream = random.Random(f"{base}:{kind}")
        faults += _timeline(kind, spec[kind], duration, interval, stream)
    return sorted(faults, key=lambda f: (f.start, f.kind))


def _timeline(kind: str, shapes: tuple[str, ...], duration: float, interval: float,
              rng: random.Random) -> list[PlannedFault]:
    faults: list[PlannedFault] = []
    t = interval * rng.uniform(0.25, 1.0)
    while t < duration - 0.5:
        shape = rng.choice(shapes)
        length = interval * rng.uniform(0.5, 1.5)
        end = min(t + length, duration)
        faults.append(PlannedFault(round(t, 3), round(end, 3), kind, shape, rng.getrandbits(32)))
        t = end + interval * rng.uniform(0.5, 1.5)
    return faults
