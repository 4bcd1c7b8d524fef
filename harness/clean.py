"""`harness clean`: remove what earlier runs left behind (processes, containers, networks)."""

from __future__ import annotations

import argparse

from harness.backends.local import clean_local


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", default=None, help="only what this run id left (default: every "
                        "run whose controller is gone)")


def run(args: argparse.Namespace) -> int:
    pids = clean_local(args.run)
    print(f"local: killed {len(pids)} node process(es)" + (f": {pids}" if pids else ""))
    try:
        from harness.backends.docker import clean_docker
    except ImportError:
        return 0
    removed = clean_docker(args.run)
    print(f"docker: removed {removed}")
    return 0
