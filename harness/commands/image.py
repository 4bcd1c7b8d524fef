"""`harness image build`: the node's Docker image, built offline where nothing can be pulled.

The choice, in order: the image is there -> nothing to do; the Dockerfile's base image is there
or can be pulled -> build the Dockerfile on it; otherwise build a minimal Debian base with
mmdebstrap from the host's own apt sources (docker/build-offline-base.sh), import it, and build
the Dockerfile on that. The image holds only the runtime: the Docker backend copies the node's
code into each container, so a cached image never runs stale code.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKER_DIR = REPO_ROOT / "docker"
OFFLINE_SCRIPT = DOCKER_DIR / "build-offline-base.sh"
DEFAULT_IMAGE = "paxos-node:latest"
DEFAULT_BASE = "python:3.11-slim"
BUILD_TIMEOUT_S = 1800.0


class ImageError(Exception):
    """The image could not be had: a one-line reason (a harness error, exit status 3)."""


@dataclass
class BuildResult:
    tag: str
    how: str  # "present" | "dockerfile" | "offline"
    seconds: float
    size_bytes: int
    base: str | None = None
    note: str | None = None
    base_seconds: float | None = None  # of which building the offline base

    def describe(self) -> str:
        size = f"{self.size_bytes / 1e6:.1f} MB"
        if self.how == "present":
            return f"image {self.tag}: already there ({size}), nothing built"
        where = "offline (mmdebstrap base from the host's apt sources)" if self.how == "offline" \
            else "from the Dockerfile"
        text = f"image {self.tag}: built {where} on {self.base} in {self.seconds:.1f} s"
        if self.base_seconds is not None:
            text += f" (base {self.base_seconds:.1f} s)"
        text += f", {size}"
        return text + (f"; {self.note}" if self.note else "")


def docker_client(timeout: float = 120.0) -> Any:
    """A Docker SDK client, or ImageError saying why there is none."""
    from harness.backends.base import BackendError
    from harness.backends.docker import connect

    try:
        return connect(timeout)
    except BackendError as exc:
        raise ImageError(str(exc)) from None


def host_codename() -> str:
    """The host's release codename, from which the offline base is built."""
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("VERSION_CODENAME="):
                value = line.split("=", 1)[1].strip().strip('"')
                if value:
                    return value
    except OSError:
        pass
    raise ImageError("cannot tell the host's release (no VERSION_CODENAME in /etc/os-release); "
                     "the offline base needs a Debian-like host")


# Bumped when the image's contents change (2: etcd-server for --system etcd), so an older image
# or offline base of the same tag is rebuilt, not reused.
IMAGE_VERSION = "2"


def default_base_tag() -> str:
    return f"paxos-base:{host_codename()}-v{IMAGE_VERSION}"


def image_version(client: Any, tag: str) -> str | None:
    try:
        return (client.images.get(tag).labels or {}).get("paxos-harness.image-version")
    except Exception:  # noqa: BLE001 - a missing or unreadable image has no version
        return None


def image_size(client: Any, tag: str) -> int | None:
    """The image's size in bytes, or None if there is no such image."""
    import docker.errors

    try:
        return int(client.images.get(tag).attrs.get("Size") or 0)
    except docker.errors.ImageNotFound:
        return None


def offline_sources() -> list[str]:
    """The apt source lines the offline base would use (the host's, by apt-get indextargets)."""
    out = subprocess.run(["bash", str(OFFLINE_SCRIPT), "--print-sources"], capture_output=True,
                         text=True, timeout=60)
    if out.returncode != 0:
        raise ImageError(out.stderr.strip().splitlines()[-1] if out.stderr.strip()
                         else f"{OFFLINE_SCRIPT.name} failed ({out.returncode})")
    return [line for line in out.stdout.splitlines() if line.strip()]


