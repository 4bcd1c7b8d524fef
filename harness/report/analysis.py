"""Every checker over a stored run. The returned dict is results.json.

Layout:

    {"valid": true | false | "unknown",      # merged: false > unknown > true
     "reason": str | null,                  # the first checker that decided the verdict
     "run": {"test", "workload", "seed", "nodes", "nemesis", "time_limit", "bugs", ...},
     "checkers": {"linearizability": {...}, "set": {...}, "agreement": {...},
                  "exactly-once": {...}, "availability": {...}},
     "perf": {"windows": {"warmup": {...}, "faults": {...}, "recovery": {...}},
              "recovery": {...}, "fast_path": {...}}}

A checker that crashes gives `{"valid": "unknown", "error": ...}`: harness trouble is never a
verdict on the system, and never throws the other checkers' results away.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from checkers.history import HistoryError

_RANK = {False: 0, "unknown": 1, True: 2}
# The order in which checkers are listed and a verdict's reason is chosen.
ORDER = ("linearizability", "set", "agreement", "exactly-once", "availability", "liveness",
         "protocol")


NOT_APPLICABLE = "n/a"
# Systems that serve their chosen log (harness.systems: the "log" capability). Stored runs are
# read without importing the systems, so the names are kept here.
LOG_SYSTEMS = ("paxos",)


def merge_valid(verdicts: list[Any]) -> Any:
    """false > unknown > true; no verdict at all is unknown (never a vacuous pass)."""
    if not verdicts:
        return "unknown"
    return min(verdicts, key=lambda v: _RANK.get(v, 1))


def load_history(run_dir: Path) -> list[dict]:
    """A run's history.jsonl ([] if there is none). A torn last line (a controller killed
    mid-write) is dropped, everything before it stands; anything else that is not a line of
    JSON objects raises HistoryError naming the file and line."""
    path = Path(run_dir) / "history.jsonl"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise HistoryError(f"cannot read: {exc.strerror or exc}", path=str(path)) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HistoryError("not UTF-8 text", line=raw[:exc.start].count(b"\n") + 1,
                           path=str(path)) from None
    lines = text.split("\n")
    ops = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            op = json.loads(line)
        except (ValueError, RecursionError):
            if number == len(lines):  # no newline after it: torn
                break
            raise HistoryError("not a line of JSON", line=number, path=str(path)) from None
        if not isinstance(op, dict):
            raise HistoryError("not an operation (a JSON object)", line=number,
                               path=str(path))
        ops.append(op)
    return ops


def _read_json(path: Path, default: Any = None) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


def load_nodes(run_dir: Path, config: dict) -> tuple[dict[str, Any], dict[str, Any]]:
    """(logs, statuses) by node id from nodes/<id>/{log,status}.json; None where missing."""
    nodes_dir = Path(run_dir) / "nodes"
    ids = set()
    n = config.get("nodes")
    if isinstance(n, int):
        ids |= {f"n{i}" for i in range(1, n + 1)}
    if nodes_dir.is_dir():
        ids |= {p.name for p in nodes_dir.iterdir() if p.is_dir()}
    logs = {i: _read_json(nodes_dir / i / "log.json") for i in sorted(ids)}
    statuses = {i: _read_json(nodes_dir / i / "status.json") for i in sorted(ids)}
    return logs, statuses


def run_info(config: dict, run_dir: Path) -> dict[str, Any]:
    keys = ("workload", "seed", "nodes", "nemesis", "time_limit", "concurrency", "rate",
            "backend", "bugs", "bug_nodes")
    info = {k: config.get(k) for k in keys if k in config}
    # Runs stored before the system interface were all of the bundled node.
    info["system"] = config.get("system", "paxos") if config else None
    info["test"] = config.get("name") or Path(run_dir).parent.name
    info["run_id"] = Path(run_dir).name
    return info


def recovery_bound(config: dict) -> float:
    """Seconds within which a healed cluster must serve again: ten election timeouts (a few
    rounds of randomized elections, restarts replaying their logs), at least 2 s."""
    timeout_ms = config.get("election_timeout_ms") or 300
    return max(2.0, 10 * float(timeout_ms) / 1000.0)


def _guarded(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    try:
        result = fn()
    except Exception as exc:  # noqa: BLE001 - a checker's crash is harness trouble, not a verdict
        return {"valid": "unknown", "reason": f"checker error: {type(exc).__name__}: {exc}",
                "error": traceback.format_exc(limit=5)}
    return result


def entry_at(ops: list[dict], index: int) -> dict | None:
    """The history entry a checker names by index: its `index` field where entries carry one
    (nemesis entries count in it, so it is not a position in `ops`), else its position."""
    if ops and all("index" in op for op in ops):
        return next((op for op in ops if op.get("index") == index), None)
    return ops[index] if 0 <= index < len(ops) else None


def _linearizability(client_ops: list[dict]) -> dict[str, Any]:
    try:
        from checkers.linearizability import check
    except ImportError as exc:
        return {"valid": "unknown", "reason": f"linearizability checker unavailable: {exc}"}
    result = check(client_ops, model="kv")
    op = (result.get("failure") or {}).get("op") or {}
    index = op.get("complete_index", op.get("invoke_index"))
    entry = entry_at(client_ops, index) if isinstance(index, int) else None
    if entry is not None:
        # The member that served it: with local (serializable) reads, the stale one.
        node = entry.get("node")
        if node is not None:
            op["node"] = node
            result["reason"] = f"{result['reason']} (served by {node})"
    return result


# What the Maelstrom bridge writes into a member's log when its program broke Maelstrom's
# protocol, or needed a Maelstrom service the harness does not provide (systems/maelstrom).
BRIDGE_VIOLATION = "bridge: protocol violation:"
BRIDGE_UNSUPPORTED = "bridge: unsupported:"


def maelstrom_protocol(run_dir: Path, nodes: list[str]) -> dict[str, Any]:
    """Whether every member's program kept to Maelstrom's protocol, from the bridges' logs."""
    violations: list[str] = []
    unsupported: list[str] = []
    read = 0
    for node in nodes:
        try:
            with open(run_dir / "nodes" / node / "node.log", "rb") as f:
                read += 1
                for raw in f:
                    if raw.startswith(b"bridge: "):
                        line = raw.decode(errors="replace").strip()
                        if line.startswith(BRIDGE_VIOLATION):
                            violations.append(f"{node}: {line[8:]}")
                        elif line.startswith(BRIDGE_UNSUPPORTED):
                            unsupported.append(f"{node}: {line[8:]}")
        except OSError:
            continue
    if violations:
        more = f" ({len(violations) - 1} more)" if len(violations) > 1 else ""
        return {"valid": False, "reason": violations[0] + more, "violations": violations}
    if unsupported:
        return {"valid": "unknown", "reason": unsupported[0], "unsupported": unsupported}
    if read < len(nodes) or not nodes:
        return {"valid": "unknown", "reason": f"the logs of {len(nodes) - read} member(s) "
                "were not collected"}
    return {"valid": True, "reason": f"every member kept to Maelstrom's protocol "
            f"({len(nodes)} logs read)"}


