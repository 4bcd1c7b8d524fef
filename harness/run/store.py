"""The store: store/<test-name>/<timestamp>/ per run, store/latest pointing at the newest."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from harness.report.analysis import analyze, merge_valid


def next_run_dir(store: Path, test_name: str) -> Path:
    """The path of a new run's directory (not created yet)."""
    # Microseconds: the directory name is also the run id that marks the run's processes and
    # containers, so two runs started in the same second must not share it.
    stamp = datetime.now().strftime("%Y%m%dT%H%M%S.%f")
    base = Path(store) / test_name
    run_dir = base / stamp
    suffix = 1
    while run_dir.exists():
        suffix += 1
        run_dir = base / f"{stamp}-{suffix}"
    return run_dir


def create_run_dir(run_dir: Path) -> None:
    """Create the run's directory and point the store's `latest` at it."""
    store = run_dir.parent.parent
    run_dir.mkdir(parents=True)
    latest = store / "latest"
    tmp = store / f".latest-{os.getpid()}"
    if tmp.is_symlink():
        tmp.unlink()
    tmp.symlink_to(run_dir.relative_to(store))
    os.replace(tmp, latest)


def write_json(path: Path, data: Any) -> None:
    """Write a JSON file whole or not at all (no temporary file is left behind)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        tmp.write_text(json.dumps(data, indent=1, default=str))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def analyze_and_write(run_dir: Path, harness_error: str | None = None,
                      incomplete: bool = False, report: bool = True) -> dict[str, Any]:
    """Check a stored run, fold in harness trouble, write results.json and (unless `report`
    is False: `harness recheck` writes it later) the report."""
    results = analyze(run_dir)
    if harness_error:
        # The system's verdict stands only if it is a violation; otherwise we do not know.
        results["harness_error"] = harness_error
        results["valid"] = merge_valid([results["valid"], "unknown"])
    if incomplete:
        results["incomplete"] = True
        results["valid"] = merge_valid([results["valid"], "unknown"])
    try:
        write_json(run_dir / "results.json", results)
    except (OSError, ValueError) as exc:
        results["harness_error"] = (results.get("harness_error") or
                                    f"cannot write results.json: {exc}")
        results["valid"] = merge_valid([results["valid"], "unknown"])
        return results
    if report:
        write_report_safely(run_dir, results)
    return results


def write_report_safely(run_dir: Path, results: dict[str, Any]) -> None:
    """The run's report pages; a failure to write them is noted in results.json, never
    raised (a broken report must not hide the verdict)."""
    try:
        from harness.report.pages import write_report
    except ModuleNotFoundError:
        return
    try:
        write_report(run_dir, results)
    except Exception as exc:  # noqa: BLE001 - a broken report must not hide the verdict
        results["report_error"] = f"{type(exc).__name__}: {exc}"
        try:
            write_json(run_dir / "results.json", results)
        except (OSError, ValueError):
            pass