class BuildProgress:
    """A live line on `log` while an image builds, when `log` is a terminal: the stage, the
    build's latest output line and the time so far (rich, transient: gone once it is done)."""

    def __init__(self, log: Any, stage: str) -> None:
        from rich.console import Console

        self.console = Console(file=log, highlight=False)
        self.stage = stage
        self.start = time.monotonic()
        self.step = ""
        self.status: Any = None

    def __enter__(self) -> BuildProgress:
        if self.console.is_terminal:
            self.status = self.console.status(self._text(""))
            self.status.__enter__()
        return self

    def _text(self, line: str) -> Any:
        from rich.text import Text

        step = f" {self.step}" if self.step else ""
        return Text(f"{self.stage}{step} ({time.monotonic() - self.start:.0f} s): {line[:100]}")

    def line(self, line: str) -> None:
        line = line.strip()
        # docker's "Step 3/7 : RUN ..." is soon followed by that step's own output; kept as
        # part of the line so where the build is stays visible between refreshes
        step = re.match(r"Step (\d+/\d+) :", line)
        if step:
            self.step = f"step {step.group(1)}"
        if self.status is not None and line:
            self.status.update(self._text(line))

    def __exit__(self, *exc: object) -> None:
        if self.status is not None:
            self.status.__exit__(*exc)


def _stream(cmd: list[str], env: dict[str, str], timeout: float,
            on_line: Any) -> tuple[int, list[str], bool]:
    """Run cmd, passing each output line to on_line; (exit status, last lines, timed out).
    A watchdog kills it at the timeout, so a stuck build cannot hold the reader forever."""
    import threading

    tail: collections.deque[str] = collections.deque(maxlen=15)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, errors="replace")
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        proc.kill()

    watchdog = threading.Timer(timeout, kill)
    watchdog.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            tail.append(line.rstrip())
            on_line(line)
        status = proc.wait()
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return status, list(tail), timed_out.is_set()


def build_offline_base(tag: str, timeout: float = BUILD_TIMEOUT_S,
                       log: Any = sys.stderr, extra_packages: tuple[str, ...] = ()) -> None:
    """mmdebstrap | docker import, by the script in docker/ (usable without the harness).
    `extra_packages` go in beside the node's own (the base has no apt to add them later)."""
    if shutil.which("mmdebstrap") is None:
        raise ImageError("cannot build the offline base: mmdebstrap is not installed "
                         "(apt-get install mmdebstrap)")
    if shutil.which("docker") is None:
        raise ImageError("cannot build the offline base: the docker CLI is not installed")
    if shutil.which("apt-get") is None:
        raise ImageError("cannot build the offline base: the host has no apt-get to read its "
                         "package sources from")
    env = {**os.environ, "EXTRA_PACKAGES": ",".join(extra_packages)}
    with BuildProgress(log, f"mmdebstrap: building the offline base {tag}") as progress:
        status, tail, timed_out = _stream(["bash", str(OFFLINE_SCRIPT), tag], env, timeout,
                                          progress.line)
    if timed_out:
        raise ImageError(f"the offline base build took more than {timeout:.0f} s")
    if status != 0:
        print("\n".join(tail), file=log)
        raise ImageError(f"the offline base build failed (exit {status}); its last lines are "
                         "above")


def build_dockerfile(client: Any, tag: str, base: str, timeout: float = BUILD_TIMEOUT_S,
                     log: Any = sys.stderr) -> None:
    """docker build of docker/ on `base`, its steps shown live on a terminal (the streaming
    API: the high-level one returns only once the build is over)."""
    import docker.errors

    lines: collections.deque[str] = collections.deque(maxlen=30)  # the tail, for an error
    try:
        with BuildProgress(log, f"docker build {tag}") as progress:
            for chunk in client.api.build(path=str(DOCKER_DIR), tag=tag,
                                          buildargs={"BASE": base}, pull=False, rm=True,
                                          forcerm=True, timeout=int(timeout),
                                          labels={"paxos-harness.base": base}, decode=True):
                text = str(chunk.get("stream") or chunk.get("status") or "")
                for line in text.splitlines():
                    lines.append(line)
                    progress.line(line)
                if chunk.get("error"):
                    tail = "\n".join(x for x in lines if x.strip())[-2000:]
                    raise ImageError(f"docker build on {base} failed: "
                                     f"{str(chunk['error']).strip()}\n{tail}")
    except docker.errors.APIError as exc:
        raise ImageError(f"docker build on {base} failed: {exc.explanation or exc}") from None


