"""`harness compare`, `harness recheck` and `harness serve` on stored runs."""

from __future__ import annotations

import json
import threading
import urllib.request
from pathlib import Path

import pytest

from harness.cli import main
from harness.report.serve import find_runs, make_server
from harness.run.store import analyze_and_write
from tests.report.fakerun import make_run


@pytest.fixture
def two_runs(tmp_path: Path) -> tuple[Path, Path]:
    store = tmp_path / "store"
    a = make_run(store, seed=1, stamp="20240101T000000")
    b = make_run(store, workload="set", seed=2, fault="lost-add", stamp="20240101T000100")
    analyze_and_write(a)
    analyze_and_write(b)
    return a, b


def test_compare_prints_the_windows_of_both_runs(two_runs: tuple[Path, Path],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    a, b = two_runs
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert f"A: {a.parent.name}/{a.name}  (valid)" in out
    assert f"B: {b.parent.name}/{b.name}  (INVALID)" in out
    for window in ("warmup", "faults", "recovery"):
        assert f"== {window} ==" in out
    results_a = json.loads((a / "results.json").read_text())
    results_b = json.loads((b / "results.json").read_text())
    warm_a = results_a["perf"]["windows"]["warmup"]
    warm_b = results_b["perf"]["windows"]["warmup"]
    row = next(line for line in out.splitlines() if line.startswith("ops invoked"))
    assert row.split()[2:4] == [str(warm_a["invoked"]), str(warm_b["invoked"])]
    # the per-kind rows of both workloads: read/write/cas from A only, add from B only
    add_row = next(line for line in out.splitlines() if line.startswith("add p50 (ms)"))
    assert add_row.split()[3] == "-"
    write_row = next(line for line in out.splitlines() if line.startswith("write p50 (ms)"))
    assert write_row.split()[4] == "-"


def test_compare_html(two_runs: tuple[Path, Path], tmp_path: Path,
                      capsys: pytest.CaptureFixture[str]) -> None:
    a, b = two_runs
    out = tmp_path / "cmp.html"
    assert main(["compare", str(a), str(b), "--html", str(out)]) == 0
    text = out.read_text()
    assert text.count("<th colspan=\"4\">") == 3
    assert 'class="n worse"' in text
    assert "INVALID" in text


def test_compare_resolves_test_and_store_directories(two_runs: tuple[Path, Path],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    a, b = two_runs
    assert main(["compare", str(a.parent), str(b)]) == 0
    assert main(["compare", str(a.parent.parent / "nope"), str(b)]) == 3


def test_compare_without_results_json_computes_the_windows(
        two_runs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    a, b = two_runs
    (a / "results.json").unlink()
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "(not checked)" in out and "== faults ==" in out


def test_recheck_exit_codes_and_rewrites(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "store"
    good = make_run(store, name="good")
    bad = make_run(store, name="bad", fault="duplicate")
    vacuous = make_run(store, name="vacuous", fault="vacuous")
    assert main(["recheck", str(good)]) == 0
    assert json.loads((good / "results.json").read_text())["valid"] is True
    assert (good / "report.html").exists() and (good / "timeline.html").exists()
    assert main(["recheck", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "exactly-once" in out and "INVALID" in out
    assert main(["recheck", "--quiet", str(vacuous)]) == 2
    assert main(["recheck", str(tmp_path / "missing")]) == 3


def test_recheck_keeps_harness_trouble(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    (run_dir / "results.json").write_text(json.dumps({"valid": "unknown",
                                                      "harness_error": "backend died"}))
    assert main(["recheck", "--quiet", str(run_dir)]) == 2
    results = json.loads((run_dir / "results.json").read_text())
    assert results["harness_error"] == "backend died"


def test_serve_lists_runs_with_verdicts(two_runs: tuple[Path, Path]) -> None:
    a, b = two_runs
    store = a.parent.parent
    runs = find_runs(store)
    assert [r["valid"] for r in runs] == [False, True]  # newest first
    server = make_server(store, port=0, quiet=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        index = urllib.request.urlopen(base + "/", timeout=10).read().decode()
        assert '<tr class="valid">' in index and '<tr class="invalid">' in index
        link = f'href="/{a.parent.name}/{a.name}/report.html"'
        assert link in index
        report = urllib.request.urlopen(f"{base}/{a.parent.name}/{a.name}/report.html",
                                        timeout=10)
        assert report.status == 200 and b"PASS" in report.read()
        log = urllib.request.urlopen(f"{base}/{a.parent.name}/{a.name}/nodes/n1/node.log",
                                     timeout=10)
        assert log.headers["Content-Type"].startswith("text/plain")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
