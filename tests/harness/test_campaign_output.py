"""Campaign output: labels that keep the shapes, JUnit as CI servers read it, the index page."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from harness.campaign.matrix import load, write_index, write_junit

ROWS = [
    {"label": "register-partition:deposed-bridge-n3-s4", "run_dir": "/s/r1", "expect": "valid",
     "valid": True, "held": True, "why": "verdict valid", "seconds": 12.0, "rerun":
     "harness rerun /s/r1", "evidence_s": None, "seed": 4, "nemesis": "partition:deposed-bridge"},
    {"label": "b-s1", "run_dir": "/s/r2", "expect": "invalid (linearizability)", "valid": True,
     "held": False, "why": "expected linearizability to flag it; verdict valid", "seconds": 9.0,
     "rerun": "harness rerun /s/r2", "evidence_s": None, "seed": 1, "nemesis": "kill"},
    {"label": "c-s1", "run_dir": None, "expect": "valid", "valid": "refused", "held": False,
     "why": "refused: backend docker cannot do delay", "seconds": 0.1, "rerun": None,
     "evidence_s": None, "seed": 1, "nemesis": "delay"},
]


def test_labels_keep_the_nemesis_shapes(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('[[matrix]]\nnemeses = ["partition:deposed-bridge", "kill"]\nseeds = [4]\n')
    _, entries = load(f)
    assert [e.label for e in entries] == ["register-partition:deposed-bridge-n3-s4",
                                          "register-kill-n3-s4"]


def test_junit_has_what_ci_servers_read(tmp_path: Path) -> None:
    path = tmp_path / "junit.xml"
    write_junit(path, "smoke", ROWS, 1_700_000_000.0, {"seeds": "1,4"})
    suite = ET.parse(path).getroot()
    assert suite.tag == "testsuite"
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("3", "1", "1")
    assert suite.get("timestamp", "").startswith("2023-11-1") and suite.get("hostname")
    assert float(suite.get("time")) == 21.1
    assert suite.find("properties/property").get("name") == "seeds"
    cases = suite.findall("testcase")
    assert cases[0].find("failure") is None and "report: /s/r1/report.html" in \
        cases[0].find("system-out").text
    assert cases[1].find("failure").get("type") == "expectation"
    assert cases[2].find("error").get("type") == "harness"


def test_junit_validates_against_the_common_junit_schema(tmp_path: Path) -> None:
    import xmlschema

    schema = xmlschema.XMLSchema(Path(__file__).parent / "schemas" / "junit.xsd")
    path = tmp_path / "junit.xml"
    write_junit(path, "smoke", ROWS, 1_700_000_000.0, {"seeds": "1,4"})
    schema.validate(path)
    # the schema bites: a suite without its count of tests, a time with a unit
    text = path.read_text()
    for broken in (text.replace(' tests="3"', ""), text.replace('time="21.1"', 'time="21.1s"')):
        assert broken != text
        assert not schema.is_valid(broken)


def test_index_page_says_pass_and_fail_and_summarises(tmp_path: Path) -> None:
    path = tmp_path / "index.html"
    write_index(path, "smoke", [dict(r) for r in ROWS], {"seeds": "1,4"})
    text = path.read_text()
    assert "1/3 expectations held" in text and "2 failed" in text
    assert ">PASS<" in text and "True</td>" not in text and ">False<" not in text
    assert "partition:deposed-bridge" in text and "s/r1/report.html\">" in text


def test_compare_names_what_differs_beyond_timing() -> None:
    from harness.report.compare import differences

    a = {"config": {"seed": 1, "nemesis": "kill", "backend": "local", "bugs": []}}
    b = {"config": {"seed": 2, "nemesis": "kill", "backend": "docker", "bugs": []}}
    assert differences(a, b) == ["backend local / docker", "seed 1 / 2"]
    assert differences(a, a) == []
    c = {"config": {"seed": 1, "nemesis": "kill", "backend": "local",
                    "bugs": ["small-quorum", "no-dedup"], "time_limit": 8.0}}
    # settings as a person writes them, not Python's lists
    assert differences(a, c) == ["bugs none / small-quorum, no-dedup", "time limit - / 8.0"]


def test_the_terminal_table_names_verdicts_in_words_and_cuts_no_label(capsys) -> None:
    from harness.commands.campaign import _print_table

    long = "register-partition:lagging-takeover,disk:all,pause:stall-leader-n5-s12345"
    rows = [{"label": long, "expect": "valid", "valid": True, "held": True,
             "evidence_s": None, "seconds": 3.2},
            {"label": "b", "expect": "invalid", "valid": False, "held": True,
             "evidence_s": 1.25, "seconds": 4},
            {"label": "c", "expect": "valid", "valid": "unknown", "held": False,
             "evidence_s": None, "seconds": 1}]
    _print_table(rows)
    out = capsys.readouterr().out
    assert long in out
    lines = {line.split()[0]: line.split() for line in out.splitlines()[1:] if line.strip()}
    assert lines[long][2] == "PASS" and lines["b"][2] == "FAIL" and lines["c"][2] == "UNKNOWN"
    assert lines["c"][3] == "FAILED" and lines["b"][4] == "1.2"
    assert "True" not in out and "False" not in out
