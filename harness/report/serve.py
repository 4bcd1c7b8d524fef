"""`harness serve [--store DIR] [--port P]`: browse the store in a web browser.

The index lists every run (newest first) with its verdict in colour, the reason, and its report
one click away; every other path is a file of the store, served as it is (reports link their
node logs and JSON files relatively, so they work unchanged). Standard library only.
"""

from __future__ import annotations

import functools
import json
import os
import urllib.parse
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

MAX_DEPTH = 4  # store/<test>/<stamp>, store/campaigns/<name>/<stamp>/...


def find_runs(store: Path) -> list[dict[str, Any]]:
    """Run directories under the store (those holding config.json), newest first."""
    runs = []
    store = Path(store)

    def walk(d: Path, depth: int) -> None:
        if depth > MAX_DEPTH:
            return
        try:
            children = sorted(d.iterdir())
        except OSError:
            return
        for c in children:
            if not c.is_dir() or c.is_symlink() or c.name.startswith("."):
                continue
            if (c / "config.json").exists() and (c / "history.jsonl").exists():
                runs.append(_run_row(store, c))
            else:
                walk(c, depth + 1)

    walk(store, 0)
    runs.sort(key=lambda r: (r["stamp"], r["path"]), reverse=True)
    return runs


def _run_row(store: Path, d: Path) -> dict[str, Any]:
    def read(name: str) -> dict:
        try:
            data = json.loads((d / name).read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    results, config = read("results.json"), read("config.json")
    rel = d.relative_to(store).as_posix()
    return {
        "path": rel,
        "test": d.parent.name,
        "stamp": d.name,
        "valid": results.get("valid", "not checked") if results else "not checked",
        "reason": results.get("reason") or results.get("harness_error") or "",
        "workload": config.get("workload", ""),
        "nemesis": config.get("nemesis", ""),
        "seed": config.get("seed", ""),
        "bugs": ", ".join(config.get("bugs") or []),
        "report": f"{rel}/report.html" if (d / "report.html").exists() else None,
        "timeline": f"{rel}/timeline.html" if (d / "timeline.html").exists() else None,
        "results": f"{rel}/results.json" if results else None,
    }


def find_campaigns(store: Path) -> list[dict[str, Any]]:
    out = []
    base = Path(store) / "campaigns"
    if base.is_dir():
        for index in sorted(base.glob("*/*/index.html"), reverse=True):
            out.append({"path": index.parent.relative_to(store).as_posix(),
                        "index": index.relative_to(store).as_posix()})
    return out


def index_page(store: Path) -> str:
    from harness.report.pages import render

    runs = find_runs(store)
    counts = {"pass": 0, "fail": 0, "other": 0}
    for r in runs:
        counts["pass" if r["valid"] is True else "fail" if r["valid"] is False else "other"] += 1
    return render("serve_index.html.j2", store=str(Path(store).resolve()), runs=runs,
                  campaigns=find_campaigns(store), counts=counts)


class StoreHandler(SimpleHTTPRequestHandler):
    store: Path = Path("store")

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        path = urllib.parse.urlsplit(self.path).path
        if path in ("/", "/index.html"):
            body = index_page(self.store).encode("utf-8")
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def send_head(self) -> Any:
        """A symlink that leads out of the store names nothing (404): the store's `latest`
        works, `ln -s /etc store/x` does not."""
        root = os.path.realpath(self.store)
        real = os.path.realpath(self.translate_path(self.path))
        if real != root and not real.startswith(root + os.sep):
            self.send_error(HTTPStatus.NOT_FOUND, "File not found")
            return None
        return super().send_head()

    def guess_type(self, path: Any) -> str:
        # node logs and histories open in the browser instead of downloading
        if str(path).endswith((".log", ".jsonl")):
            return "text/plain; charset=utf-8"
        return super().guess_type(path)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        if not getattr(self.server, "quiet", False):
            super().log_message(format, *args)


def make_server(store: Path, host: str = "127.0.0.1", port: int = 8080,
                quiet: bool = False) -> ThreadingHTTPServer:
    handler = functools.partial(type("Handler", (StoreHandler,), {"store": Path(store)}),
                                directory=str(store))
    server = ThreadingHTTPServer((host, port), handler)
    server.quiet = quiet  # type: ignore[attr-defined]
    return server
