"""`harness check` and `harness bench-check`: exit codes, output, HTML."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from harness.cli import main

from .conftest import REPO

ETCD_BAD = "jepsen/etcd_000.log"
ETCD_OK = "jepsen/etcd_002.log"


def _hard_history(tmp_path):
    # 18 concurrent writes, then reads of two of their values in a row: impossible, and
    # refuting it means visiting every subset of the writes
    lines = [{"process": p, "type": "invoke", "f": "write", "value": p} for p in range(18)]
    lines += [{"process": p, "type": "ok", "f": "write", "value": p} for p in range(18)]
    for v in (0, 1):
        lines += [{"process": 0, "type": "invoke", "f": "read", "value": None},
                  {"process": 0, "type": "ok", "f": "read", "value": v}]
    p = tmp_path / "hard.jsonl"
    p.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return p


def test_exit_codes(corpus, tmp_path, capsys):
    assert main(["check", str(corpus / ETCD_OK)]) == 0
    assert main(["check", str(corpus / ETCD_OK), str(corpus / ETCD_BAD)]) == 1
    out = capsys.readouterr().out
    assert "etcd_002.log: valid" in out and "etcd_000.log: INVALID" in out
    hard = _hard_history(tmp_path)
    assert main(["check", str(hard), "--time-limit", "0.2"]) == 2
    assert "unknown" in capsys.readouterr().out
    # invalid outranks unknown
    assert main(["check", str(hard), str(corpus / ETCD_BAD), "--time-limit", "0.2"]) == 1
    bad = tmp_path / "bad.edn"
    bad.write_text("{:process 0, :type :invoke, :f :read}\n{:process 0, :type :ok, :f")
    # bad input outranks everything, and the other files are still checked
    assert main(["check", str(bad), str(corpus / ETCD_BAD)]) == 3
    cap = capsys.readouterr()
    assert f"{bad}:2:" in cap.err
    assert "etcd_000.log: INVALID" in cap.out


def test_run_directory(tmp_path, capsys):
    run = tmp_path / "store" / "t" / "20260101T000000"
    run.mkdir(parents=True)
    (run / "history.jsonl").write_text(
        '{"index": 0, "process": 0, "type": "invoke", "f": "write", "key": "k", "value": 1}\n'
        '{"index": 1, "process": 0, "type": "ok", "f": "write", "key": "k", "value": 1}\n'
        '{"index": 2, "process": 1, "type": "invoke", "f": "read", "key": "k", "value": null}\n'
        '{"index": 3, "process": 1, "type": "ok", "f": "read", "key": "k", "value": 2}\n')
    assert main(["check", str(run)]) == 1
    assert "20260101T000000: INVALID" in capsys.readouterr().out


def test_json_lines(corpus, capsys):
    assert main(["check", "--json", str(corpus / ETCD_OK), str(corpus / "kv/c10-bad.txt")]) == 1
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["valid"] for x in lines] == [True, False]
    assert lines[0]["file"].endswith("etcd_002.log") and lines[0]["seconds"] >= 0
    assert "reason" in lines[1] and lines[1]["failure"]["key"] is not None
    assert lines[1]["model"] == "kv" and lines[1]["format"] == "porcupine-kv"


def test_model_and_format_options(corpus, tmp_path, capsys):
    # read as Jepsen EDN, the kv corpus has no initial "" and fails at the first get of ""
    assert main(["check", "--format", "edn", str(corpus / "kv/c01-ok.txt")]) == 1
    assert main(["check", "--format", "edn", "--initial", '""',
                 str(corpus / "kv/c01-ok.txt")]) == 0
    assert main(["check", "--model", "map", str(corpus / "kv/c01-ok.txt")]) == 0
    capsys.readouterr()


def test_html_explanation(corpus, tmp_path, capsys):
    out = tmp_path / "why.html"
    assert main(["check", str(corpus / ETCD_BAD), "--html", str(out)]) == 1
    page = out.read_text()
    assert "Not linearizable" in page and "<svg" in page
    assert "read() -&gt; 2" in page or "read() -> 2" in page
    assert 'class="op failing' in page
    for external in ("<script src", "<link", "@import", "url(", "src=\"http"):
        assert external not in page
    # several files: OUT is a directory
    d = tmp_path / "pages"
    assert main(["check", str(corpus / ETCD_BAD), str(corpus / ETCD_OK), "--html", str(d)]) == 1
    assert sorted(p.name for p in d.iterdir()) == ["etcd_000.html", "etcd_002.html"]
    assert "Linearizable" in (d / "etcd_002.html").read_text()
    capsys.readouterr()


def _run(*args):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def test_bad_input_is_one_line_without_traceback(tmp_path):
    p = tmp_path / "orphan.jsonl"
    p.write_text('{"process": 0, "type": "invoke", "f": "read"}\n'
                 '{"process": 1, "type": "ok", "f": "read", "value": 3}\n')
    r = _run("check", str(p))
    assert r.returncode == 3
    assert r.stderr.strip() == (
        f"harness check: {p}:2: ok of read by process 1 has no invocation before it")
    assert "Traceback" not in r.stderr
    r = _run("check", str(tmp_path / "missing.edn"))
    assert r.returncode == 3 and "Traceback" not in r.stderr
    assert "missing.edn" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_bench_check(corpus, capsys):
    assert main(["bench-check", str(corpus / "kv")]) == 0
    out = capsys.readouterr().out
    assert "c50-ok.txt" in out and "kv: 6 files" in out and "peak memory" in out


def test_bench_check_refuses_an_expected_csv_without_its_columns(tmp_path, corpus, capsys):
    import shutil

    (tmp_path / "EXPECTED.csv").write_text("file,verdict\nc01-ok.txt,true\n")
    shutil.copy(next((corpus / "kv").iterdir()), tmp_path / "c01-ok.txt")
    assert main(["bench-check", str(tmp_path)]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no expected_linearizable column" in err[0]


def test_bench_check_compares_a_sub_folder_against_the_corpus_expectations(corpus, capsys):
    assert main(["bench-check", "--quiet", str(corpus / "kv")]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^(\d+) of \1 verdicts matched the expected ones$", out, re.M), out
    assert "no verdict compared" not in out


def test_bench_check_generates_the_classes_and_times_another_checker_beside(tmp_path, capsys):
    other = tmp_path / "other.py"
    other.write_text("import sys\nfor f in sys.argv[1:]:\n    print(f'{f}\\t9.5\\tvalid')\n")
    out_dir = tmp_path / "gen"
    code = main(["bench-check", "--generate", str(out_dir), "--sizes", "60", "--quiet",
                 "--against", f"{sys.executable} {other}"])
    out = capsys.readouterr().out
    assert code == 0, out
    files = sorted(p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*.jsonl"))
    assert len(files) == 8 and "1key-5proc-10crash/stale-60.jsonl" in files
    assert "8 of 8 verdicts matched the expected ones" in out
    assert "ours is at most theirs on 8 of 8 files" in out
    assert "| 1key-5proc-10crash/stale-60.jsonl" in out and "9.5000" in out
    # a folder that is not empty is not overwritten; a command that says nothing is refused
    assert main(["bench-check", "--generate", str(out_dir)]) == 3
    silent = tmp_path / "silent.py"
    silent.write_text("pass\n")
    assert main(["bench-check", str(out_dir / "1key-3proc-0crash"), "--quiet",
                 "--against", f"{sys.executable} {silent}"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "is not empty" in err[0]
    assert "no FILE<TAB>SECONDS<TAB>VERDICT line for" in err[1]


def test_bench_check_gives_the_other_checker_jsonl_of_a_file_in_another_format(corpus, tmp_path,
                                                                                capsys):
    # the other checker checks that what it got is JSONL with the file's ops, and says so
    other = tmp_path / "other.py"
    other.write_text(
        "import json, sys\n"
        "for f in sys.argv[1:]:\n"
        "    ops = [json.loads(line) for line in open(f)]\n"
        "    ok = f.endswith('.jsonl') and ops and all('type' in op for op in ops)\n"
        "    print(f'{f}\\t0.5\\t' + ('valid' if ok else 'INVALID'))\n")
    assert main(["bench-check", "--quiet", str(corpus / "kv"),
                 "--against", f"{sys.executable} {other}"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| kv/")]
    theirs = [[c.strip() for c in r.split("|")][5] for r in rows]
    assert len(rows) == 6 and theirs == ["valid"] * 6, out


def test_bench_check_reads_good_and_bad_folders_as_expectations(tmp_path, capsys):
    for label, stale in (("good", False), ("bad", True)):
        (tmp_path / label).mkdir()
        from checkers.generate import register_history
        with (tmp_path / label / "h.jsonl").open("w") as fh:
            for op in register_history(ops=50, seed=2, stale_read=stale):
                fh.write(json.dumps(op) + "\n")
    (tmp_path / "good" / "empty.jsonl").write_text("")
    assert main(["bench-check", str(tmp_path), "--quiet"]) == 2  # the empty one is unknown
    out = capsys.readouterr().out
    assert "2 of 3 verdicts matched the expected ones, 0 differ, 1 unknown" in out


def test_export_writes_a_runs_history_as_jepsen_edn(tmp_path, capsys):
    from checkers import formats
    from checkers.generate import register_history

    for name, stale in (("good", False), ("bad", True)):
        run = tmp_path / name
        run.mkdir()
        with (run / "history.jsonl").open("w") as fh:
            formats.write_jsonl(register_history(ops=200, keys=3, seed=4, stale_read=stale), fh)
        out = tmp_path / f"{name}.edn"
        assert main(["export", str(run), "--output", str(out)]) == 0
        edn, jsonl = formats.read(out), formats.read(run / "history.jsonl")
        assert edn.format == "edn" and edn.ops == jsonl.ops  # one to one, compare_failed too
        assert main(["check", str(out)]) == (1 if stale else 0)
    capsys.readouterr()
    assert main(["export", str(tmp_path / "nowhere")]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nowhere" in err[0]
