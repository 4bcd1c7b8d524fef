"""`harness check FILE...`: check history files for linearizability.

Exit status: 0 all valid, 1 any invalid, 2 any unknown (and none invalid), 3 bad input (an
unreadable file, an unknown format, a history that makes no sense), reported on one line
naming the file and line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from checkers import formats, models
from checkers.history import HistoryError, LimitReached

EXIT_VALID, EXIT_INVALID, EXIT_UNKNOWN, EXIT_BAD_INPUT = 0, 1, 2, 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE",
                        help="history files to check (a run directory means its history.jsonl)")
    parser.add_argument(
        "--model",
        choices=sorted(models.MODELS),
        help="sequential model (default: the format's, else by the operations: txn "
        "multi-register, acquire/release mutex, enqueue/dequeue queue, add set, keys or append "
        "kv, else cas-register); EDN histories are judged by Knossos's rules",
    )
    parser.add_argument(
        "--format",
        choices=formats.FORMATS,
        help="history format (default: detected from the content and name)",
    )
    parser.add_argument(
        "--initial",
        metavar="VALUE",
        help="initial value of each object, as JSON (default: null = absent; \"\" for "
        "Porcupine kv)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per file")
    parser.add_argument(
        "--html",
        metavar="OUT",
        help="write the explanation page: OUT itself for one file, else OUT/<name>.html",
    )
    parser.add_argument("--time-limit", type=float, default=60.0, metavar="S",
                        help="seconds per file before the verdict is unknown (default 60)")
    parser.add_argument("--memory-limit", type=float, default=1024.0, metavar="MB",
                        help="search memory per file before the verdict is unknown "
                        "(default 1024)")
    parser.add_argument("--all-keys", action="store_true",
                        help="search every key to the end even after one fails")


def check_file(
    path: str,
    *,
    fmt: str | None = None,
    model: str | None = None,
    initial: Any = None,
    initial_given: bool = False,
    time_limit: float = 60.0,
    memory_limit_mb: float = 1024.0,
    all_keys: bool = False,
) -> dict[str, Any]:
    """Read and check one file; raises HistoryError (with file and line) on bad input."""
    from checkers import linearizability

    t0 = time.monotonic()
    if Path(path).is_dir() and (Path(path) / "history.jsonl").is_file():
        path = str(Path(path) / "history.jsonl")  # a run directory (store/latest)
    try:
        hist = formats.read(path, fmt, deadline=t0 + time_limit, memory_limit_mb=memory_limit_mb)
    except LimitReached as exc:
        return {"valid": "unknown", "reason": str(exc), "ops": 0, "keys": 0, "model": model or "-",
                "seconds": round(time.monotonic() - t0, 6)}
    try:
        m = models.for_history(hist, model, *((initial,) if initial_given else ()))
        result = linearizability.check(
            hist.ops,
            m,
            time_limit=max(0.0, time_limit - (time.monotonic() - t0)),
            memory_limit_mb=memory_limit_mb,
            all_keys=all_keys,
            validated=True,
        )
    except HistoryError as exc:
        raise hist.error_at(exc) from None
    result["format"] = hist.format
    result["semantics"] = "knossos" if m.knossos else "harness"
    result["check_seconds"] = result["seconds"]
    result["seconds"] = round(time.monotonic() - t0, 6)
    if hist.warnings:
        result["warnings"] = hist.warnings
    return result


def parse_initial(text: str) -> Any:
    """An `--initial` option's value: JSON, else the bare word as a string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _html_path(out: str, path: str, n_files: int, used: set[str]) -> Path:
    o = Path(out)
    if n_files == 1 and not out.endswith(("/", "\\")) and not o.is_dir():
        return o
    name = Path(path).stem + ".html"
    k = 2
    while name in used:
        name = f"{Path(path).stem}-{k}.html"
        k += 1
    used.add(name)
    return o / name


def run(args: argparse.Namespace) -> int:
    for option, value, high in (("--time-limit", args.time_limit, 86400 * 7),
                                ("--memory-limit", args.memory_limit, 1024 * 1024)):
        if not 0 < value <= high:  # also refuses nan
            print(f"harness check: {option} must be above 0 and at most {high}, not {value:g}",
                  file=sys.stderr)
            return EXIT_BAD_INPUT
    initial_given = args.initial is not None
    initial = parse_initial(args.initial) if initial_given else None
    any_invalid = any_unknown = any_bad = False
    used_names: set[str] = set()
    for path in args.files:
        try:
            result = check_file(
                path,
                fmt=args.format,
                model=args.model,
                initial=initial,
                initial_given=initial_given,
                time_limit=args.time_limit,
                memory_limit_mb=args.memory_limit,
                all_keys=args.all_keys,
            )
        except HistoryError as exc:
            if exc.path is None:
                exc.path = path
            any_bad = True
            print(f"harness check: {exc}", file=sys.stderr)
            if args.json:
                print(json.dumps({"file": path, "valid": None, "error": str(exc)}), flush=True)
            continue
        for w in result.get("warnings", ()):
            print(f"harness check: {path}: warning: {w}", file=sys.stderr)
        v = result["valid"]
        any_invalid |= v is False
        any_unknown |= v == "unknown"
        if args.html:
            from checkers.explain import render_html

            target = _html_path(args.html, path, len(args.files), used_names)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(render_html(result, title=f"Linearizability of {path}"))
            except OSError as exc:
                print(f"harness check: cannot write {target}: {exc.strerror}", file=sys.stderr)
                any_bad = True
            else:
                result["html"] = str(target)
        if args.json:
            print(json.dumps({"file": path, **result}, default=str), flush=True)
        else:
            print(_line(path, result), flush=True)
    if any_bad:
        return EXIT_BAD_INPUT
    if any_invalid:
        return EXIT_INVALID
    if any_unknown:
        return EXIT_UNKNOWN
    return EXIT_VALID


def _line(path: str, r: dict[str, Any]) -> str:
    v = r["valid"]
    word = {True: "valid", False: "INVALID"}.get(v, "unknown")  # type: ignore[arg-type]
    head = (
        f"{path}: {word} ({r['ops']} ops, {r['keys']} key(s), model {r['model']}, "
        f"{r['seconds']:.3f} s)"
    )
    if r.get("reason"):
        head += f": {r['reason']}"
    if r.get("html"):
        head += f" [explanation: {r['html']}]"
    return head
