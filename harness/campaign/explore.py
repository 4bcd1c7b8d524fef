"""A time-budgeted search for a failing run, and the shrinking of the one it finds.

Every run of an exploration is drawn from one seed: its nemesis mix (a few kinds, a few shapes
of each, targeted shapes included), the timing of its faults, the node count, the workload, the
number of clients, their rate and timeouts, and the run's length and seed. Only what the system
and the backend can do is drawn. The search stops at the first run whose verdict is false.

Then the failing run is shrunk, as QuickCheck and Jepsen's elle shrink: one simplification at
a time (a fault kind dropped, one shape kept, a shorter run, fewer clients, fewer nodes), each
rerun with the same seed, kept if the run still fails. Real runs are not deterministic, so a
candidate gets `attempts` tries before it counts as passing. The smallest failing run is
reported with its `harness rerun` command.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.run.config import RunConfig
from nemesis.catalogue import KINDS, capabilities, parse_spec, system_needs

INTERVALS = (0.5, 1.0, 2.0, 3.0, 4.0)
CONCURRENCY = (3, 5, 9, 12)
RATES = (100.0, 300.0, 600.0)
OP_TIMEOUTS = (0.5, 1.0, 2.0)
TIME_LIMITS = (10.0, 15.0, 20.0)
MIN_TIME_LIMIT = 6.0
MAX_REDRAWS = 1000


@dataclass
class Trial:
    config: RunConfig
    valid: Any
    run_dir: str | None
    seconds: float
    why: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"valid": self.valid, "run_dir": self.run_dir, "seconds": round(self.seconds, 2),
                "why": self.why, "nemesis": self.config.nemesis, "seed": self.config.seed,
                "nodes": self.config.nodes, "workload": self.config.workload,
                "concurrency": self.config.concurrency, "time_limit": self.config.time_limit}


@dataclass
class Exploration:
    runs: list[Trial] = field(default_factory=list)
    found: Trial | None = None
    shrunk: list[Trial] = field(default_factory=list)    # each accepted simplification
    smallest: Trial | None = None
    seconds_to_find: float | None = None
    interrupted: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"runs": [t.to_json() for t in self.runs],
                "found": self.found.to_json() if self.found else None,
                "seconds_to_find": self.seconds_to_find,
                "shrunk": [t.to_json() for t in self.shrunk],
                "smallest": self.smallest.to_json() if self.smallest else None,
                "interrupted": self.interrupted}


UNITS = {"s": 1, "m": 60, "h": 3600}


def duration(text: str) -> float:
    """`90`, `90s`, `5m`, `1h30m` -> seconds."""
    parts = re.fullmatch(r"\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*"
                         r"(?:(\d+(?:\.\d+)?)s?)?\s*", text or "")
    if not parts or not any(parts.groups()):
        raise ValueError(f"not a duration: {text!r} (say 90s, 5m or 1h)")
    h, m, s = (float(g or 0) for g in parts.groups())
    total = h * 3600 + m * 60 + s
    if not 1 <= total <= 7 * 86400:
        raise ValueError(f"a duration between 1 s and 7 days, not {text!r}")
    return total


def allowed_shapes(system: Any, backend_caps: set[str],
                   workloads: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """{kind: shapes} this system on this backend can take (targeted shapes included)."""
    out: dict[str, tuple[str, ...]] = {}
    for kind, shapes in KINDS.items():
        ok = []
        for shape in shapes:
            spec = {kind: (shape,)}
            if not capabilities(spec) <= backend_caps:
                continue
            if any(need not in system.capabilities for need in system_needs(spec)):
                continue
            ok.append(shape)
        if ok:
            out[kind] = tuple(ok)
    return out


def spec_text(spec: dict[str, tuple[str, ...]]) -> str:
    return ",".join(f"{kind}:{'/'.join(shapes)}" for kind, shapes in sorted(spec.items()))


def draw(base: RunConfig, rng: random.Random, shapes: dict[str, tuple[str, ...]],
         workloads: tuple[str, ...], max_time_limit: float) -> RunConfig:
    """One run of the exploration: everything varied that the base does not pin (bugs, the
    system, the backend and its options stay as given)."""
    kinds = sorted(shapes)
    chosen = rng.sample(kinds, rng.randint(1, min(3, len(kinds))))
    spec = {k: tuple(sorted(rng.sample(shapes[k], rng.randint(1, min(3, len(shapes[k]))))))
            for k in chosen}
    nodes = rng.choice((3, 3, 5))
    limits = [t for t in TIME_LIMITS if t <= max_time_limit] or [max_time_limit]
    return replace(
        base, nemesis=spec_text(spec), nodes=nodes,
        nemesis_interval=rng.choice(INTERVALS),
        nemesis_timing="scales" if rng.random() < 0.8 else "fixed",
        workload=rng.choice(workloads), concurrency=rng.choice(CONCURRENCY),
        rate=rng.choice(RATES), op_timeout=rng.choice(OP_TIMEOUTS),
        time_limit=rng.choice(limits), seed=rng.randrange(1, 2**31), name=None,
        bug_nodes=[n for n in base.bug_nodes if int(n[1:]) <= nodes])


def simplifications(config: RunConfig) -> list[RunConfig]:
    """Smaller versions of a failing run, the biggest cut first."""
    out: list[RunConfig] = []
    spec = parse_spec(config.nemesis)
    if len(spec) > 1:
        for kind in sorted(spec):
            rest = {k: v for k, v in spec.items() if k != kind}
            out.append(replace(config, nemesis=spec_text(rest)))
    for kind, shapes in sorted(spec.items()):
        if len(shapes) > 1:
            for shape in shapes:
                out.append(replace(config, nemesis=spec_text({**spec, kind: (shape,)})))
    if config.time_limit / 2 >= MIN_TIME_LIMIT:
        out.append(replace(config, time_limit=config.time_limit / 2))
    elif config.time_limit > MIN_TIME_LIMIT:
        out.append(replace(config, time_limit=MIN_TIME_LIMIT))
    if config.concurrency > 1:
        out.append(replace(config, concurrency=max(1, config.concurrency // 2)))
    if config.nodes > 3:
        out.append(replace(config, nodes=3,
                           bug_nodes=[n for n in config.bug_nodes if int(n[1:]) <= 3]))
    valid = []
    for candidate in out:
        try:
            candidate.validate()
        except ValueError:
            continue
        valid.append(candidate)
    return valid


Runner = Callable[[RunConfig], Trial]


def explore(base: RunConfig, runner: Runner, budget_s: float, seed: int,
            shapes: dict[str, tuple[str, ...]], workloads: tuple[str, ...],
            max_time_limit: float = 20.0, shrink_budget_s: float = 600.0, attempts: int = 2,
            shrink: bool = True, report: Callable[[str], None] = lambda line: None,
            clock: Callable[[], float] = time.monotonic, workers: int = 1) -> Exploration:
    """Search until the budget is spent or a run fails; then shrink that run. An interruption
    (KeyboardInterrupt from the runner) ends it with what was found so far in `partial`."""
    rng = random.Random(seed)
    result = Exploration()
    try:
        return _explore(result, base, runner, budget_s, rng, shapes, workloads, max_time_limit,
                        shrink_budget_s, attempts, shrink, report, clock, workers)
    except KeyboardInterrupt:
        result.interrupted = True
        return result


def _drawn(base: RunConfig, rng: random.Random, shapes: dict[str, tuple[str, ...]],
           workloads: tuple[str, ...], max_time_limit: float) -> Iterator[RunConfig]:
    """The exploration's runs, in order: the same sequence whatever the number of workers."""
    redraws = 0
    while True:
        config = draw(base, rng, shapes, workloads, max_time_limit)
        try:
            config.validate()
        except ValueError as exc:
            # a combination the configuration refuses (too many faults for the interval)
            redraws += 1
            if redraws > MAX_REDRAWS:
                raise ValueError(f"no drawn run is valid for this base configuration: {exc}") \
                    from None
            continue
        yield config


