"""A copy of the repository with nothing beside it passes its corpus tests and bench-check."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from .conftest import REPO

SKIP = {".git", "store", "__pycache__", ".hypothesis", ".ruff_cache", "build", "dist"}


def _copy_repo(dest: Path) -> Path:
    shutil.copytree(REPO, dest, ignore=lambda _d, names: [
        n for n in names if n in SKIP or n.endswith(".egg-info")])
    return dest


def test_corpus_tests_pass_from_a_clone_with_no_siblings(tmp_path):
    clone = _copy_repo(tmp_path / "alone" / "repo")
    assert sorted(p.name for p in clone.parent.iterdir()) == ["repo"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(clone)
    where = subprocess.run(
        [sys.executable, "-c", "import harness, tests.checkers.conftest as c; "
         "print(harness.__file__); print(c.CORPUS)"],
        cwd=clone, env=env, capture_output=True, text=True, timeout=60)
    harness_file, corpus = where.stdout.split()
    assert Path(harness_file).is_relative_to(clone) and Path(corpus).is_relative_to(clone)

    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "tests/checkers/test_corpus.py",
         "tests/checkers/test_cli.py"],
        cwd=clone, env=env, capture_output=True, text=True, timeout=300)
    assert tests.returncode == 0, tests.stdout[-2000:] + tests.stderr[-2000:]
    assert " passed" in tests.stdout and "error" not in tests.stdout.lower()

    bench = subprocess.run([sys.executable, "-m", "harness", "bench-check", "--quiet"],
                           cwd=clone, env=env, capture_output=True, text=True, timeout=300)
    assert bench.returncode == 0, bench.stderr
    assert "jepsen: 103 files" in bench.stdout and "kv: 6 files" in bench.stdout
