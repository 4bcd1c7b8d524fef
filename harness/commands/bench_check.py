"""`harness bench-check [DIR...]`: time the linearizability checker over a corpus directory.

Prints one line per file (parse and check seconds, verdict, configurations explored, and the
expected verdict when the directory has an EXPECTED.csv, or when the file lies under a folder
named `good` or `bad`, as Knossos labels its data), then per subdirectory the total check time
and the slowest file, the peak memory (maximum RSS of this process, which bounds every file's),
and in words how many verdicts matched.

Exit status: 0 every expected verdict matched, 1 some verdict differs, 2 none differs but some
are unknown (a time limit, or nothing to check), 3 bad input.
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
import resource
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

from checkers import formats, linearizability, models
from checkers.history import HistoryError

_SUFFIXES = (".log", ".txt", ".jsonl", ".edn")


def _default_corpus() -> Path:
    # The corpus is test data of the source repository, not part of an installed package.
    return Path(__file__).resolve().parents[2] / "tests" / "corpora" / "porcupine"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "dirs",
        nargs="*",
        metavar="DIR",
        help=f"corpus directories or files (default: {_default_corpus()})",
    )
    parser.add_argument("--model", choices=sorted(models.MODELS), help="override the model")
    parser.add_argument("--format", choices=formats.FORMATS, help="override the format")
    parser.add_argument("--initial", metavar="VALUE",
                        help="initial value of each object, as JSON (default: the format's, "
                        "else null); Knossos's own tests check its cas-register data with 0")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="check each file N times and keep the fastest (default 1)")
    parser.add_argument("--time-limit", type=float, default=60.0, metavar="S")
    parser.add_argument("--per-file-memory", action="store_true",
                        help="also measure each file's peak Python heap (tracemalloc; an "
                        "extra, untimed pass)")
    parser.add_argument("--json", action="store_true", help="one JSON object per file, then "
                        "a summary object")
    parser.add_argument("--quiet", "-q", action="store_true", help="only the summary")
    parser.add_argument("--generate", metavar="OUT",
                        help="first write the generated register classes (checkers.generate: "
                        "one and many keys, few and many processes and crashed ops, each valid "
                        "and with a stale read) into the new folder OUT, then check those")
    parser.add_argument("--sizes", default="500,1000,2000,4000", metavar="N,N",
                        help="operations per generated history (default 500,1000,2000,4000)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the generated histories")
    parser.add_argument("--against", metavar="CMD",
                        help="also run another checker on the same files: CMD FILE... must print "
                        "one line per file, FILE<TAB>SECONDS<TAB>VERDICT; then print the times "
                        "side by side with the ratio ours/theirs. It reads JSONL: a file in "
                        "another format reaches it converted by our reader")


def _files(targets: list[Path]) -> list[tuple[Path, Path]]:
    """(file, its corpus root) pairs, sorted."""
    out = []
    for t in targets:
        if t.is_file():
            out.append((t, t.parent))
            continue
        for p in sorted(t.rglob("*")):
            if p.is_file() and p.suffix in _SUFFIXES:
                out.append((p, t))
    return out


class BadExpectations(ValueError):
    pass


def _root_of(target: Path) -> Path:
    """The corpus root for a target: the nearest folder at or above it with an EXPECTED.csv
    (a sub-folder of a corpus is still compared), else the target itself."""
    start = target if target.is_dir() else target.parent
    for folder in [start, *start.parents][:4]:
        if (folder / "EXPECTED.csv").is_file():
            return folder
    return start


def _expected(root: Path) -> dict[str, bool]:
    f = root / "EXPECTED.csv"
    if not f.is_file():
        return {}
    try:
        with f.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = {"file", "expected_linearizable"} - set(reader.fieldnames or ())
            if missing:
                raise BadExpectations(f"{f}: no {' or '.join(sorted(missing))} column (it has "
                                      f"{', '.join(reader.fieldnames or ()) or 'none'})")
            out = {}
            for line, row in enumerate(reader, 2):
                # A verdict Porcupine does not assert (an empty file) is no expectation: ours
                # is `unknown` there, since nothing passes on nothing.
                if (row.get("asserted_by") or "").startswith("NOT asserted"):
                    continue
                value = (row.get("expected_linearizable") or "").strip().lower()
                if value not in ("true", "false"):
                    raise BadExpectations(f"{f} line {line}: expected_linearizable must be true "
                                          f"or false, not {value!r}")
                out[row["file"]] = value == "true"
            return out
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise BadExpectations(f"{f}: cannot read: {exc}") from None


def _check(hist: Any, model: Any, args: argparse.Namespace) -> dict[str, Any]:
    return linearizability.check(
        hist.ops,
        model,
        time_limit=args.time_limit,
        explain=False,
        validated=True,
    )


def run(args: argparse.Namespace) -> int:
    if not 0 < args.time_limit <= 86400 * 7 or not 1 <= args.repeat <= 1000:
        print("harness bench-check: --time-limit must be above 0 and at most a week, --repeat "
              "between 1 and 1000", file=sys.stderr)
        return 3
    if not args.dirs and not (_default_corpus() / "EXPECTED.csv").is_file():
        print("harness bench-check: no DIR given, and this installation has no default corpus "
              "(it is tests/corpora/porcupine in the source repository)", file=sys.stderr)
        return 3
    from harness.commands.check import parse_initial

    args.initial = () if args.initial is None else (parse_initial(args.initial),)
    if args.generate:
        try:
            sizes = [int(x) for x in args.sizes.split(",")]
            if not all(10 <= n <= 1_000_000 for n in sizes):
                raise ValueError
        except ValueError:
            print(f"harness bench-check: --sizes must be numbers of operations from 10 to "
                  f"1000000, separated by commas, not {args.sizes!r}", file=sys.stderr)
            return 3
        out = Path(args.generate)
        if out.exists() and any(out.iterdir()):
            print(f"harness bench-check: {out} is not empty (--generate writes a new corpus)",
                  file=sys.stderr)
            return 3
        try:
            _write_generated(out, sizes, args.seed)
        except OSError as exc:
            print(f"harness bench-check: cannot write {out}: {exc.strerror or exc}",
                  file=sys.stderr)
            return 3
        args.dirs = [*args.dirs, str(out)]
    targets = [Path(d) for d in args.dirs] or [_default_corpus()]
    for t in targets:
        if not t.exists():
            print(f"harness bench-check: {t}: no such file or directory", file=sys.stderr)
            return 3
    files = [(path, _root_of(root)) for path, root in _files(targets)]
    if not files:
        print("harness bench-check: no history files found", file=sys.stderr)
        return 3
    expected: dict[Path, dict[str, bool]] = {}
    groups: dict[str, list[dict[str, Any]]] = {}
    timed: list[tuple[Path, dict[str, Any]]] = []
    read_as: dict[Path, str] = {}  # each file's format, for --against
    mismatches = compared = unknowns = 0
    # The checker's modules load on first use: pay that before the first file is timed.
    linearizability.check([], models.get("cas-register", None), time_limit=1.0, explain=False)
    for path, root in files:
        if root not in expected:
            try:
                expected[root] = _expected(root)
            except BadExpectations as exc:
                print(f"harness bench-check: {exc}", file=sys.stderr)
                return 3
        rel = path.relative_to(root).as_posix()
        try:
            t0 = time.perf_counter()
            hist = formats.read(path, args.format)
            parse_s = time.perf_counter() - t0
            best = float("inf")
            result: dict[str, Any] = {}
            # which model (inferred from the ops when the format does not say) is the
            # reading's business, as the other checker's driver fixes its model
            model = models.for_history(hist, args.model, *args.initial)
            # one collection before the file, not before each run: the fastest of warm runs,
            # as the other checker's driver times its own
            gc.collect()
            for _ in range(max(1, args.repeat)):
                t1 = time.perf_counter()
                result = _check(hist, model, args)
                best = min(best, time.perf_counter() - t1)
        except HistoryError as exc:
            print(f"harness bench-check: {exc}", file=sys.stderr)
            return 3
        row: dict[str, Any] = {
            "file": rel,
            "parse_seconds": round(parse_s, 6),
            "check_seconds": round(best, 6),
            "valid": result["valid"],
            "ops": result["ops"],
            "configurations": result["configurations"],
        }
        exp = expected[root].get(rel, _label(rel))
        if exp is not None:
            row["expected"] = exp
            compared += 1
            if result["valid"] == "unknown":
                unknowns += 1
            elif result["valid"] is not exp:
                mismatches += 1
        if args.per_file_memory:
            gc.collect()
            tracemalloc.start()
            _check(hist, model, args)
            row["peak_heap_mb"] = round(tracemalloc.get_traced_memory()[1] / 2**20, 2)
            tracemalloc.stop()
        group = rel.split("/")[0] if "/" in rel else root.name
        groups.setdefault(group, []).append(row)
        timed.append((path, row))
        read_as[path] = hist.format
        if args.json:
            print(json.dumps(row), flush=True)
        elif not args.quiet:
            mark = "" if exp is None or result["valid"] is exp else \
                "  (expected " + _VERDICT[exp] + ")" if result["valid"] == "unknown" else \
                "  MISMATCH"
            mem = f" {row['peak_heap_mb']:8.2f} MB" if args.per_file_memory else ""
            print(
                f"{rel:32} parse {parse_s:7.4f} s  check {best:8.4f} s  "
                f"{_VERDICT[result['valid']]:7} {result['configurations']:>9} conf{mem}{mark}",
                flush=True,
            )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    summary: dict[str, Any] = {"groups": {}, "peak_rss_mb": round(peak_mb, 1),
                               "mismatches": mismatches, "compared": compared,
                               "unknown": unknowns,
                               "matched": compared - mismatches - unknowns}
    for g, rows in groups.items():
        slow = max(rows, key=lambda r: r["check_seconds"])
        info = {
            "files": len(rows),
            "check_seconds": round(sum(r["check_seconds"] for r in rows), 4),
            "parse_seconds": round(sum(r["parse_seconds"] for r in rows), 4),
            "slowest": slow["file"],
            "slowest_seconds": slow["check_seconds"],
        }
        if args.per_file_memory:
            info["max_peak_heap_mb"] = max(r["peak_heap_mb"] for r in rows)
        summary["groups"][g] = info
    if args.json:
        print(json.dumps({"summary": summary}))
    else:
        print()
        for g, info in summary["groups"].items():
            extra = (f", max heap {info['max_peak_heap_mb']} MB"
                     if "max_peak_heap_mb" in info else "")
            print(
                f"{g}: {info['files']} files, check {info['check_seconds']:.3f} s total "
                f"(parse {info['parse_seconds']:.3f} s), slowest {info['slowest']} "
                f"{info['slowest_seconds']:.3f} s{extra}"
            )
        print(f"peak memory (max RSS of this process): {summary['peak_rss_mb']} MB")
        if compared:
            matched = compared - mismatches - unknowns
            text = (f"{matched} of {compared} verdicts matched the expected ones"
                    f"{'' if matched == compared else ', ' + str(mismatches) + ' differ'}")
            if unknowns:
                text += f", {unknowns} unknown (no verdict: a time limit, or nothing to check)"
            print(text)
        else:
            print("no verdict compared: no EXPECTED.csv names these files, and none lies "
                  "under a folder named good or bad")
    status = 1 if mismatches else 2 if unknowns else 0
    if args.against:
        against = _run_against(args.against, timed, args.json, args.format, read_as)
        if against:
            return against
    return status


# The generated classes: name -> checkers.generate.register_history parameters.
CLASSES = {
    "1key-5proc-10crash": dict(processes=5, keys=1, crashed=0.1),
    "1key-10proc-20crash": dict(processes=10, keys=1, crashed=0.2),
    "1key-3proc-0crash": dict(processes=3, keys=1, crashed=0.0),
    "8key-10proc-10crash": dict(processes=10, keys=8, crashed=0.1),
}


def _write_generated(out: Path, sizes: list[int], seed: int) -> None:
    from checkers.generate import register_history

    out.mkdir(parents=True, exist_ok=True)
    rows = ["file,expected_linearizable"]
    for name, params in CLASSES.items():
        (out / name).mkdir(exist_ok=True)
        for n in sizes:
            for stale in (False, True):
                rel = f"{name}/{'stale' if stale else 'valid'}-{n}.jsonl"
                ops = register_history(ops=n, seed=seed, stale_read=stale, **params)
                with (out / rel).open("w", encoding="utf-8") as fh:
                    formats.write_jsonl(ops, fh)
                rows.append(f"{rel},{'false' if stale else 'true'}")
    (out / "EXPECTED.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")


def _run_against(cmd: str, timed: list[tuple[Path, dict[str, Any]]], as_json: bool,
                 fmt: str | None, read_as: dict[Path, str]) -> int:
    """Run the other checker on the same files; print both times. 3 when it cannot run.
    A file that is not JSONL is given to it as the JSONL our reader makes of it."""
    import shlex
    import subprocess
    import tempfile

    from tabulate import tabulate

    with tempfile.TemporaryDirectory(prefix="bench-check-") as tmp:
        given: dict[str, Path] = {}  # what the other checker is given -> the file timed
        for n, (path, _) in enumerate(timed):
            if read_as[path] == "jsonl":
                given[str(path)] = path
                continue
            copy = Path(tmp) / f"{n:05d}-{path.stem}.jsonl"
            with copy.open("w", encoding="utf-8") as fh:
                formats.write_jsonl(formats.read(path, fmt).ops, fh)
            given[str(copy)] = path
        argv = shlex.split(cmd) + list(given)
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=86400)
        except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
            print(f"harness bench-check: --against {cmd!r} cannot run: {exc}", file=sys.stderr)
            return 3
    theirs: dict[str, tuple[float, str]] = {}
    for line in proc.stdout.splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and parts[0] in given:
            try:
                theirs[str(given[parts[0]])] = (float(parts[-2]), parts[-1].strip())
            except ValueError:
                continue
    missing = [str(p) for p, _ in timed if str(p) not in theirs]
    if proc.returncode != 0 or missing:
        why = f"exit status {proc.returncode}" if proc.returncode else \
            f"no FILE<TAB>SECONDS<TAB>VERDICT line for {missing[0]}"
        print(f"harness bench-check: --against {cmd!r} failed: {why}", file=sys.stderr)
        return 3
    table = []
    for path, row in timed:
        secs, verdict = theirs[str(path)]
        ratio = row["check_seconds"] / secs if secs > 0 else float("inf")
        table.append([row["file"], row["ops"], _VERDICT[row["valid"]], row["check_seconds"],
                      verdict, secs, ratio])
        if as_json:
            print(json.dumps({"file": row["file"], "theirs_seconds": secs,
                              "theirs_verdict": verdict, "ratio": round(ratio, 4)}))
    if not as_json:
        print()
        print(tabulate(table, headers=["file", "ops", "ours", "ours s", "theirs", "theirs s",
                                       "ours/theirs"],
                       floatfmt=("", "", "", ".4f", "", ".4f", ".2f"), tablefmt="github"))
        above = sum(1 for r in table if r[-1] > 1.0)
        print(f"ours is at most theirs on {len(table) - above} of {len(table)} files"
              + (f"; slower on {above}" if above else ""))
    return 0


_VERDICT = {True: "valid", False: "INVALID", "unknown": "unknown"}


def _label(rel: str) -> bool | None:
    """The verdict a file's folder promises (Knossos's data: good/ and bad/), if any."""
    parts = rel.split("/")[:-1]
    if "good" in parts:
        return True
    if "bad" in parts:
        return False
    return None
