"""harness explore: drawn runs, shrinking, and real explorations."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from harness.campaign.explore import Trial, allowed_shapes, draw, duration, explore, simplifications
from harness.run.config import RunConfig
from harness.systems import make_system
from nemesis.catalogue import parse_spec
from tests.harness.conftest import harness, node_processes

LOCAL_CAPS = {"partition", "pause", "kill", "delay", "one-way", "disk", "lose-unsynced"}


def shapes_for(system: str = "paxos", caps: set[str] = LOCAL_CAPS) -> dict:
    return allowed_shapes(make_system(system), caps, ("register", "set"))


def test_durations() -> None:
    assert duration("90") == 90 and duration("90s") == 90 and duration("5m") == 300
    assert duration("1h30m") == 5400
    for bad in ("", "soon", "0s", "-5m", "99999h"):
        with pytest.raises(ValueError):
            duration(bad)


def test_draws_are_seeded_and_respect_what_the_system_can_do() -> None:
    base = RunConfig()
    a = [draw(base, random.Random(4), shapes_for(), ("register", "set"), 20) for _ in range(1)]
    b = [draw(base, random.Random(4), shapes_for(), ("register", "set"), 20) for _ in range(1)]
    assert [c.to_json() for c in a] == [c.to_json() for c in b]
    etcd_shapes = shapes_for("etcd", LOCAL_CAPS - {"disk", "lose-unsynced"})
    assert "disk" not in etcd_shapes
    rng = random.Random(9)
    for _ in range(50):
        config = draw(RunConfig(system="etcd"), rng, etcd_shapes, ("register",), 15)
        assert config.time_limit <= 15 and config.workload == "register"
        assert set(parse_spec(config.nemesis)) <= set(etcd_shapes)
    # no power cut without the capability, no leader shapes for a system that cannot say
    no_crash = shapes_for("paxos", LOCAL_CAPS - {"lose-unsynced"})
    assert "power-cut" not in no_crash["disk"]


def test_simplifications_are_each_smaller() -> None:
    config = RunConfig(nemesis="kill:one/all,partition:halves", time_limit=20, concurrency=8,
                       nodes=5, seed=3)
    smaller = simplifications(config)
    nemeses = [c.nemesis for c in smaller]
    assert "partition:halves" in nemeses and "kill:one/all" in nemeses
    assert "kill:one,partition:halves" in nemeses
    assert any(c.time_limit == 10 for c in smaller)
    assert any(c.concurrency == 4 for c in smaller)
    assert any(c.nodes == 3 for c in smaller)
    assert all(c.seed == 3 for c in smaller)


def test_explore_stops_at_the_first_violation_and_shrinks_it() -> None:
    """A unit test of the search and the shrinking, with a runner that fails exactly when a
    kill is in the mix."""
    calls: list[RunConfig] = []
    clock = iter(range(0, 10**6, 10))

    def runner(config: RunConfig) -> Trial:
        calls.append(config)
        failing = "kill" in parse_spec(config.nemesis)
        return Trial(config, False if failing else True, f"/runs/{len(calls)}", 10.0,
                     "lost write" if failing else None)

    result = explore(RunConfig(), runner, budget_s=10**5, seed=1, shapes=shapes_for(),
                     workloads=("register",), clock=lambda: float(next(clock)))
    assert result.found is not None and "kill" in parse_spec(result.found.config.nemesis)
    assert all("kill" not in parse_spec(t.config.nemesis) for t in result.runs[:-1])
    smallest = result.smallest.config
    assert list(parse_spec(smallest.nemesis)) == ["kill"]
    assert len(parse_spec(smallest.nemesis)["kill"]) == 1
    assert smallest.time_limit == 6 and smallest.concurrency == 1 and smallest.nodes == 3


def test_explore_ends_at_its_budget_without_a_violation() -> None:
    clock = iter(range(0, 10**6, 7))

    def runner(config: RunConfig) -> Trial:
        return Trial(config, True, "/r", 7.0)

    result = explore(RunConfig(), runner, budget_s=200, seed=2, shapes=shapes_for(),
                     workloads=("register",), clock=lambda: float(next(clock)))
    assert result.found is None and 1 <= len(result.runs) < 30


@pytest.mark.slow
def test_explore_finds_a_catalogue_bug_from_cold_and_shrinks_it(tmp_path: Path) -> None:
    store = tmp_path / "store"
    proc = harness("explore", "--budget", "150s", "--shrink-budget", "60s", "--bug",
                   "small-quorum", "--seed", "1", "--max-time-limit", "10", "--store",
                   str(store), timeout=400)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "rerun: harness rerun" in proc.stderr
    summary = json.loads(next(store.glob("explorations/*/exploration.json")).read_text())
    found, smallest = summary["found"], summary["smallest"]
    assert found["valid"] is False and smallest["valid"] is False
    assert smallest["time_limit"] <= found["time_limit"]
    assert smallest["concurrency"] <= found["concurrency"]
    assert len(smallest["nemesis"]) <= len(found["nemesis"])
    for run in summary["runs"] + summary["shrunk"]:
        assert not node_processes(Path(run["run_dir"]).name)


@pytest.mark.slow
def test_explore_with_the_correct_node_ends_at_its_budget(tmp_path: Path) -> None:
    store = tmp_path / "store"
    proc = harness("explore", "--budget", "45s", "--seed", "5", "--max-time-limit", "10",
                   "--store", str(store), timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads(next(store.glob("explorations/*/exploration.json")).read_text())
    assert summary["found"] is None and len(summary["runs"]) >= 2
    assert all(r["valid"] is True for r in summary["runs"]), summary["runs"]


@pytest.mark.slow
def test_a_campaign_entry_can_be_an_exploration(tmp_path: Path) -> None:
    campaign = tmp_path / "c.toml"
    campaign.write_text('[campaign]\nname = "ex"\ntime-limit = 10\n\n[[matrix]]\n'
                        'name = "sq"\nbugs = ["small-quorum"]\nexplore = "120s"\nseeds = [1]\n'
                        'expect = "invalid"\nchecker = "linearizability"\n')
    proc = harness("campaign", str(campaign), "--store", str(tmp_path / "store"), timeout=400)
    assert "explore-sq" in proc.stdout + proc.stderr
    summary = json.loads(next((tmp_path / "store").glob("campaigns/ex/*/summary.json"))
                         .read_text())
    row = summary["runs"][0]
    assert row["valid"] is False and row["run_dir"]
    # held only if linearizability in particular flagged it
    assert row["held"] == ("linearizability flagged it" == row["why"])


def test_campaign_explore_entries_are_validated(tmp_path: Path) -> None:
    from harness.campaign.matrix import CampaignError, load

    good = tmp_path / "good.toml"
    good.write_text('[[matrix]]\nname = "x"\nexplore = "2m"\nseeds = [1, 2]\n')
    _, entries = load(good)
    assert [e.explore_s for e in entries] == [120, 120]
    assert [e.label for e in entries] == ["explore-x-s1", "explore-x-s2"]
    bad = tmp_path / "bad.toml"
    bad.write_text('[[matrix]]\nname = "x"\nexplore = "soon"\n')
    with pytest.raises(CampaignError, match=r"bad.toml line 3: explore: not a duration"):
        load(bad)
