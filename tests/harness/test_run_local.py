"""Real short runs on the local backend against the correct node."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import sigint_as_in_a_terminal
from tests.harness.conftest import REPO, assert_well_formed, harness, node_processes, read_history


def run_dir_of(store: Path) -> Path:
    return (store / "latest").resolve()


def short_run(store: Path, nemesis: str, seed: int = 1, time_limit: float = 12,
              *extra: str) -> tuple[subprocess.CompletedProcess, Path]:
    proc = harness("run", "--nemesis", nemesis, "--time-limit", str(time_limit), "--seed",
                   str(seed), "--store", str(store), "--quiet", "--nemesis-interval", "1.5",
                   *extra)
    return proc, run_dir_of(store)


def assert_valid_run(proc: subprocess.CompletedProcess, run_dir: Path, kinds: set[str]) -> None:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads((run_dir / "results.json").read_text())
    assert results["valid"] is True
    assert results["checkers"]["linearizability"]["valid"] is True
    history = read_history(run_dir)
    assert_well_formed(history)
    oks = [op for op in history if op["type"] == "ok"]
    assert len(oks) > 20
    faults = {op["f"] for op in history if op["process"] == "nemesis"}
    assert kinds <= faults, faults
    for node in ("n1", "n2", "n3"):
        assert (run_dir / "nodes" / node / "node.log").exists()
        assert json.loads((run_dir / "nodes" / node / "status.json").read_text())["ok"]
    assert not node_processes(run_dir.name), "node processes left behind"


def test_default_mix_run_is_valid(store: Path) -> None:
    proc, run_dir = short_run(store, "partition,pause,kill", 5, 15)
    assert_valid_run(proc, run_dir, {"heal"})
    assert "verdict: valid" in proc.stdout
    config = json.loads((run_dir / "config.json").read_text())
    assert config["seed"] == 5


@pytest.mark.slow
@pytest.mark.parametrize("kind,fault", [("partition", "start-partition"), ("pause", "pause"),
                                        ("kill", "kill"), ("delay", "start-delay"),
                                        ("disk", "heal")])
def test_each_nemesis_kind_is_valid(store: Path, kind: str, fault: str) -> None:
    proc, run_dir = short_run(store, kind, 11, 12)
    assert_valid_run(proc, run_dir, {fault, "heal"})
    liveness = json.loads((run_dir / "results.json").read_text())["checkers"]["liveness"]
    assert liveness["valid"] is True and liveness["judged_s"] > 0


@pytest.mark.slow
def test_set_workload_run_is_valid(store: Path) -> None:
    proc, run_dir = short_run(store, "partition,kill", 3, 12, "--workload", "set")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert_well_formed(read_history(run_dir))


def test_same_seed_same_schedule_and_operations(store: Path) -> None:
    _, first = short_run(store / "a", "partition,kill", 42, 8)
    _, second = short_run(store / "b", "partition,kill", 42, 8)
    _, third = short_run(store / "c", "partition,kill", 43, 8)
    plan = [json.loads((d / "plan.json").read_text()) for d in (first, second, third)]
    assert plan[0] == plan[1] and plan[0] != plan[2]

    def invocations(run_dir: Path) -> list[tuple]:
        # The generated sequence, before the final reads (whose place depends on timing).
        phases = json.loads((run_dir / "phases.json").read_text())
        final = next(p["start"] for p in phases if p["name"] == "final-reads")
        return [(op["f"], op.get("key"), json.dumps(op["value"])) for op in read_history(run_dir)
                if op["type"] == "invoke" and op["process"] != "nemesis" and op["time"] < final]

    a, b, c = invocations(first), invocations(second), invocations(third)
    n = min(len(a), len(b), len(c))
    assert n > 50
    assert a[:n] == b[:n]
    assert a[:n] != c[:n]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_ctrl_c_leaves_nothing_and_keeps_history(store: Path, sig: int) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", "--time-limit", "60",
                             "--store", str(store), "--quiet", "--seed", "9"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=sigint_as_in_a_terminal)
    try:
        deadline = time.monotonic() + 30
        history_path = None
        while time.monotonic() < deadline:
            if (store / "latest").exists():
                history_path = run_dir_of(store) / "history.jsonl"
                if history_path.exists() and len(history_path.read_text().splitlines()) > 40:
                    break
            time.sleep(0.2)
        assert history_path is not None, "the run never started"
        run_id = run_dir_of(store).name
        assert node_processes(run_id), "no node running mid-run"
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out + err
    assert not node_processes(run_id), "nodes left running after Ctrl-C"
    run_dir = run_dir_of(store)
    history = read_history(run_dir)
    assert len(history) > 40
    assert_well_formed(history)
    results = json.loads((run_dir / "results.json").read_text())
    assert results["incomplete"] is True
    assert results["valid"] in (False, "unknown")
    check = harness("check", str(run_dir / "history.jsonl"), "--model", "kv")
    assert check.returncode in (0, 1, 2), check.stdout + check.stderr


@pytest.mark.parametrize("args,message", [
    (["--workload", "queue"], "unknown workload 'queue'"),
    (["--nemesis", "partition,flood"], "unknown nemesis 'flood'"),
    (["--bug", "no-such-bug"], "unknown bug 'no-such-bug'"),
    (["--nodes", "0"], "--nodes must be between 1 and 9"),
    (["--frobnicate"], "unrecognized arguments: --frobnicate"),
])
def test_bad_options_exit_3_with_one_line(store: Path, args: list[str], message: str) -> None:
    proc = harness("run", "--store", str(store), *args, timeout=30)
    assert proc.returncode == 3
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not store.exists() or not any(store.iterdir())


def test_port_in_use_and_failing_node_exit_3_leave_nothing(store: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.10.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        proc = harness("run", "--store", str(store / "p"), "--base-port", str(port), "--quiet",
                       timeout=60)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert f"port {port} on 127.0.10.1 is already in use" in proc.stdout + proc.stderr

    # A node option the node would refuse is refused before anything starts (issue 13).
    proc = harness("run", "--store", str(store / "n"), "--quiet",
                   "--node-arg=--no-such-option", timeout=60)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "the node refuses it" in proc.stderr and "no-such-option" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not proc.stdout
    assert not (store / "n").exists()

    # One it parses but cannot start with: the node's own last words are in the message.
    proc = harness("run", "--store", str(store / "s"), "--quiet",
                   "--node-arg=--secret-file=/no/such/secret", timeout=60)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "exited during start-up" in proc.stdout + proc.stderr
    assert "/no/such/secret" in proc.stdout + proc.stderr
    assert not node_processes(run_dir_of(store / "s").name)


def test_clean_kills_leftovers_of_a_dead_controller() -> None:
    from harness.backends.local import CONTROLLER_ENV, RUN_ENV

    # A controller pid that cannot be alive: the leftover's controller is gone.
    env = {**os.environ, RUN_ENV: "leftover-test", CONTROLLER_ENV: "999999999"}
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=env)
    try:
        time.sleep(0.2)
        proc = harness("clean", "--run", "leftover-test", timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert orphan.wait(timeout=10) == -signal.SIGKILL
        assert f"local: killed 1 node process(es): {orphan.pid}\n" in proc.stdout
    finally:
        if orphan.poll() is None:
            orphan.kill()


def test_clean_keeps_live_controllers_and_other_backends_nodes() -> None:
    from harness.backends.local import CONTROLLER_ENV, RUN_ENV

    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    controllers = {"dead": "999999999", "alive": str(os.getpid()),
                   "ssh": f"{socket.gethostname()}:999999999"}
    procs = {name: subprocess.Popen(sleeper, env={**os.environ, RUN_ENV: f"clean-{name}",
                                                  CONTROLLER_ENV: controller})
             for name, controller in controllers.items()}
    try:
        time.sleep(0.2)
        proc = harness("clean", timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert procs["dead"].wait(timeout=10) == -signal.SIGKILL
        assert procs["alive"].poll() is None and procs["ssh"].poll() is None
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()


def test_clean_removes_the_secrets_of_dead_controllers(tmp_path: Path) -> None:
    """A controller killed with SIGKILL leaves its run's secret directory; clean removes it,
    and keeps a live controller's."""
    import tempfile

    from harness.backends.local import SECRET_PREFIX, leftover_secrets

    dead = Path(tempfile.mkdtemp(prefix=f"{SECRET_PREFIX}999999999-"))
    alive = Path(tempfile.mkdtemp(prefix=f"{SECRET_PREFIX}{os.getpid()}-"))
    try:
        (dead / "cluster.secret").write_text("x" * 64)
        assert dead in leftover_secrets() and alive not in leftover_secrets()
        proc = harness("clean", timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert not dead.exists() and alive.exists()
    finally:
        import shutil

        shutil.rmtree(dead, ignore_errors=True)
        shutil.rmtree(alive, ignore_errors=True)


def test_a_run_on_a_terminal_shows_a_live_bar_then_the_summary(tmp_path: Path) -> None:
    from tests.harness.conftest import harness_on_a_terminal

    status, out, terminal = harness_on_a_terminal(
        "run", "--time-limit", "10", "--nemesis", "partition", "--nemesis-interval", "1",
        "--seed", "3", "--store", str(tmp_path / "store"), timeout=120)
    assert status == 0, out + terminal
    # the bar names each phase, the planned time and the live counts, and is drawn in place
    for phase in ("warmup", "faults", "recovery"):
        assert phase in terminal, terminal[-2000:]
    assert "ops/s" in terminal and "faults: partition" in terminal and "\r" in terminal
    assert re.search(r"\b\d+/10 s\b", terminal)
    assert "verdict: valid" in out and "phase" in out.splitlines()[0]
