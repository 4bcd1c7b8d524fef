"""The run lifecycle: cluster up, warm-up, faults, final heal and recovery, final reads, collect,
tear down, check. Every phase is recorded; whatever happens, the nodes are torn down and the
history written so far stays on disk and is checked.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.backends import Backend, BackendError, make_backend
from harness.run import store
from harness.run.clients import Worker, run_worker
from harness.run.config import RunConfig, system_of
from harness.run.history import HistoryRecorder
from harness.run.logs import LogTracker
from harness.systems import System
from nemesis.catalogue import capabilities, parse_spec
from nemesis.executor import Nemesis
from nemesis.schedule import plan
from workloads import make_workload

LEADER_WAIT_S = 30.0
LONG_TIMEOUT_FACTOR = 5


class HarnessError(Exception):
    """The harness itself failed (backend, cluster start-up): exit status 3, never a verdict."""


@dataclass
class RunOutcome:
    run_dir: Path
    results: dict[str, Any]
    harness_error: str | None = None
    interrupted: bool = False
    counts: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        if self.harness_error:
            return 3
        return {True: 0, False: 1}.get(self.results.get("valid"), 2)


class Controller:
    def __init__(self, config: RunConfig, run_dir: Path, progress: bool = True) -> None:
        self.config = config
        self.run_dir = run_dir
        self.progress = progress
        self.nodes = config.node_ids()
        self.system: System = system_of(config)
        rng = random.Random(config.seed)
        # Separate streams, so adding a fault kind does not change the operation sequence.
        self.op_rng = random.Random(rng.getrandbits(64))
        self.nemesis_rng = random.Random(rng.getrandbits(64))
        self.worker_seed = rng.getrandbits(64)
        self.workload = make_workload(config.workload, self.op_rng, config.concurrency)
        durations = config.phase_durations()
        self.durations = durations
        self.plan = plan(parse_spec(config.nemesis), durations["faults"],
                         config.nemesis_interval, self.nemesis_rng, config.nemesis_timing,
                         config.election_timeout_ms / 1000)
        self.history: HistoryRecorder | None = None  # opened once the run directory exists
        self.phases: list[dict[str, Any]] = []
        self.samples: list[dict[str, Any]] = []
        self.phase = "setup"
        self.backend: Backend | None = None
        self.nemesis: Nemesis | None = None
        self.addresses: dict[str, tuple[str, int]] = {}
        self.logs: LogTracker | None = None
        self.logs_stop = asyncio.Event()
        self.logs_task: asyncio.Future | None = None
        # The simulated-time loop the run goes on (backend sim), None for real time.
        self.sim_loop = None
        if config.backend == "sim":
            from harness.backends.sim.loop import VirtualLoop

            self.sim_loop = VirtualLoop()

    @staticmethod
    def now() -> float:
        """The loop's clock: monotonic time, or the simulation's."""
        return asyncio.get_running_loop().time()

    async def blocking(self, fn: Any, *args: Any) -> Any:
        """A backend call: in a thread for a real backend, here for a simulated one."""
        assert self.backend is not None
        if self.backend.blocking:
            return await asyncio.to_thread(fn, *args)
        return fn(*args)

    # -- cluster state -------------------------------------------------------------------

    async def statuses(self, timeout: float = 0.5) -> dict[str, dict | None]:
        replies = await asyncio.gather(*(self.system.status(self.addresses[n], timeout)
                                         for n in self.nodes))
        return dict(zip(self.nodes, replies, strict=True))

    async def leader(self) -> str | None:
        """The member the system names as its leader (for a node: the highest ballot)."""
        return self.system.leader_of(await self.statuses())

    async def wait_for_leader(self, timeout: float) -> str:
        assert self.backend is not None
        deadline = self.now() + timeout
        while self.now() < deadline:
            for node in self.nodes:
                if not self.backend.is_running(node):
                    tail = self.backend.log_tail(node, 5).strip().replace("\n", " | ")
                    raise HarnessError(f"node {node} exited during start-up: {tail or 'no log'}")
            serving = self.system.serving(await self.statuses())
            if serving is not None:
                return serving
            await asyncio.sleep(0.1)
        tails = "; ".join(f"{n}: {self.backend.log_tail(n, 1).strip()}" for n in self.nodes)
        raise HarnessError(f"no leader served within {timeout:.0f} s ({tails})")

    async def sample(self, label: str) -> None:
        """Every node's status (counters) at a phase boundary. Right after a heal restarted
        the nodes none may answer yet; wait up to 2 s for at least one."""
        deadline = self.now() + 2.0
        while True:
            now = self.history.now()
            nodes = await self.statuses(1.0)
            if any(nodes.values()) or self.now() >= deadline:
                break
            await asyncio.sleep(0.1)
        self.samples.append({"time": now, "label": label, "nodes": nodes})

    def begin_phase(self, name: str) -> None:
        now = self.history.now()
        if self.phases:
            self.phases[-1]["end"] = now
        self.phases.append({"name": name, "start": now, "end": None})
        self.phase = name

    def end_phases(self) -> None:
        if self.phases and self.phases[-1]["end"] is None:
            self.phases[-1]["end"] = self.history.now()

    # -- phases --------------------------------------------------------------------------

    def record_nemesis(self, type_: str, f: str, value: Any, nodes: list[str]) -> None:
        self.history.append("nemesis", type_, f, value, node=nodes)

    async def run_nemesis(self) -> None:
        assert self.nemesis is not None
        start = self.now()
        # Faults of different kinds overlap; run starts and stops in time order. A fault whose
        # every target is down (a pause during kill:all) waits for the next stop to bring one
        # back, until its own end.
        events = sorted([(f.start, 1, i) for i, f in enumerate(self.plan)]
                        + [(f.end, 0, i) for i, f in enumerate(self.plan)])
        started: dict[int, tuple[str, list[str]]] = {}
        waiting: list[int] = []
        while events:
            at, is_start, i = events.pop(0)
            await asyncio.sleep(max(0.0, start + at - self.now()))
            if is_start:
                begun = await self.nemesis.start(self.plan[i])
                if begun is not None:
                    started[i] = begun
                else:
                    waiting.append(i)
                continue
            if i in started:
                await self.nemesis.stop(*started.pop(i))
                for j in waiting:  # something came back: try the waiting faults again now
                    if self.now() - start < self.plan[j].end:
                        events.insert(0, (self.now() - start, 1, j))
                waiting.clear()
        await asyncio.sleep(max(0.0, start + self.durations["faults"] - self.now()))

    async def run_final_ops(self, workers: list[Worker]) -> None:
        ops = self.workload.final_ops()
        queue: asyncio.Queue = asyncio.Queue()
        for op in ops:
            queue.put_nowait(op)

        async def drain(worker: Worker) -> None:
            while not queue.empty():
                await worker.invoke(queue.get_nowait())

        await asyncio.gather(*(drain(w) for w in workers))

    def progress_stats(self, rate: float) -> str:
        c = self.history.counts
        faults = ", ".join(self.nemesis.active()) if self.nemesis else ""
        return (f"{rate:6.0f} ops/s  ok {c['ok']} fail {c['fail']} info {c['info']}  "
                f"faults: {faults or '-'}")

    async def progress_line(self) -> None:
        """The run as it goes: on a terminal a live bar over the planned time (rich,
        transient); elsewhere one plain line every 5 s, for logs."""
        start = self.now()
        last_ops, last_t = 0, start

        def rate() -> float:
            nonlocal last_ops, last_t
            c = self.history.counts
            done, now = c["ok"] + c["fail"] + c["info"], self.now()
            r = (done - last_ops) / max(1e-9, now - last_t)
            last_ops, last_t = done, now
            return r

        if not sys.stderr.isatty():
            while True:
                await asyncio.sleep(5.0)
                elapsed = self.now() - start
                print(f"[{self.phase:>11}] {elapsed:5.1f}s {self.progress_stats(rate())}",
                      file=sys.stderr, flush=True)
        from rich.console import Console
        from rich.markup import escape
        from rich.progress import BarColumn, Progress, TextColumn

        planned = sum(self.durations.values())
        bar = Progress(TextColumn("[bold]{task.fields[phase]:>11}"), BarColumn(bar_width=16),
                       TextColumn("{task.completed:.0f}/{task.total:.0f} s"),
                       TextColumn("{task.fields[stats]}"),
                       console=Console(stderr=True), transient=True, refresh_per_second=4)
        with bar:
            task = bar.add_task("run", total=planned, phase=self.phase, stats="")
            while True:
                await asyncio.sleep(1.0)
                bar.update(task, completed=min(planned, self.now() - start),
                           phase=self.phase, stats=escape(self.progress_stats(rate())))

    def track_logs(self) -> None:
        """Record the chosen logs from now on (a system that serves them)."""
        if "log" in self.system.capabilities:
            self.logs = LogTracker(self.system, self.addresses)
            self.logs_task = asyncio.ensure_future(self.logs.run(self.logs_stop))

    async def collect_nodes(self) -> None:
        statuses = await self.statuses(2.0)
        self.logs_stop.set()
        if self.logs_task is not None:
            await asyncio.gather(self.logs_task, return_exceptions=True)
        if self.logs is None and "log" in self.system.capabilities:
            self.logs = LogTracker(self.system, self.addresses)
        for node in self.nodes:
            node_dir = self.run_dir / "nodes" / node
            node_dir.mkdir(parents=True, exist_ok=True)
            (node_dir / "status.json").write_text(json.dumps(statuses[node], indent=1))
            log = None
            if self.logs is not None:
                await self.logs.poll(node, timeout=5.0)
                log = self.logs.records[node].to_json()
            (node_dir / "log.json").write_text(json.dumps(log))

    def preflight(self) -> None:
        """The backend, asked whether it can run what the configuration asks (BackendError)."""
        self.backend = make_backend(self.config.backend, **self.backend_options())
        self.backend.probe(capabilities(parse_spec(self.config.nemesis)))

    def open_history(self) -> None:
        clock = self.sim_loop.time_ns if self.sim_loop is not None else time.monotonic_ns
        self.history = HistoryRecorder(self.run_dir / "history.jsonl", clock_ns=clock)

    def history_close(self) -> None:
        if self.history is not None:
            self.history.close()

    async def lifecycle(self) -> None:
        config = self.config
        progress = asyncio.ensure_future(self.progress_line()) if self.progress else None
        try:
            await self.blocking(self.backend.setup)
            if hasattr(self.backend, "system_view"):
                self.system = self.backend.system_view()  # the simulation's members
            self.addresses = {n: self.backend.client_address(n) for n in self.nodes}
            await self.wait_for_leader(LEADER_WAIT_S)
            self.track_logs()
            # The lagging follower falls behind for most of an election timeout, not all of
            # it: it must not start elections of its own before the leader is cut off.
            self.nemesis = Nemesis(self.backend, self.nodes, self.record_nemesis, self.leader,
                                   delay_ms=config.delay_ms,
                                   lag_s=0.8 * config.election_timeout_ms / 1000,
                                   stall_s=3 * config.election_timeout_ms / 1000,
                                   election_s=config.election_timeout_ms / 1000,
                                   disk_delay_ms=config.disk_delay_ms, loss=config.loss)
            await self.drive()
        finally:
            if progress is not None:
                progress.cancel()
                await asyncio.gather(progress, return_exceptions=True)

    async def drive(self) -> None:
        config = self.config
        worker_rng = random.Random(self.worker_seed)
        workers = [Worker(i, config.concurrency, self.workload, self.history, self.addresses,
                          self.op_timeout(i), random.Random(worker_rng.getrandbits(64)),
                          self.system)
                   for i in range(config.concurrency)]
        interval = config.concurrency / config.rate if config.rate > 0 else 0.0
        stop = asyncio.Event()
        self.begin_phase("warmup")
        await self.sample("warmup-start")
        tasks = [asyncio.ensure_future(run_worker(w, stop, interval)) for w in workers]
        try:
            await asyncio.sleep(self.durations["warmup"])
            if self.plan or self.durations["faults"] > 0:
                self.begin_phase("faults")
                await self.sample("faults-start")
                await self.run_nemesis()
            assert self.nemesis is not None
            await self.nemesis.heal()
            self.begin_phase("recovery")
            await self.sample("recovery-start")
            await asyncio.sleep(self.durations["recovery"])
            stop.set()
            await asyncio.gather(*tasks)
            self.begin_phase("final-reads")
            await self.run_final_ops(workers)
            self.end_phases()
            await self.sample("end")
        finally:
            stop.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for w in workers:
                w.close()
            self.end_phases()

    def op_timeout(self, worker: int) -> float:
        """Every third client waits five op timeouts under `scales` timing: its operations
        stay in flight across a pause or a partition, and see what the node does when it
        comes back (a leader that resumes and answers from its old state)."""
        long = self.config.nemesis_timing == "scales" and worker % 3 == 2
        return self.config.op_timeout * (LONG_TIMEOUT_FACTOR if long else 1)

    def backend_options(self) -> dict[str, Any]:
        member_args = self.system.member_args
        options: dict[str, Any] = {"node_ids": self.nodes, "run_dir": self.run_dir,
                                   "node_args": member_args(self.config, self.nodes[0]),
                                   "run_id": self.run_dir.name, "system": self.system}
        if self.config.bug_nodes:
            options["node_args"] = member_args(self.config, "")
            options["per_node_args"] = {n: member_args(self.config, n) for n in self.nodes}
        if self.config.backend == "local":
            options["base_port"] = self.config.base_port
        if self.config.backend == "docker" and self.config.image:
            options["image"] = self.config.image
        if self.config.backend == "sim":
            options["seed"] = self.config.seed or 0
        if self.config.backend == "ssh":
            options["hosts"] = self.config.hosts
            options["known_hosts"] = self.config.ssh_known_hosts
            options["ssh_key"] = self.config.ssh_key
            options["accept_new_host_keys"] = self.config.ssh_accept_new_host_keys
        return options

    async def collect_and_teardown(self) -> None:
        if self.backend is None:
            return
        try:
            if self.addresses:
                await self.collect_nodes()
            await self.blocking(self.backend.collect)
        finally:
            await self.blocking(self.backend.teardown)


class RunRefused(Exception):
    """The run cannot start as configured (the backend cannot do what it asks, a package is
    missing, the store cannot be written): nothing was started and nothing written."""


def execute(config: RunConfig, progress: bool = True, report: bool = True) -> RunOutcome:
    """Run one test end to end and write its run directory (without report.html when `report`
    is False). Raises RunRefused, before anything starts or is written, when the run cannot
    start."""
    run_dir = store.next_run_dir(Path(config.store), config.test_name())
    controller = Controller(config, run_dir, progress)
    try:
        controller.preflight()
    except BackendError as exc:
        raise RunRefused(str(exc)) from None
    try:
        store.create_run_dir(run_dir)
        controller.open_history()
        store.write_json(run_dir / "config.json", config.to_json())
        store.write_json(run_dir / "plan.json", [f.to_dict() for f in controller.plan])
    except OSError as exc:
        controller.history_close()
        raise RunRefused(f"cannot write the run directory {run_dir}: "
                         f"{exc.strerror or exc}") from None
    harness_error: str | None = None
    interrupted = False

    terminated_by: list[int] = []

    async def main() -> None:
        nonlocal harness_error
        # SIGTERM and SIGHUP cancel the run at its next await, as asyncio does with Ctrl-C,
        # rather than raising in whatever line runs then; a loop without signal handlers
        # (the simulation's) keeps the `terminated` handler below.
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()

        def on_signal(sig: int) -> None:
            terminated_by.append(sig)
            if task is not None:
                task.cancel()

        for sig in (signal.SIGTERM, signal.SIGHUP):
            try:
                loop.add_signal_handler(sig, on_signal, sig)
            except (NotImplementedError, RuntimeError, ValueError):
                pass
        try:
            await controller.lifecycle()
        except (HarnessError, BackendError) as exc:
            harness_error = str(exc)
        except OSError as exc:
            harness_error = f"the controller failed: {exc}"
        finally:
            try:
                await controller.collect_and_teardown()
            except (BackendError, OSError) as exc:
                harness_error = harness_error or f"teardown failed: {exc}"

    def terminated(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # SIGTERM and SIGHUP tear down like Ctrl-C

    previous = {sig: signal.signal(sig, terminated) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        if controller.sim_loop is not None:
            loop = controller.sim_loop
            with asyncio.Runner(loop_factory=lambda: loop) as runner:
                runner.run(main())
        else:
            asyncio.run(main())
    except (KeyboardInterrupt, asyncio.CancelledError) as exc:
        if isinstance(exc, asyncio.CancelledError) and not terminated_by:
            raise
        interrupted = True
        # asyncio.run cancelled main(); its finally blocks tore the cluster down. Make sure.
        if controller.backend is not None:
            controller.backend.teardown()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        controller.history_close()
        controller.end_phases()
        try:
            store.write_json(run_dir / "phases.json", controller.phases)
            store.write_json(run_dir / "status-samples.json", controller.samples)
        except OSError as exc:
            harness_error = harness_error or f"cannot write the run directory: {exc}"
    results = store.analyze_and_write(run_dir, harness_error=harness_error,
                                      incomplete=interrupted, report=report)
    return RunOutcome(run_dir, results, harness_error or results.get("harness_error"),
                      interrupted)
