"""The explanation page's stepper: the partial linearization, one op at a time, with the state
each op left, ending at the op that cannot be linearized (Porcupine's visualization)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from checkers import linearizability
from checkers.explain import render_html
from tests.report.test_report import CHROMIUM, needs_chromium


def _search_found_failure() -> dict:
    """Two overlapping writes read in the order 1, 2, 1: no stale-read shortcut applies (the
    writes overlap every read), so the search finds the failure, after a prefix of five."""
    ops = [
        {"process": 0, "type": "invoke", "f": "write", "value": 1},
        {"process": 1, "type": "invoke", "f": "write", "value": 2},
        {"process": 2, "type": "invoke", "f": "write", "value": 0},
        {"process": 2, "type": "ok", "f": "write", "value": 0},
        {"process": 3, "type": "invoke", "f": "read", "value": None},
        {"process": 3, "type": "ok", "f": "read", "value": 1},
        {"process": 4, "type": "invoke", "f": "read", "value": None},
        {"process": 4, "type": "ok", "f": "read", "value": 2},
        {"process": 3, "type": "invoke", "f": "read", "value": None},
        {"process": 3, "type": "ok", "f": "read", "value": 1},
        {"process": 0, "type": "ok", "f": "write", "value": 1},
        {"process": 1, "type": "ok", "f": "write", "value": 2},
    ]
    result = linearizability.check(ops, "cas-register")
    assert result["valid"] is False and result["failure"]["prefix_length"] == 5
    return result


def _steps(page: str) -> dict:
    m = re.search(r'<script type="application/json" id="steps-data">(.*?)</script>', page, re.S)
    assert m, "no steps on the page"
    return json.loads(m.group(1))


def test_the_steps_replay_the_prefix_in_order_and_end_at_the_failing_op() -> None:
    result = _search_found_failure()
    steps = _steps(render_html(result))
    assert steps["total"] == 5
    prefix = [s for s in steps["steps"] if not s.get("failing")]
    assert [s["n"] for s in prefix] == [1, 2, 3, 4, 5]
    # the states are the model's, replayed: write 0, write 1, read 1, write 2, read 2
    assert [s["state"] for s in prefix] == ["0", "1", "1", "2", "2"]
    last = steps["steps"][-1]
    assert last["failing"] and last["state"] == "2" and "1" in last["need"]
    assert last["op"] == result["failure"]["op"]["invoke_index"]


def test_a_value_that_could_end_the_script_stays_inside_it() -> None:
    result = _search_found_failure()
    for o in result["failure"]["timeline"]["ops"]:
        o["text"] = o["text"] + "</script><b>x</b>"
    page = render_html(result)
    assert _steps(page)["steps"][0]["text"].endswith("</script><b>x</b>")


@needs_chromium
def test_stepping_in_chromium_marks_the_current_op_and_says_its_state(tmp_path: Path) -> None:
    page = tmp_path / "lin.html"
    page.write_text(render_html(_search_found_failure()), encoding="utf-8")

    def open_at(fragment: str) -> str:
        proc = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
             "--virtual-time-budget=3000", "--dump-dom", page.resolve().as_uri() + fragment],
            capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert not [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
        return proc.stdout

    dom = open_at("#step=2")
    assert '<div id="stepper">' in dom, "the script did not show the stepper"
    text = re.search(r'<span id="step-text"[^>]*>([^<]*)<', dom).group(1)
    assert text.startswith("step 2 of 6: #2 of the 5 ops linearized")
    assert text.endswith("the state is 1")
    classes = re.findall(r'<rect class="op ([^"]*)"', dom)
    assert sum("current" in c for c in classes) == 1
    assert sum("future" in c for c in classes) == 4  # three prefix ops and the failing one
    assert any("prefix current" in c for c in classes)

    dom = open_at("")  # opens at the end: the failing op, all of the prefix shown
    text = re.search(r'<span id="step-text"[^>]*>([^<]*)<', dom).group(1)
    assert text.startswith("step 6 of 6") and "cannot be linearized next" in text
    assert "the state is 2" in text
    assert not any("future" in c for c in re.findall(r'<rect class="op ([^"]*)"', dom))
