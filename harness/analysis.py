"""Every checker over a stored run. The returned dict is results.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

_RANK = {False: 0, "unknown": 1, True: 2}


def merge_valid(verdicts: list[Any]) -> Any:
    """false > unknown > true; no verdict at all is unknown (never a vacuous pass)."""
    if not verdicts:
        return "unknown"
    return min(verdicts, key=lambda v: _RANK.get(v, 1))


def load_history(run_dir: Path) -> list[dict]:
    ops = []
    with open(run_dir / "history.jsonl", encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    ops.append(json.loads(line))
                except json.JSONDecodeError:
                    # A torn last line from a crashed controller; everything before it stands.
                    break
    return ops


def analyze(run_dir: Path) -> dict[str, Any]:
    run_dir = Path(run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    history = load_history(run_dir)
    client_ops = [op for op in history if op.get("process") != "nemesis"]
    checkers: dict[str, dict[str, Any]] = {}
    workload = config.get("workload")
    if workload == "register":
        from checkers.linearizability import check

        result = check(client_ops, model="kv")
        checkers["linearizability"] = result
    verdict = merge_valid([c.get("valid") for c in checkers.values()])
    return {"valid": verdict, "checkers": checkers, "perf": {}}
