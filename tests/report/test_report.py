"""report.html and timeline.html: written, self-contained, and rendered by headless Chromium
with every plot decoded and no script error."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.report.analysis import analyze
from harness.report.faults import fault_intervals
from harness.report.pages import write_report
from harness.run.store import analyze_and_write
from tests.report.fakerun import make_run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install -y chromium)")


def chromium_dom(page: Path, tmp_path: Path) -> tuple[str, str]:
    """(DOM after load, browser log) of a page opened from disk in headless Chromium."""
    assert CHROMIUM is not None
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--user-data-dir={tmp_path / 'chromium-profile'}", "--enable-logging=stderr", "--v=0",
         "--virtual-time-budget=5000", "--dump-dom", page.resolve().as_uri()],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, proc.stderr


def html_attr(dom: str, name: str) -> str | None:
    m = re.search(rf'<html[^>]*\s{re.escape(name)}="([^"]*)"', dom)
    return m.group(1) if m else None


def assert_rendered(page: Path, tmp_path: Path, min_plots: int) -> str:
    dom, log = chromium_dom(page, tmp_path)
    assert html_attr(dom, "data-loaded") == "1", "the load event never fired"
    assert html_attr(dom, "data-script-errors") == "0"
    console = [line for line in log.splitlines() if ":CONSOLE" in line]
    assert not console, console
    total = int(html_attr(dom, "data-plots-total") or 0)
    assert total >= min_plots
    assert html_attr(dom, "data-plots-rendered") == str(total), "a plot did not decode"
    return dom


def assert_self_contained(text: str) -> None:
    """No resource fetched from anywhere: no external scripts, styles or images."""
    assert not re.search(r'<(script|img|link)[^>]+(src|href)="(https?:)?//', text)
    assert "<link" not in text
    for src in re.findall(r'<img[^>]+src="([^"]+)"', text):
        assert src.startswith("data:image/png;base64,")


def test_report_sections(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    results = analyze_and_write(run_dir)
    assert "report_error" not in results
    text = (run_dir / "report.html").read_text()
    assert_self_contained(text)
    # verdict first: before any checker or plot
    assert text.index('id="verdict"') < text.index('id="checkers"') < text.index('id="plots"')
    assert ">PASS<" in text
    for name in results["checkers"]:
        assert f'id="checker-{name}"' in text
    for plot in ("latency", "quantiles", "throughput", "windows"):
        assert f'id="plot-{plot}"' in text
    for window in ("warmup", "faults", "recovery"):
        assert f"<th>{window}</th>" in text
    assert "commits without Phase 1" in text and "time to the first ok operation" in text
    for node in ("n1", "n2", "n3"):
        assert f'href="nodes/{node}/node.log"' in text
    assert "partition isolate-leader" in text and "kill n2" in text
    assert 'href="timeline.html"' in text
    timeline = (run_dir / "timeline.html").read_text()
    assert_self_contained(timeline)
    assert timeline.count('class="op ok"') > 100 and 'class="op nemesis"' in timeline


def test_invalid_report_leads_with_the_reason(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, workload="set", fault="lost-add")
    results = analyze_and_write(run_dir)
    text = (run_dir / "report.html").read_text()
    assert results["valid"] is False
    head = text[: text.index('id="checkers"')]
    assert ">FAIL<" in head and "acknowledged add(s) lost" in head


def test_linearizability_explanation_is_linked_when_invalid(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    history = [json.loads(x) for x in (run_dir / "history.jsonl").read_text().splitlines()]
    # a read of a value nobody ever wrote
    for op in history:
        if op.get("f") == "read" and op["type"] == "ok" and op["time"] > 8e9:
            op["value"] = 77
            break
    (run_dir / "history.jsonl").write_text("".join(json.dumps(op) + "\n" for op in history))
    results = analyze_and_write(run_dir)
    assert results["checkers"]["linearizability"]["valid"] is False
    text = (run_dir / "report.html").read_text()
    assert 'id="linearizability-explanation"' in text
    if (run_dir / "linearizability.html").exists():
        assert 'href="linearizability.html"' in text


def test_report_survives_an_empty_run(tmp_path: Path) -> None:
    run_dir = tmp_path / "t" / "r"
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text('{"workload": "register", "nodes": 3}')
    (run_dir / "history.jsonl").write_text("")
    results = analyze(run_dir)
    assert results["valid"] == "unknown"
    path = write_report(run_dir, results)
    assert ">UNKNOWN<" in path.read_text()


def test_fault_intervals_pair_starts_with_stops_and_heal() -> None:
    def nem(i: int, f: str, t: float, nodes: list[str], value: object = None) -> dict:
        return {"index": i, "time": int(t * 1e9), "process": "nemesis", "type": "invoke",
                "f": f, "value": value, "node": nodes}

    h = [nem(0, "start-partition", 1, ["n1", "n2", "n3"], {"shape": "halves"}),
         nem(1, "stop-partition", 2, ["n1", "n2", "n3"]),
         nem(2, "pause", 3, ["n2"], {"shape": "one"}),
         nem(3, "kill", 3.5, ["n3"], {"shape": "one"}),
         nem(4, "heal", 5, ["n2", "n3"]),
         nem(5, "start-delay", 6, ["n1"], {"shape": "all"})]
    faults = fault_intervals(h, int(7e9))
    assert [(f["label"], f["start_s"], f["end_s"]) for f in faults] == [
        ("partition halves", 1, 2), ("pause n2", 3, 5), ("kill n3", 3.5, 5),
        ("delay all (never stopped)", 6, 7)]


@needs_chromium
def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path / "store")
    analyze_and_write(run_dir)
    dom = assert_rendered(run_dir / "report.html", tmp_path, min_plots=4)
    assert "Fast path before, during and after faults" in dom
    assert_rendered(run_dir / "timeline.html", tmp_path, min_plots=0)


@needs_chromium
def test_invalid_set_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path / "store", workload="set", fault="no-recovery")
    analyze_and_write(run_dir)
    assert_rendered(run_dir / "report.html", tmp_path, min_plots=4)


def _local_links(page: Path) -> list[str]:
    text = page.read_text()
    return [h for h in re.findall(r'href="([^"]+)"', text)
            if not h.startswith(("http:", "https:", "mailto:"))]


def assert_links_resolve(page: Path, tmp_path: Path) -> None:
    """Every link on a page reaches an existing file, and its #fragment an element there."""
    for href in _local_links(page):
        path, _, fragment = href.partition("#")
        target = (page.parent / path).resolve() if path else page
        assert target.exists(), f"{page.name}: {href} goes nowhere"
        if fragment and target.suffix == ".html":
            assert re.search(rf'id="{re.escape(fragment)}"', target.read_text()), \
                f"{page.name}: {href} names no element of {target.name}"


