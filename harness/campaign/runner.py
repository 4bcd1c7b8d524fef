"""Running a campaign's entries: one after another, on N local workers, or on a Dask cluster.

Each entry gives one row of the summary. Runs are independent, so workers only need isolation:
each local worker is a process of its own with its own slot (its runs' nodes get their own
block of loopback addresses; run directories and container names are unique anyway). The plans
are fixed by the seeds, so N workers run the same plans as one.

On a Dask cluster (`--cluster tcp://SCHEDULER:8786`) each run is one task on a worker machine
that has the harness installed. The task runs `harness rerun` on the entry's configuration in a
child process (the run's teardown needs a main thread and its signals) and sends the run
directory back as a tar, which lands in the controller's store. A task whose worker died is
submitted once more; a second loss is reported `unknown` with the reason, never dropped and
never counted as held.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.markup import escape

from harness.campaign.matrix import Entry, judged

# A lost run: its worker died, or the engine gave up on it.
LOST = "lost"


def row_of(entry: Entry, results: dict | None, run_dir: str | None, seconds: float,
           refused: str | None = None, interrupted: bool = False) -> dict[str, Any]:
    """The summary row of one entry."""
    from harness.report.analysis import load_history
    from harness.report.evidence import first_evidence_s

    expect = entry.expect + (f" ({entry.checker})" if entry.checker else "")
    about = {"seed": entry.config.seed, "nemesis": entry.config.nemesis,
             "bugs": entry.config.bugs, "backend": entry.config.backend}
    if refused is not None:
        return {"evidence_s": None, "label": entry.label, "run_dir": run_dir, "expect": expect,
                "valid": "refused" if refused != LOST else "unknown", "held": False,
                "why": refused if refused == LOST else f"refused: {refused}",
                "seconds": seconds, "rerun": None, **about}
    assert results is not None
    held, why = judged(entry, results)
    evidence = None
    if results.get("valid") is False and run_dir:
        evidence = first_evidence_s(results, load_history(Path(run_dir)))
    row = {"evidence_s": evidence, "label": entry.label, "run_dir": run_dir, "expect": expect,
           "valid": results.get("valid"), "held": held, "why": why, "seconds": seconds,
           "rerun": f"harness rerun {run_dir}" if run_dir else None, **about}
    if interrupted:
        row["interrupted"] = True
    return row


@dataclass
class _Explored:
    """An exploration entry's outcome, shaped like a run's: the failing run if one was found,
    else the last run, with the verdict the exploration as a whole reached."""

    run_dir: Path
    results: dict
    interrupted: bool = False


def explore_entry(entry: Any) -> _Explored:
    from harness.backends import BackendError
    from harness.campaign.explore import explore, runner, search_space
    from harness.run.controller import RunRefused

    base = entry.config
    try:
        shapes, workloads = search_space(base)
    except BackendError as exc:
        raise RunRefused(str(exc)) from None
    result = explore(base, runner, entry.explore_s, base.seed or 1, shapes, workloads,
                     shrink=False,
                     report=lambda line: print(f"  {line}", file=sys.stderr, flush=True))
    trial = result.found or (result.runs[-1] if result.runs else None)
    if trial is None or trial.run_dir is None:
        raise RunRefused(trial.why if trial else "the exploration made no run")
    results = json.loads((Path(trial.run_dir) / "results.json").read_text())
    if result.found is None:
        verdicts = [t.valid for t in result.runs]
        results = {**results, "valid": True if any(v is True for v in verdicts) else "unknown",
                   "reason": f"{len(verdicts)} explored run(s), no violation"}
    return _Explored(Path(trial.run_dir), results, result.interrupted)


def run_entry(entry: Entry) -> dict[str, Any]:
    """Run one entry here (a run, or an exploration) and give its row."""
    from harness.run.controller import RunRefused, execute

    t0 = time.monotonic()
    try:
        if entry.explore_s:
            outcome: Any = explore_entry(entry)
        else:
            outcome = execute(entry.config, progress=False)
    except RunRefused as exc:
        return row_of(entry, None, None, time.monotonic() - t0, refused=str(exc))
    return row_of(entry, outcome.results, str(outcome.run_dir), time.monotonic() - t0,
                  interrupted=outcome.interrupted)


def slot_pool(workers: int) -> ProcessPoolExecutor:
    """`workers` fresh processes, each holding slot 1..workers for its whole life."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    slots = context.Queue()
    for slot in range(1, workers + 1):
        slots.put(slot)
    return ProcessPoolExecutor(workers, mp_context=context, initializer=take_slot,
                               initargs=(slots,))