def analyze(run_dir: Path) -> dict[str, Any]:
    from checkers import agreement, availability, exactly_once, liveness, perf, set_checker

    run_dir = Path(run_dir)
    config = _read_json(run_dir / "config.json", {}) or {}
    if not isinstance(config, dict):
        config = {}
    try:
        history = load_history(run_dir)
    except HistoryError as exc:
        reason = f"the history cannot be read: {exc}"
        return {"valid": "unknown", "reason": reason, "run": {}, "harness_error": reason,
                "checkers": {}, "perf": {}}
    phases = _read_json(run_dir / "phases.json", []) or []
    samples = _read_json(run_dir / "status-samples.json", []) or []
    logs, statuses = load_nodes(run_dir, config)
    client_ops = [op for op in history if op.get("process") != "nemesis"]
    by_phase = {p.get("name"): p for p in phases}
    checkers: dict[str, dict[str, Any]] = {}
    workload = config.get("workload")
    if workload == "register":
        checkers["linearizability"] = _guarded(lambda: _linearizability(client_ops))
    elif workload == "set":
        start = (by_phase.get("final-reads") or {}).get("start")
        checkers["set"] = _guarded(lambda: set_checker.check(history, "set", start))
    system = config.get("system", "paxos")
    if system not in LOG_SYSTEMS:
        # Not a pass: the run's verdict rests on the checkers that do apply, and the report
        # says these did not.
        why = f"not applicable: system {system} does not serve its chosen log"
        checkers["agreement"] = {"valid": NOT_APPLICABLE, "reason": why}
        checkers["exactly-once"] = {"valid": NOT_APPLICABLE, "reason": why}
    elif logs:
        checkers["agreement"] = _guarded(lambda: agreement.check(logs, statuses))
        checkers["exactly-once"] = _guarded(lambda: exactly_once.check(history, logs))
    else:
        checkers["agreement"] = {"valid": "unknown", "reason": "no node logs were collected"}
    bound = recovery_bound(config)
    checkers["availability"] = _guarded(lambda: availability.check(history, phases, bound))
    nodes = [f"n{i}" for i in range(1, int(config.get("nodes") or 0) + 1)] \
        if isinstance(config.get("nodes"), int) else []
    reads_start = (by_phase.get("final-reads") or {}).get("start")
    checkers["liveness"] = _guarded(lambda: liveness.check(
        history, nodes, liveness.bound(config.get("op_timeout") or 2.0,
                                       config.get("election_timeout_ms") or 300), reads_start))
    if system == "maelstrom":
        checkers["protocol"] = _guarded(lambda: maelstrom_protocol(run_dir, nodes))
    checkers = {k: checkers[k] for k in ORDER if k in checkers}

    verdict = merge_valid([c.get("valid") for c in checkers.values()
                           if c.get("valid") != NOT_APPLICABLE])
    reason = None
    for name, c in checkers.items():
        if c.get("valid") == verdict and verdict is not True:
            reason = f"{name}: {c.get('reason') or 'no reason given'}"
            break
    perf_result: dict[str, Any] = {}
    try:
        perf_result["windows"] = perf.windows(history, phases, samples)
    except Exception as exc:  # noqa: BLE001 - performance figures are never worth a lost verdict
        perf_result["error"] = f"{type(exc).__name__}: {exc}"
    perf_result["recovery"] = (checkers["availability"].get("recovery")
                               if "recovery" in checkers["availability"] else None)
    perf_result["fast_path"] = fast_path_summary(perf_result.get("windows") or {})
    return {"valid": verdict, "reason": reason, "run": run_info(config, run_dir),
            "checkers": checkers, "perf": perf_result}


def fast_path_summary(windows: dict[str, Any]) -> dict[str, Any]:
    """Before (warm-up) against after (recovery): the ok-op p50/p99 and throughput ratios."""
    before, after = windows.get("warmup"), windows.get("recovery")
    out: dict[str, Any] = {}
    if not before or not after:
        return out
    for q in ("p50", "p99"):
        a = before["latency_ms"]["all"].get(q)
        b = after["latency_ms"]["all"].get(q)
        out[f"{q}_before_ms"], out[f"{q}_after_ms"] = a, b
        out[f"{q}_ratio"] = round(b / a, 3) if a and b is not None else None
    a, b = before.get("throughput"), after.get("throughput")
    out["throughput_before"], out["throughput_after"] = a, b
    out["throughput_ratio"] = round(b / a, 3) if a and b is not None else None
    return out
