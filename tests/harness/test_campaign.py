"""Campaign files: refused before any run when wrong; the shipped campaigns hold in CI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.campaign.matrix import CampaignError, load
from tests.harness.conftest import REPO, harness

GOOD = """\
[campaign]
time-limit = 8

[[matrix]]
workloads = ["register", "set"]
nemeses = ["partition", "kill"]
seeds = [1, 2]
expect = "valid"
"""


@pytest.mark.parametrize("text,message", [
    (GOOD.replace("time-limit = 8", "time-limit = 8\nworkers = 3"),
     "line 3: unknown key 'workers' in [campaign]"),
    (GOOD.replace('seeds = [1, 2]', 'seeds = [1, 2]\nbug = "x"'),
     "line 8: unknown key 'bug' in [[matrix]] #1"),
    (GOOD.replace('expect = "valid"', 'bugs = ["no-such-bug"]\nexpect = "valid"'),
     "line 8: unknown bug 'no-such-bug'"),
    (GOOD.replace('"partition", "kill"', '"partition", "flood"'),
     "line 6: unknown nemesis 'flood'"),
    (GOOD.replace('expect = "valid"', 'expect = "invalid"'),
     "needs the checker that must flag it"),
    ("[campaign\n", "Expected ']'"),
    (GOOD + "perf = { recovery-s = 2, warmup-p99 = 5 }\n", "unknown perf bound 'warmup-p99'"),
    (GOOD + 'perf = { recovery-s = "fast" }\n', "perf bound recovery-s must be a number"),
    (GOOD.replace('expect = "valid"', 'expect = "invalid"\nchecker = "linearizability"')
     + "perf = { recovery-s = 2 }\n", "perf expectations go with expect = 'valid'"),
])
def test_bad_campaign_is_refused_with_its_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(CampaignError, match=message.replace("[", r"\[").replace("]", r"\]")
                       .replace("(", r"\(").replace(")", r"\)")):
        load(path)
    proc = harness("campaign", str(path), "--store", str(tmp_path / "store"), timeout=30)
    assert proc.returncode == 3
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "store").exists(), "a run started before the campaign was refused"


def test_matrix_expands_to_every_combination(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(GOOD)
    name, entries = load(path)
    assert name == "c"
    combos = {(e.config.workload, e.config.nemesis, e.config.seed) for e in entries}
    assert len(combos) == len(entries) == 8
    assert all(e.config.time_limit == 8 for e in entries)


@pytest.mark.parametrize("campaign", ["smoke", "bugs", "nightly"])
def test_shipped_campaigns_load(campaign: str) -> None:
    _, entries = load(REPO / "campaigns" / f"{campaign}.toml")
    assert entries


@pytest.mark.slow
@pytest.mark.parametrize("campaign", ["smoke", "bugs"])
def test_shipped_campaign_holds(tmp_path: Path, campaign: str) -> None:
    proc = harness("campaign", str(REPO / "campaigns" / f"{campaign}.toml"), "--store",
                   str(tmp_path), timeout=1500)
    summaries = list(tmp_path.glob("campaigns/*/*/summary.json"))
    assert summaries, proc.stdout + proc.stderr
    runs = json.loads(summaries[0].read_text())["runs"]
    failed = [r for r in runs if not r["held"]]
    assert proc.returncode == 0 and not failed, failed
    assert (summaries[0].parent / "junit.xml").exists()
    assert (summaries[0].parent / "index.html").exists()


def test_bugs_campaign_expects_every_catalogued_bug_caught() -> None:
    """CI runs campaigns/bugs.toml: a bug missing from it would go unproven."""
    from node.bugs import BUGS

    _, entries = load(REPO / "campaigns" / "bugs.toml")
    caught = {b for e in entries if e.expect == "invalid" for b in e.config.bugs}
    assert caught == set(BUGS)
    assert all(e.config.time_limit <= 30 for e in entries)


def test_seeds_replace_every_entrys_seeds(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(GOOD)
    _, entries = load(path, seeds=[7, 8, 9])
    assert sorted({e.config.seed for e in entries}) == [7, 8, 9]
    assert len(entries) == 12 and all(e.label.endswith(f"-s{e.config.seed}") for e in entries)


@pytest.mark.parametrize("args,message", [
    (["--seeds", "1,x"], "--seeds must be integers"),
    (["--only", "no-such-entry"], "no entry's label contains 'no-such-entry'"),
])
def test_campaign_options_that_select_nothing_are_refused(tmp_path: Path, args: list[str],
                                                          message: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(GOOD)
    proc = harness("campaign", str(path), "--store", str(tmp_path / "store"), *args, timeout=30)
    assert proc.returncode == 3 and message in proc.stderr
    assert not (tmp_path / "store").exists()


PERF = {"recovery": {"time_to_latency_recovered_s": 0.4, "time_to_first_ok_s": 0.01},
        "fast_path": {"throughput_ratio": 0.9},
        "windows": {"warmup": {"throughput": 100.0, "latency_ms": {"all": {"p99": 2.0}}},
                    "faults": {"throughput": 30.0, "latency_ms": {"all": {"p99": 900.0}}}}}


def test_a_performance_expectation_is_judged_like_a_verdict() -> None:
    from harness.campaign.matrix import judged_perf

    held, why = judged_perf({"recovery-s": 1, "faults-p99-ms": 1000, "throughput-ratio": 0.8,
                             "faults-throughput-ratio": 0.25}, PERF)
    assert held, why
    held, why = judged_perf({"recovery-s": 1, "faults-p99-ms": 500,
                             "faults-throughput-ratio": 0.5}, PERF)
    assert not held
    assert "faults-p99-ms 900, past its bound 500" in why
    assert "faults-throughput-ratio 0.3, past its bound 0.5" in why and "recovery-s" not in why
    # what was not measured does not pass
    held, why = judged_perf({"recovery-p99-ms": 10}, PERF)
    assert not held and "could not be measured" in why


def test_a_performance_expectation_that_does_not_hold_fails_its_entry(tmp_path: Path) -> None:
    text = """\
[campaign]
name = "perf"
time-limit = 8
nemesis-interval = 1.5

[[matrix]]
nemeses = ["partition"]
name = "loose"
perf = { recovery-s = 30, faults-p99-ms = 100000, throughput-ratio = 0.01 }

[[matrix]]
nemeses = ["partition"]
name = "tight"
perf = { faults-p99-ms = 0.001 }
"""
    path = tmp_path / "perf.toml"
    path.write_text(text)
    proc = harness("campaign", str(path), "--backend", "sim", "--store", str(tmp_path / "s"),
                   timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    summary = next((tmp_path / "s").glob("campaigns/perf/*/summary.json"))
    runs = {r["label"]: r for r in json.loads(summary.read_text())["runs"]}
    assert runs["loose-s1"]["held"] and runs["loose-s1"]["valid"] is True
    assert not runs["tight-s1"]["held"] and runs["tight-s1"]["valid"] is True
    why = runs["tight-s1"]["why"]
    assert "faults-p99-ms" in why and "past its bound" in why
    junit = (summary.parent / "junit.xml").read_text()
    assert junit.count("<failure") == 1 and "past its bound 0.001" in junit
