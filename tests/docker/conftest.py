"""Fixtures for tests that need a Docker engine: skipped, with the reason, where there is none."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
FAKE_NODE = Path(__file__).resolve().parent / "fakenode"


def engine_or_skip() -> Any:
    try:
        import docker
    except ImportError:
        pytest.skip("the docker Python package is not installed (pip install -e '.[test]')")
    try:
        client = docker.from_env(timeout=60)
        client.ping()
    except Exception as exc:  # noqa: BLE001 - whatever it is, there is no engine to test with
        pytest.skip(f"no Docker engine reachable: {type(exc).__name__}: {exc}")
    return client


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    client = engine_or_skip()
    yield client
    client.close()


@pytest.fixture(scope="session")
def node_image(docker_client: Any) -> str:
    """The default node image, built once (offline where nothing can be pulled) and reused."""
    from harness.commands.image import DEFAULT_IMAGE, ImageError, ensure_image

    try:
        result = ensure_image(DEFAULT_IMAGE, client=docker_client)
    except ImageError as exc:
        pytest.fail(f"cannot build the node image: {exc}")
    print(result.describe(), file=sys.stderr)
    return result.tag


def harness(*args: str, timeout: float = 240, **kwargs: Any) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO, env=env, **kwargs)


def leftovers_of(client: Any, run_id: str) -> dict[str, list[str]]:
    from harness.backends.docker import leftovers

    return leftovers(client, run_id)


def assert_nothing_left(client: Any, run_id: str) -> None:
    left = leftovers_of(client, run_id)
    assert not any(left.values()), f"left behind by run {run_id}: {left}"


def read_results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())