def assert_failure_explained(run_dir: Path, tmp_path: Path) -> None:
    """The failing run's pages, in headless Chromium: the failing op with its node and the
    fault in force on each page, the links between them working, no script error."""
    results = json.loads((run_dir / "results.json").read_text())
    lin = results["checkers"]["linearizability"]
    op = lin["failure"]["op"]
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    entry = next(e for e in history if e.get("index") == op["complete_index"])
    assert op["node"] == entry["node"]
    faults = [f for f in fault_intervals(history, history[-1]["time"])
              if f["start"] <= entry["time"] and f["end"] >= entry["time"]]
    report = assert_rendered(run_dir / "report.html", tmp_path, min_plots=4)
    explanation, log = chromium_dom(run_dir / "linearizability.html", tmp_path)
    assert not [line for line in log.splitlines() if ":CONSOLE" in line]
    for dom in (report, explanation):
        assert html.escape(op["text"], quote=False) in dom
        assert re.search(rf"<b>{op['node']}</b>", dom), "the serving node is not shown"
        for f in faults:
            assert html.escape(f["detail"], quote=False) in dom, f["detail"]
        if not faults:
            assert "none" in dom
    assert "cannot be linearized" in explanation and "Where and when" in explanation
    for page in ("report.html", "linearizability.html", "timeline.html"):
        assert_links_resolve(run_dir / page, tmp_path)
    anchor = f"op-{op['invoke_index']}"
    assert f'href="timeline.html#{anchor}"' in (run_dir / "linearizability.html").read_text()
    assert 'href="report.html#plot-latency"' in (run_dir / "linearizability.html").read_text()
    # opening the timeline at the failing op's anchor reaches the outlined op, which links back
    target = run_dir / "timeline.html"
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--user-data-dir={tmp_path / 'chromium-profile'}", "--virtual-time-budget=5000",
         "--dump-dom", target.resolve().as_uri() + f"#{anchor}"],
        capture_output=True, text=True, timeout=120)
    assert html_attr(proc.stdout, "data-script-errors") == "0"
    reached = html_attr(proc.stdout, "data-target") or ""
    assert reached.split()[:1] == [anchor] and "failing" in reached.split(), reached
    timeline = target.read_text()
    box = re.search(rf'<a class="op [^"]*failing[^"]*" id="{anchor}" href="([^"]+)"', timeline)
    assert box and box.group(1) == "linearizability.html"


