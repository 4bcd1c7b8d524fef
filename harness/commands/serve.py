"""`harness serve [--store DIR] [--port P]`: browse the store in a web browser."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.report.serve import make_server


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", default="store", help="store directory (default %(default)s)")
    parser.add_argument("--port", type=int, default=8080, help="port (default %(default)s)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default %(default)s: this machine only)")
    parser.add_argument("--quiet", action="store_true", help="no request log")


def run(args: argparse.Namespace) -> int:
    store = Path(args.store)
    if not store.is_dir():
        print(f"harness serve: {store}: no such store directory", file=sys.stderr)
        return 3
    if not 0 <= args.port <= 65535:
        print(f"harness serve: --port must be between 0 and 65535, not {args.port}",
              file=sys.stderr)
        return 3
    try:
        server = make_server(store, args.host, args.port, args.quiet)
    except OSError as exc:
        print(f"harness serve: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 3
    host, port = server.server_address[:2]
    print(f"serving {store.resolve()} at http://{host}:{port}/  (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
