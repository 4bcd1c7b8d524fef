"""`harness clean`: remove what earlier runs left behind (processes, containers, networks, and
with --hosts what runs left on remote hosts)."""

from __future__ import annotations

import argparse
import sys

from harness.backends.base import BackendError
from harness.backends.local import clean_local


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", default=None, help="only what this run id left (default: every "
                        "run whose controller is gone)")
    parser.add_argument("--hosts", default=None,
                        help="also clean these SSH hosts (the --hosts of `harness run`)")
    parser.add_argument("--ssh-known-hosts", default=None, metavar="FILE",
                        help="known_hosts file for --hosts (default ~/.ssh/known_hosts)")
    parser.add_argument("--ssh-key", default=None, metavar="FILE",
                        help="private key for --hosts without their own key=")


def run(args: argparse.Namespace) -> int:
    pids = clean_local(args.run)
    print(f"local: killed {len(pids)} node process(es)"
          + (f": {', '.join(map(str, pids))}" if pids else ""))
    try:
        from harness.backends.docker import clean_docker
    except ImportError:
        clean_docker = None
    if clean_docker is not None:
        print(f"docker: removed {clean_docker(args.run)}")
    if args.hosts:
        from harness.backends.ssh import clean_ssh

        try:
            done = clean_ssh(args.hosts, args.run, args.ssh_known_hosts, args.ssh_key)
        except BackendError as exc:
            print(f"harness clean: {exc}", file=sys.stderr)
            return 3
        print("\n".join(done) if done else "ssh: nothing left behind")
    return 0