def _search_pool(configs: Iterator[RunConfig], runner: Runner, workers: int,
                 affordable: Callable[[RunConfig, int], bool],
                 record: Callable[[int, Trial], None], found: Callable[[], Any]) -> None:
    """The search on `workers` local processes (each with its own loopback block), keeping
    them all busy until the budget or the first violation; the runs in flight then finish."""
    from concurrent.futures import FIRST_COMPLETED, wait

    from harness.campaign.runner import slot_pool

    number = 0
    with slot_pool(workers) as pool:
        running: dict[Any, int] = {}
        exhausted = False
        while True:
            while not exhausted and found() is None and len(running) < workers:
                config = next(configs)
                if not affordable(config, number):
                    exhausted = True
                    break
                number += 1
                running[pool.submit(runner, config)] = number
            if not running:
                return
            done, _ = wait(set(running), return_when=FIRST_COMPLETED)
            for future in sorted(done, key=lambda f: running[f]):
                record(running.pop(future), future.result())


def _explore(result: Exploration, base: RunConfig, runner: Runner, budget_s: float,
             rng: random.Random, shapes: dict[str, tuple[str, ...]],
             workloads: tuple[str, ...], max_time_limit: float, shrink_budget_s: float,
             attempts: int, shrink: bool, report: Callable[[str], None],
             clock: Callable[[], float], workers: int = 1) -> Exploration:
    started = clock()
    configs = _drawn(base, rng, shapes, workloads, max_time_limit)

    def affordable(config: RunConfig, number: int) -> bool:
        # A run costs about its time limit plus start-up: do not start one the budget cannot
        # hold (the first always runs).
        return not number or clock() - started + config.time_limit + 5 <= budget_s

    def record(number: int, trial: Trial) -> None:
        result.runs.append(trial)
        report(f"run {number}: {describe(trial.config)} -> {trial.valid} "
               f"({trial.seconds:.0f} s)" + (f"  {trial.run_dir}" if trial.run_dir else ""))
        if trial.valid is False and result.found is None:
            result.found = trial
            result.seconds_to_find = round(clock() - started, 1)
            report(f"violation after {result.seconds_to_find:g} s: {trial.why}")
            report(f"rerun: harness rerun {trial.run_dir}")

    if workers <= 1:
        number = 0
        for config in configs:
            if not affordable(config, number):
                break
            number += 1
            record(number, runner(config))
            if result.found is not None:
                break
    else:
        _search_pool(configs, runner, workers, affordable, record, lambda: result.found)
    if result.found is None:
        report(f"budget of {budget_s:g} s spent after {len(result.runs)} run(s): no violation "
               "found")
    if result.found is None:
        return result
    result.smallest = result.found
    if not shrink:
        return result
    shrink_start = clock()
    progress = True
    while progress and clock() - shrink_start < shrink_budget_s:
        progress = False
        for candidate in simplifications(result.smallest.config):
            if clock() - shrink_start >= shrink_budget_s:
                break
            for _ in range(attempts):
                trial = runner(candidate)
                if trial.valid is False:
                    break
            report(f"shrink: {describe(candidate)} -> {trial.valid}")
            if trial.valid is False:
                result.shrunk.append(trial)
                result.smallest = trial
                progress = True
                break
    report(f"smallest failing run: {describe(result.smallest.config)}")
    report(f"rerun: harness rerun {result.smallest.run_dir}")
    return result


