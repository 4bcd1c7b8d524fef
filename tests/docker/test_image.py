"""`harness image build`: the host's apt sources, the offline path for real, reuse."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from harness.commands.image import OFFLINE_SCRIPT
from tests.docker.conftest import harness
from tests.harness.conftest import harness_on_a_terminal

# What `apt-get indextargets --format ...` prints on a host with a second architecture, a
# source entry, a third-party repository and a disabled-looking one of another release.
INDEXTARGETS = """\
deb http://deb.example.org/debian/ bookworm main
deb http://deb.example.org/debian/ bookworm main
deb http://deb.example.org/debian/ bookworm contrib
deb http://deb.example.org/debian/ bookworm-updates main
deb-src http://deb.example.org/debian/ bookworm main
deb http://deb.example.org/debian-security/ bookworm-security main
deb https://packages.example.com/apt cloud-sdk-bookworm main
deb https://deb.example.net/node_20.x nodistro main
deb http://deb.example.org/debian/ trixie main
"""


def fake_apt(tmp_path: Path) -> dict[str, str]:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    apt = bindir / "apt-get"
    apt.write_text(f"#!/bin/sh\n[ \"$1\" = indextargets ] || exit 1\ncat <<'X'\n{INDEXTARGETS}X\n")
    apt.chmod(apt.stat().st_mode | stat.S_IEXEC)
    return {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "SUITE": "bookworm"}


def test_offline_sources_are_the_hosts_own_for_its_release(tmp_path: Path) -> None:
    proc = subprocess.run(["bash", str(OFFLINE_SCRIPT), "--print-sources"], env=fake_apt(tmp_path),
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "deb http://deb.example.org/debian/ bookworm main contrib",
        "deb http://deb.example.org/debian/ bookworm-updates main",
        "deb http://deb.example.org/debian-security/ bookworm-security main",
    ]


def test_no_source_for_the_release_is_a_clear_error(tmp_path: Path) -> None:
    env = {**fake_apt(tmp_path), "SUITE": "sid"}
    proc = subprocess.run(["bash", str(OFFLINE_SCRIPT), "--print-sources"], env=env,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "no enabled apt source for sid" in proc.stderr


def test_no_mirror_is_hard_coded() -> None:
    for path in (OFFLINE_SCRIPT, Path(__file__).parents[2] / "harness" / "commands" / "image.py"):
        assert not re.search(r"https?://[\w.-]*debian", path.read_text()), path


@pytest.mark.skipif(shutil.which("apt-get") is None, reason="not a Debian-like host")
def test_print_sources_reads_this_host() -> None:
    proc = harness("image", "build", "--print-sources", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert all(line.startswith("deb ") for line in proc.stdout.splitlines())


@pytest.mark.docker
@pytest.mark.slow
def test_offline_build_then_reuse(docker_client: Any) -> None:
    if shutil.which("mmdebstrap") is None:
        pytest.skip("mmdebstrap is not installed (apt-get install mmdebstrap; .ci/run does)")
    suffix = f"{os.getpid()}-{time.monotonic_ns()}"
    tag, base = f"paxos-node-test:{suffix}", f"paxos-base-test:{suffix}"
    try:
        # stderr on a terminal: the build shows each stage's latest line as it goes
        status, out, terminal = harness_on_a_terminal(
            "image", "build", "--tag", tag, "--base-tag", base, "--offline", "--rebuild",
            timeout=1200)
        assert status == 0, out + terminal
        assert f"mmdebstrap: building the offline base {base}" in terminal, terminal[-3000:]
        assert re.search(rf"docker build {re.escape(tag)} step \d+/\d+ \(", terminal), \
            terminal[-3000:]
        line = out.strip().splitlines()[-1]
        assert re.fullmatch(rf"image {re.escape(tag)}: built offline .* on {re.escape(base)} "
                            r"in [\d.]+ s \(base [\d.]+ s\), [\d.]+ MB", line), line
        assert docker_client.images.get(base).labels.get("paxos-harness.image") == "base"
        container = docker_client.containers.run(
            tag, ["sh", "-c", "python3 -c 'import asyncio, json; print(1)' && iptables -V && "
                  "tc -V && pkill -V && ip -V"], detach=True, network_mode="none")
        try:
            assert container.wait(timeout=60)["StatusCode"] == 0
            out = container.logs().decode()
        finally:
            container.remove(force=True, v=True)
        assert out.startswith("1\n") and ("nf_tables" in out or "legacy" in out), out

        start = time.monotonic()
        again = harness("image", "build", "--tag", tag, timeout=60)
        assert again.returncode == 0
        assert "already there" in again.stdout and "nothing built" in again.stdout
        assert time.monotonic() - start < 20
    finally:
        for image in (tag, base):
            try:
                docker_client.images.remove(image, force=True)
            except Exception:  # noqa: BLE001 - it may never have been built
                pass
