"""The simulation backend (issue 18): the real harness on simulated time over the node's real
sans-IO core. Deterministic to the byte, a disk that keeps fsync's meaning, the catalogue's bugs
caught, the correct node valid over many schedules, run directories like a real run's."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from harness.backends.sim.disk import SimDisk
from tests.harness.conftest import REPO, harness


def sim_run(store: Path, *args: str, env: dict | None = None) -> tuple[int, Path]:
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "--backend", "sim",
                           "--store", str(store), "--quiet", *args], capture_output=True,
                          text=True, timeout=300, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    return proc.returncode, (store / "latest").resolve()


# -- the disk ----------------------------------------------------------------------------------


def test_a_crash_loses_what_the_process_held_and_a_power_cut_what_was_not_synced() -> None:
    disk = SimDisk()
    disk.hold([{"r": 1}, {"r": 2}])
    disk.sync()                          # durable
    disk.hold([{"r": 3}])
    disk.write()                         # in the operating system, not synced
    disk.hold([{"r": 4}])                # still in the process
    assert disk.crash() == 1             # a process crash: only r4 is gone
    assert disk.recover()[1] == [{"r": 1}, {"r": 2}, {"r": 3}]
    for seed in range(200):
        d = SimDisk()
        d.hold([{"r": i, "pad": "x" * 40} for i in range(5)])
        d.sync()
        d.hold([{"r": i, "pad": "x" * 40} for i in range(5, 10)])
        d.write()
        lost = d.power_cut(random.Random(seed))
        _, records, torn = d.recover()
        # synced records are never lost; unsynced ones survive only as a prefix
        assert records[:5] == [{"r": i, "pad": "x" * 40} for i in range(5)]
        assert [r["r"] for r in records] == list(range(len(records)))
        assert lost["records_lost"] == 10 - len(records)
        assert torn == 0 or 5 <= len(records) < 10
    # some cut mid-record (the log's recovery cuts the torn tail), some keep nothing unsynced
    outcomes = set()
    for seed in range(200):
        d = SimDisk()
        d.hold([{"r": i, "pad": "x" * 40} for i in range(3)])
        d.write()
        d.power_cut(random.Random(seed))
        outcomes.add((len(d.recover()[1]), d.torn == b""))
    assert (0, True) in outcomes and any(n > 0 for n, _ in outcomes)


def test_power_cut_with_torn_tail_is_cut_by_the_logs_own_scan() -> None:
    for seed in range(500):
        d = SimDisk()
        d.hold([{"r": i, "pad": "y" * 30} for i in range(4)])
        d.write()
        d.power_cut(random.Random(seed))
        if d.torn:
            _, records, torn = d.recover()
            assert torn > 0 and all(r["pad"] == "y" * 30 for r in records)
            return
    raise AssertionError("no power cut tore a record in 500 draws")


# -- determinism -------------------------------------------------------------------------------


def test_same_seed_same_bytes_on_any_hash_seed(tmp_path: Path) -> None:
    _, a = sim_run(tmp_path / "a", "--seed", "11", "--time-limit", "8",
                   env={"PYTHONHASHSEED": "1"})
    _, b = sim_run(tmp_path / "b", "--seed", "11", "--time-limit", "8",
                   env={"PYTHONHASHSEED": "2"})
    _, c = sim_run(tmp_path / "c", "--seed", "12", "--time-limit", "8")
    history = (a / "history.jsonl").read_bytes()
    assert history == (b / "history.jsonl").read_bytes()
    assert history != (c / "history.jsonl").read_bytes()
    assert json.loads((a / "results.json").read_text())["valid"] == \
        json.loads((b / "results.json").read_text())["valid"]
    ops = [json.loads(line) for line in history.splitlines()]
    assert sum(op["type"] == "ok" for op in ops) > 200
    # simulated nanoseconds: the run took its simulated time, whatever the wall clock did
    assert 8e9 <= ops[-1]["time"] < 40e9
    assert any(op["process"] == "nemesis" for op in ops)


def test_a_sim_run_directory_has_a_real_runs_shape(tmp_path: Path) -> None:
    from harness.report.pages import write_report

    _, sim = sim_run(tmp_path / "s", "--seed", "3", "--time-limit", "10")
    real = harness("run", "--seed", "3", "--time-limit", "6", "--nemesis", "partition",
                   "--store", str(tmp_path / "r"), "--quiet")
    assert real.returncode == 0, real.stdout + real.stderr
    real_dir = (tmp_path / "r" / "latest").resolve()

    def shape(d: Path) -> set[str]:
        # the real members' data directories and the fault shim's journals have no
        # counterpart: a simulated member's disk is in memory
        return {str(p.relative_to(d)) for p in d.rglob("*") if p.is_file()
                and "/data/" not in str(p) and "sync-journal" not in p.name
                and p.name != "slow-disk"}

    assert shape(real_dir) == shape(sim)
    results = json.loads((sim / "results.json").read_text())
    assert results["run"]["backend"] == "sim"
    for name in ("linearizability", "agreement", "exactly-once", "availability", "liveness"):
        assert results["checkers"][name]["valid"] is True, (name, results["checkers"][name])
    write_report(sim, results)  # the same report code reads it
    assert "<html" in (sim / "report.html").read_text()


# -- bugs and the correct node -----------------------------------------------------------------


def _catalogue_entries() -> list:
    from harness.campaign.matrix import load

    _, entries = load(REPO / "campaigns" / "bugs.toml", seeds=[1])
    return entries


def _execute(config) -> dict:  # noqa: ANN001 - a RunConfig
    from harness.run.controller import execute

    config.validate()
    return execute(config, progress=False, report=False).results


@pytest.mark.slow
@pytest.mark.parametrize("bug", [e.label.rsplit("-s", 1)[0] for e in _catalogue_entries()])
def test_every_catalogue_bug_is_caught_in_the_simulation(bug: str, tmp_path: Path) -> None:
    from harness.campaign.matrix import judged

    entry = next(e for e in _catalogue_entries() if e.label.startswith(bug + "-s"))
    for seed in range(1, 9):
        entry.config.backend, entry.config.seed = "sim", seed
        entry.config.store = str(tmp_path / "store")
        held, _why = judged(entry, _execute(entry.config))
        if held:
            return
    raise AssertionError(f"{bug} not caught by its catalogue entry in 8 simulated seeds")


@pytest.mark.parametrize("bug", ["small-quorum", "reply-before-fsync"])
def test_bugs_are_caught_in_default_simulated_runs(bug: str, tmp_path: Path) -> None:
    from harness.run.config import RunConfig

    results = _execute(RunConfig(backend="sim", seed=1, time_limit=20, bugs=[bug],
                                 store=str(tmp_path / "store")))
    assert results["valid"] is False, results["reason"]


def _valid_run(seed: int, store: str) -> tuple[int, object, object]:
    from harness.run.config import RunConfig

    results = _execute(RunConfig(backend="sim", seed=seed, time_limit=5, store=store,
                                 name=f"s{seed}"))
    return seed, results["valid"], results.get("reason")


def _valid_over(runs: int, store: Path) -> None:
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(_valid_run, range(1, runs + 1), [str(store)] * runs,
                                 chunksize=10))
    bad = [o for o in outcomes if o[1] is not True]
    assert len(outcomes) == runs and not bad, bad


def test_the_correct_node_is_valid_over_simulated_schedules(tmp_path: Path) -> None:
    """The default mix, 5 simulated seconds each, seeds 1..20 (the slow pass: 1,000)."""
    _valid_over(int(os.environ.get("PAXOS_SIM_RUNS", "20")), tmp_path / "store")


@pytest.mark.slow
def test_the_correct_node_is_valid_over_a_thousand_simulated_schedules(tmp_path: Path) -> None:
    _valid_over(1000, tmp_path / "store")