def try_pull(client: Any, image: str) -> str | None:
    """Pull `image`; None if it is here now, else why not."""
    import docker.errors

    try:
        client.images.pull(image)
        return None
    except docker.errors.APIError as exc:
        return str(exc.explanation or exc).splitlines()[0]
    except Exception as exc:  # noqa: BLE001 - a hung registry shows as a timeout, say so
        return f"{type(exc).__name__}: {exc}"


def ensure_image(tag: str = DEFAULT_IMAGE, base: str = DEFAULT_BASE, *, offline: bool = False,
                 rebuild: bool = False, base_tag: str | None = None,
                 timeout: float = BUILD_TIMEOUT_S, client: Any = None,
                 log: Any = sys.stderr) -> BuildResult:
    """Make sure `tag` exists, building it the cheapest way this machine allows."""
    client = client or docker_client()
    start = time.monotonic()
    if not rebuild:
        size = image_size(client, tag)
        if size is not None and (tag != DEFAULT_IMAGE
                                 or image_version(client, tag) == IMAGE_VERSION):
            return BuildResult(tag, "present", time.monotonic() - start, size)
    note = None
    base_seconds = None
    how = "dockerfile"
    if offline:
        why = "--offline"
    elif image_size(client, base) is not None:
        why = None
    else:
        print(f"harness image: pulling {base} ...", file=log, flush=True)
        why = try_pull(client, base)
    if why is not None:
        how = "offline"
        note = f"{base} not usable: {why}" if why != "--offline" else None
        base = base_tag or default_base_tag()
        if rebuild or image_size(client, base) is None:
            print(f"harness image: building the offline base {base} with mmdebstrap ...",
                  file=log, flush=True)
            base_start = time.monotonic()
            build_offline_base(base, timeout=timeout, log=log)
            base_seconds = time.monotonic() - base_start
    print(f"harness image: building {tag} on {base} ...", file=log, flush=True)
    build_dockerfile(client, tag, base, timeout=timeout, log=log)
    size = image_size(client, tag)
    if size is None:
        raise ImageError(f"docker build reported success but {tag} is not there")
    return BuildResult(tag, how, time.monotonic() - start, size, base=base, note=note,
                       base_seconds=base_seconds)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="image_command", metavar="ACTION",
                                parser_class=type(parser))
    b = sub.add_parser("build", help="build the node image unless it is there",
                       description="Build the node image: reuse it if present, else the "
                       "Dockerfile on a base that is present or pullable, else an offline "
                       "Debian base made with mmdebstrap from the host's apt sources.")
    b.add_argument("--tag", default=os.environ.get("PAXOS_IMAGE", DEFAULT_IMAGE),
                   help="image to build (default %(default)s)")
    b.add_argument("--base", default=DEFAULT_BASE,
                   help="the Dockerfile's base image when present or pullable "
                   "(default %(default)s)")
    b.add_argument("--offline", action="store_true",
                   help="do not try the registry: build the offline base")
    b.add_argument("--rebuild", action="store_true",
                   help="build even if the image (and the offline base) is there")
    b.add_argument("--base-tag", default=None,
                   help="tag of the offline base (default paxos-base:<host codename>)")
    b.add_argument("--timeout", type=float, default=BUILD_TIMEOUT_S,
                   help="seconds the whole build may take (default %(default)s)")
    b.add_argument("--print-sources", action="store_true",
                   help="only print the apt sources the offline base would use")


def run(args: argparse.Namespace) -> int:
    if getattr(args, "image_command", None) != "build":
        print("usage: harness image build [--tag TAG] [--offline] [--rebuild] ...",
              file=sys.stderr)
        return 3
    try:
        if args.print_sources:
            print("\n".join(offline_sources()))
            return 0
        result = ensure_image(args.tag, args.base, offline=args.offline, rebuild=args.rebuild,
                              base_tag=args.base_tag, timeout=args.timeout)
    except ImageError as exc:
        print(f"harness image: {exc}", file=sys.stderr)
        return 3
    print(result.describe())
    return 0