def backend_capabilities(config: RunConfig) -> set[str]:
    """What the configured backend can do on this machine (BackendError if nothing)."""
    from harness.backends import make_backend
    from harness.run.controller import Controller

    controller = Controller(config, Path(config.store) / "explore-probe", progress=False)
    return make_backend(config.backend, **controller.backend_options()).capabilities()


def search_space(base: RunConfig) -> tuple[dict[str, tuple[str, ...]], tuple[str, ...]]:
    """(shapes, workloads) an exploration of this system on this backend may draw
    (BackendError when the backend cannot be had)."""
    from harness.run.config import system_of
    from workloads import WORKLOADS

    system = system_of(base)
    workloads = tuple(w for w in WORKLOADS if system.workloads is None or w in system.workloads)
    return allowed_shapes(system, backend_capabilities(base), workloads), workloads


def runner(config: RunConfig) -> Trial:
    """One real run of the exploration."""
    from harness.run.controller import RunRefused, execute

    t0 = time.monotonic()
    # A simulated run takes about as long as its report's plots: only a run that did not pass
    # gets its report at once (`harness recheck RUN` writes any other's).
    simulated = config.backend == "sim"
    try:
        outcome = execute(config, progress=False, report=not simulated)
    except RunRefused as exc:
        return Trial(config, "refused", None, time.monotonic() - t0, str(exc))
    if outcome.interrupted:
        raise KeyboardInterrupt  # Ctrl-C or SIGTERM during a run ends the whole exploration
    if simulated and outcome.results.get("valid") is not True:
        from harness.run.store import write_report_safely

        write_report_safely(outcome.run_dir, outcome.results)
    valid = "unknown" if outcome.harness_error else outcome.results.get("valid")
    why = outcome.harness_error or outcome.results.get("reason")
    return Trial(config, valid, str(outcome.run_dir), time.monotonic() - t0, why)


def describe(config: RunConfig) -> str:
    return (f"{config.workload} nemesis={config.nemesis} nodes={config.nodes} "
            f"clients={config.concurrency} {config.time_limit:g}s seed={config.seed}")