def take_slot(slots: Any) -> None:
    """A pool worker's initializer: its slot, for the rest of its life."""
    from harness.backends.local import SLOT_ENV

    os.environ[SLOT_ENV] = str(slots.get())


class Progress:
    """One live line over every worker: done, running, failed, and the time left."""

    def __init__(self, total: int) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as Bar

        self.console = Console(stderr=True)
        self.bar = Bar(TextColumn("[bold]campaign"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("{task.fields[state]}"), TimeElapsedColumn(),
                       TextColumn("eta"), TimeRemainingColumn(), console=self.console,
                       transient=False, disable=False)
        self.task = self.bar.add_task("runs", total=total, state="")
        self.running = 0
        self.failed = 0
        self.done = 0

    def __enter__(self) -> Progress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.__exit__(*exc)

    def _update(self) -> None:
        state = f"running {self.running}  failed {self.failed}"
        self.bar.update(self.task, completed=self.done, state=state)

    def started(self, label: str) -> None:
        self.running += 1
        self._update()

    def finished(self, row: dict[str, Any]) -> None:
        self.running -= 1
        self.done += 1
        if not row["held"]:
            self.failed += 1
            why = row["why"] + (f"\n  rerun: {row['rerun']}" if row.get("rerun") else "")
            # the label and reason are data: a `[1, 2]` in them is no markup
            self.console.print(f"[red]expectation failed[/red]: {escape(row['label'])}: "
                               f"{escape(why)}", markup=True, highlight=False)
        self._update()


def run_local(entries: list[Entry], workers: int, progress: Progress) -> list[dict[str, Any]]:
    """Every entry on `workers` local processes (1: here, in order). Rows in entry order."""
    if workers <= 1:
        rows = []
        for entry in entries:
            progress.started(entry.label)
            row = run_entry(entry)
            rows.append(row)
            progress.finished(row)
            if row.get("interrupted"):
                break
        return rows
    results: dict[int, dict[str, Any]] = {}
    with slot_pool(workers) as pool:
        futures: dict[Future, int] = {}
        for i, entry in enumerate(entries):
            futures[pool.submit(run_entry, entry)] = i
            progress.started(entry.label)
        pending = set(futures)
        interrupted = False
        while pending:
            try:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
            except KeyboardInterrupt:
                # Ctrl-C reached every worker too: their runs tear down and come back marked
                # interrupted; the ones not started yet never start.
                interrupted = True
                for future in pending:
                    future.cancel()
                pending = {f for f in pending if not f.cancelled()}
                continue
            for future in done:
                i = futures[future]
                try:
                    row = future.result()
                except Exception as exc:  # noqa: BLE001 - a worker process that died
                    row = row_of(entries[i], None, None, 0.0,
                                 refused=LOST)
                    row["why"] = f"{LOST}: the worker failed: {type(exc).__name__}: {exc}"
                results[i] = row
                progress.finished(row)
    rows = [results[i] for i in sorted(results)]
    if interrupted and rows:
        rows[-1]["interrupted"] = True
    return rows


# -- Dask --------------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """In the child: SIGTERM when the worker that started it dies (Linux), so a lost worker's
    run tears its cluster down instead of running on as an orphan."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def remote_run(config: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """The task a Dask worker runs: the configuration as a run of its own, its directory back
    as a tar."""
    with tempfile.TemporaryDirectory(prefix="paxos-harness-task-") as tmp:
        source = Path(tmp) / "source"
        source.mkdir()
        (source / "config.json").write_text(json.dumps(config))
        store = Path(tmp) / "store"
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "harness", "rerun", str(source), "--store",
                               str(store), "--quiet"], capture_output=True, text=True,
                              timeout=timeout_s, preexec_fn=_die_with_parent)
        run_dir = (store / "latest").resolve() if (store / "latest").exists() else None
        data = b""
        if run_dir is not None:
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w:gz") as tar:
                tar.add(run_dir, arcname=run_dir.name)
            data = buf.getvalue()
        return {"returncode": proc.returncode, "stderr": proc.stderr[-2000:], "tar": data,
                "test": run_dir.parent.name if run_dir else None,
                "seconds": time.monotonic() - started}


def _unpack(reply: dict[str, Any], store: Path) -> Path | None:
    if not reply.get("tar"):
        return None
    target = store / reply["test"]
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(reply["tar"]), mode="r:gz") as tar:
        tar.extractall(target, filter="data")
        name = tar.getnames()[0].split("/")[0]
    return target / name


@dataclass
class _Task:
    index: int
    tries: int


def run_cluster(entries: list[Entry], address: str, progress: Progress,
                connect: Callable[[str], Any] | None = None) -> list[dict[str, Any]]:
    """Every entry as a task on the Dask cluster at `address`. Rows in entry order."""
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise RuntimeError("--cluster needs Dask: pip install 'paxos-harness[cluster]'") from None
    client = (connect or (lambda a: Client(a, timeout=30)))(address)
    # A run whose worker died is the harness's to retry (once, and said so), not the
    # scheduler's to retry silently up to its `allowed-failures`: a run is not a pure function.
    client.run_on_scheduler(_no_silent_retries)
    results: dict[int, dict[str, Any]] = {}
    tasks: dict[Any, _Task] = {}
    try:
        futures = []
        for i, entry in enumerate(entries):
            if entry.explore_s:
                results[i] = row_of(entry, None, None, 0.0, refused="an exploration entry runs "
                                    "on this machine only (--workers), not on a cluster")
                continue
            future = _submit(client, entry, i, 0)
            tasks[future] = _Task(i, 0)
            futures.append(future)
            progress.started(entry.label)
        queue = as_completed(futures)
        for future in queue:
            task = tasks.pop(future)
            entry = entries[task.index]
            try:
                reply = future.result()
            except Exception as exc:  # noqa: BLE001 - KilledWorker, a lost connection, ...
                if task.tries == 0:
                    retry = _submit(client, entry, task.index, 1)
                    tasks[retry] = _Task(task.index, 1)
                    queue.add(retry)
                    continue
                row = row_of(entry, None, None, 0.0, refused=LOST)
                row["why"] = (f"{LOST}: the run's worker was lost twice ({type(exc).__name__}: "
                              f"{exc}); no verdict")
                results[task.index] = row
                progress.finished(row)
                continue
            run_dir = _unpack(reply, Path(entry.config.store))
            if run_dir is None or not (run_dir / "results.json").exists():
                lines = (reply.get("stderr") or "").strip().splitlines()
                row = row_of(entry, None, None, reply.get("seconds", 0.0),
                             refused=lines[-1] if lines else "the task made no run directory")
            else:
                results_json = json.loads((run_dir / "results.json").read_text())
                row = row_of(entry, results_json, str(run_dir), reply.get("seconds", 0.0))
                if task.tries:
                    row["why"] += " (after its first worker was lost)"
            results[task.index] = row
            progress.finished(row)
    finally:
        client.close()
    return [results[i] for i in sorted(results)]


def _no_silent_retries(dask_scheduler: Any) -> None:
    dask_scheduler.allowed_failures = 0


def _submit(client: Any, entry: Entry, index: int, attempt: int) -> Any:
    config = entry.config.to_json()
    timeout = 10 * entry.config.time_limit + 600
    # pure=False: a retry is a new task, not the failed one's cached key
    return client.submit(remote_run, config, timeout, pure=False, retries=0,
                         key=f"run-{index}-{entry.label}-try{attempt}")