@needs_chromium
def test_a_stale_read_is_explained_across_the_pages(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path / "store", fault="stale-read")
    results = analyze_and_write(run_dir)
    assert results["checkers"]["linearizability"]["valid"] is False
    assert results["checkers"]["linearizability"]["failure"]["op"]["node"] == "n1"
    assert_failure_explained(run_dir, tmp_path)
    # the op it contradicts is named beside it
    text = (run_dir / "linearizability.html").read_text()
    assert "last update before it" in text or "acknowledged write it missed" in text


def test_other_checkers_evidence_is_tables_linked_to_the_timeline(tmp_path: Path) -> None:
    lost = make_run(tmp_path / "a", workload="set", fault="lost-add")
    results = analyze_and_write(lost)
    text = (lost / "report.html").read_text()
    victim = results["checkers"]["exactly-once"]["lost"][0]
    assert "acknowledged updates in no slot" in text
    assert f'href="timeline.html#op-{victim["invoke_index"]}"' in text
    assert "acknowledged adds missing from the final read" in text
    assert f"<td>{victim['value']}</td>" in text  # the set checker's lost element
    assert_links_resolve(lost / "report.html", tmp_path)
    dup = make_run(tmp_path / "b", fault="duplicate")
    results = analyze_and_write(dup)
    d = results["checkers"]["exactly-once"]["duplicates"][0]
    row = (f"<td>{d['client']}#{d['seq']}</td><td>{d['f']}</td>"
           f"<td>{', '.join(map(str, d['slots']))}</td>")
    assert row in (dup / "report.html").read_text().replace("\n", "")
    assert "in slots " + ", ".join(map(str, d["slots"])) in results["checkers"]["exactly-once"][
        "reason"]
    div = make_run(tmp_path / "c", fault="divergent")
    results = analyze_and_write(div)
    assert "what each node holds" in (div / "report.html").read_text()
    assert "{" not in results["checkers"]["agreement"]["reason"]  # words, not JSON


def test_partition_sides_are_named() -> None:
    from harness.report.faults import partition_sides

    both = [["n1", "n2"], ["n2", "n1"], ["n1", "n3"], ["n3", "n1"]]
    assert partition_sides(both, ["n1", "n2", "n3"]) == "n1 | n2 n3"
    five = [[a, b] for a in ("n1", "n2") for b in ("n3", "n4", "n5")]
    five += [[b, a] for a, b in five]
    assert partition_sides(five, ["n1", "n2", "n3", "n4", "n5"]) == "n1 n2 | n3 n4 n5"
    # n3 still reaches both sides: no clean split, so the links are named
    assert partition_sides([["n1", "n2"], ["n2", "n1"]], ["n1", "n2", "n3"]) == \
        "links cut: n1-n2"
    assert partition_sides([["n1", "n2"], ["n1", "n3"]], ["n1", "n2", "n3"]) == \
        "links cut: n1->n2, n1->n3"
    h = [{"index": 0, "time": 1_000_000_000, "process": 0, "type": "invoke", "f": "read",
          "node": "n3"},
         {"index": 1, "time": 2_000_000_000, "process": "nemesis", "type": "invoke",
          "f": "start-partition", "value": {"shape": "halves", "cut": both},
          "node": ["n1", "n2", "n3"]}]
    (fault,) = fault_intervals(h, 3_000_000_000)
    assert fault["detail"] == "partition halves: n1 | n2 n3 (never stopped)"
