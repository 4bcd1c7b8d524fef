"""Every subcommand refuses bad input with one line naming the problem and its documented exit
status: no traceback, no run directory, no process left (issue 13)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.run.config import RANGES, ConfigError, RunConfig
from nemesis.catalogue import parse_spec
from nemesis.schedule import plan

from .conftest import REPO, harness


def _files(root: Path) -> dict[str, Path]:
    """Bad inputs of every kind, written once per test."""
    root.mkdir(parents=True, exist_ok=True)
    out = {}

    def put(name: str, data: bytes | str) -> None:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
        out[name] = path

    op = '{"process": 0, "type": "invoke", "f": "write", "value": %s}\n'
    put("deep.jsonl", op % ("[" * 50_000 + "]" * 50_000))
    put("deep.edn", "{:process 0, :type :invoke, :f :write, :value "
        + "[" * 50_000 + "]" * 50_000 + "}\n")
    put("bigint.jsonl", op % ("9" * 5000))
    put("binary.jsonl", bytes(range(256)) * 8)
    put("notutf8.jsonl", b'{"process": 0, "type": "invoke", "f": "write", "value": "\xff"}\n')
    put("runs/binary/history.jsonl", bytes(range(256)) * 8)
    put("runs/binary/config.json", "{}")
    put("runs/list-config/config.json", "[1, 2]")
    put("runs/text-config/config.json", "not json")
    put("runs/typed-config/config.json", '{"nodes": "three"}')
    put("runs/nan-config/config.json", '{"time_limit": NaN}')
    put("campaigns/binary.toml", bytes(range(256)) * 4)
    put("campaigns/matrix5.toml", "matrix = 5\n")
    put("campaigns/seeds.toml", '[[matrix]]\nseeds = ["a"]\n')
    put("campaigns/abc.toml", '[campaign]\ntime-limit = "abc"\n[[matrix]]\nseeds = [1]\n')
    put("campaigns/interval.toml", "[campaign]\nnemesis-interval = 0\n[[matrix]]\nseeds = [1]\n")
    put("campaigns/nan.toml", "[campaign]\ntime-limit = nan\n[[matrix]]\nseeds = [1]\n")
    put("campaigns/empty.toml", "[[matrix]]\nseeds = []\n")
    put("campaigns/escape.toml", '[campaign]\nname = "../../x"\n[[matrix]]\nseeds = [1]\n')
    put("known_hosts", "")
    return out


# (args, exit status, words the one stderr line must contain); {name} is a file of _files,
# {store} the store of the test.
CASES = [
    # run: numbers out of range or not finite (they used to spin, or pass unchecked)
    (["run", "--nemesis-interval", "0"], 3, "--nemesis-interval must be between"),
    (["run", "--nemesis-interval", "-1"], 3, "--nemesis-interval must be between"),
    (["run", "--time-limit", "1e9"], 3, "--time-limit must be between"),
    (["run", "--time-limit", "1e308"], 3, "--time-limit must be between"),
    (["run", "--time-limit", "inf"], 3, "--time-limit must be a finite number"),
    (["run", "--time-limit", "nan"], 3, "--time-limit must be a finite number"),
    (["run", "--rate", "nan"], 3, "--rate must be a finite number"),
    (["run", "--op-timeout", "0"], 3, "--op-timeout must be between"),
    (["run", "--delay-ms", "-1"], 3, "--delay-ms must be between"),
    (["run", "--base-port", "99999"], 3, "--base-port must be between"),
    (["run", "--base-port", "65534"], 3, "leaves no port for node n3"),
    (["run", "--seed", "-1"], 3, "--seed must be between"),
    (["run", "--concurrency", "0"], 3, "--concurrency must be between"),
    (["run", "--nemesis-interval", "0.05", "--time-limit", "500000"], 3,
     "faults per kind"),
    # node options, checked before any node starts
    (["run", "--heartbeat-ms", "0"], 3, "--heartbeat-ms must be between"),
    (["run", "--heartbeat-ms", "500"], 3, "must be below --election-timeout-ms"),
    (["run", "--election-timeout-ms", "0"], 3, "--election-timeout-ms must be between"),
    (["run", "--node-arg=--request-timeout-ms=0"], 3, "the node refuses it"),
    (["run", "--node-arg=--help"], 3, "the node refuses it"),
    # words
    (["run", "--nemesis", ""], 3, "names no fault; say `none`"),
    (["run", "--nemesis", ",,,"], 3, "names no fault; say `none`"),
    (["run", "--name", "../../x"], 3, "--name '../../x' must be"),
    (["run", "--name", ".hidden"], 3, "--name '.hidden' must be"),
    (["run", "--backend", "ssh"], 3, "needs --hosts"),
    # a run the backend cannot start is refused before anything is written
    (["run", "--backend", "ssh", "--hosts", "a=root@127.0.0.1:1,b=root@127.0.0.2:1,"
      "c=root@127.0.0.3:1", "--ssh-known-hosts", "{in}/known_hosts"], 3, "unreachable"),
    # check
    (["check", "{in}/deep.jsonl"], 3, "nest too deeply"),
    (["check", "{in}/deep.edn"], 3, "nest too deeply"),
    (["check", "{in}/bigint.jsonl"], 3, "Exceeds the limit"),
    (["check", "{in}/binary.jsonl"], 3, "binary data, not a history"),
    (["check", "/dev/zero"], 3, "binary data, not a history"),
    (["check", "{in}/notutf8.jsonl"], 3, "not UTF-8 text"),
    (["check", "/no/such/file.jsonl"], 3, "cannot read"),
    (["check", "{in}/deep.jsonl", "--time-limit", "nan"], 3, "--time-limit must be above 0"),
    (["check", "{in}/deep.jsonl", "--memory-limit", "-5"], 3, "--memory-limit must be above"),
    (["bench-check", "--repeat", "0"], 3, "--repeat between 1 and 1000"),
    # recheck, compare, rerun on broken runs
    (["recheck", "{in}/runs/binary"], 3, "not UTF-8 text"),
    (["compare", "{in}/runs/binary", "{in}/runs/binary"], 3,
     "not UTF-8 text"),
    (["recheck", "/no/such/run"], 3, "not a run directory"),
    (["rerun", "{in}/runs/list-config"], 3, "a configuration is a JSON object"),
    (["rerun", "{in}/runs/text-config"], 3, "Expecting value"),
    (["rerun", "{in}/runs/typed-config"], 3, "--nodes must be an integer"),
    (["rerun", "{in}/runs/nan-config"], 3, "--time-limit must be a finite"),
    # campaign files
    (["campaign", "{in}/campaigns/binary.toml"], 3, "not UTF-8 text"),
    (["campaign", "{in}/campaigns/matrix5.toml"], 3, "matrix must be a list of tables"),
    (["campaign", "{in}/campaigns/seeds.toml", "--dry-run"], 3, "line 2: --seed must be an int"),
    (["campaign", "{in}/campaigns/abc.toml", "--dry-run"], 3, "line 2: --time-limit must be a"),
    (["campaign", "{in}/campaigns/interval.toml", "--dry-run"], 3,
     "line 2: --nemesis-interval must be between"),
    (["campaign", "{in}/campaigns/nan.toml", "--dry-run"], 3, "must be a finite number"),
    (["campaign", "{in}/campaigns/empty.toml", "--dry-run"], 3, "expands to no runs"),
    (["campaign", "{in}/campaigns/escape.toml", "--dry-run"], 3, "campaign name '../../x'"),
    (["campaign", "{in}/campaigns/seeds.toml", "--seeds", "a,b"], 3, "--seeds must be integers"),
    # serve, bench, bench-check
    (["serve", "--store", "{in}", "--port", "-1"], 3, "--port must be between"),
    (["serve", "--store", "{in}", "--port", "99999"], 3, "--port must be between"),
    (["serve", "--store", "/no/such/store"], 3, "no such store directory"),
    (["bench", "--seconds", "nan"], 3, "--seconds must be between"),
    (["bench", "--clients", "x"], 3, "--clients must be integers"),
    (["bench", "--commands", "0"], 3, "--commands must be between"),
    (["bench", "--background-load", "65"], 3, "--background-load must be between 0 and 64"),
    (["bench", "--data-root", "/no/such/dir"], 3, "--data-root /no/such/dir: no such directory"),
    (["bench", "--system", "maelstrom"], 3, "--system takes paxos, etcd"),
    (["run", "--system", "maelstrom"], 3, "--system maelstrom needs --bin PROGRAM"),
    (["run", "--bin", "x"], 3, "--bin and --bin-arg are for --system maelstrom"),
    (["run", "--backend", "sim", "--system", "etcd"], 3, "backend sim runs the bundled node"),
    (["run", "--loss", "2"], 3, "--loss must be between 0 and 1"),
    (["campaign", "campaigns/smoke.toml", "--backend", "nope"], 3, "unknown backend 'nope'"),
    (["bench-check", "/no/such/dir"], 3, "no such file or directory"),
    # the command line itself
    (["no-such-command"], 3, "invalid choice"),
    (["run", "--nodes", "x"], 3, "invalid int value"),
]


@pytest.mark.parametrize("args,status,words", CASES, ids=[" ".join(c[0])[:60] for c in CASES])
def test_bad_input_gets_one_line(tmp_path: Path, args: list[str], status: int,
                                 words: str) -> None:
    files = _files(tmp_path / "in")
    store = tmp_path / "store"
    assert files
    argv = [a.replace("{in}", str(tmp_path / "in")) for a in args]
    if argv[0] in ("run", "campaign"):
        argv += ["--store", str(store)]
    proc = _run(argv)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == status, proc.stdout + proc.stderr
    assert len(lines) == 1, proc.stderr
    assert words in lines[0], lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not store.exists(), "a refused command wrote into the store"
    assert not _children_of(proc.args_pid), "a refused command left a node running"


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with subprocess.Popen([sys.executable, "-m", "harness", *argv], cwd=REPO, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as p:
        out, err = p.communicate(timeout=60)
    done = subprocess.CompletedProcess(p.args, p.returncode, out, err)
    done.args_pid = p.pid  # type: ignore[attr-defined]
    return done


def _children_of(controller: int) -> list[int]:
    """Node processes that a given controller started (they carry its pid)."""
    from harness.backends.local import CONTROLLER_ENV

    marker = f"{CONTROLLER_ENV}={controller}\0".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "environ").read_bytes() + b"\0":
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def test_empty_history_and_empty_campaign_are_never_a_pass(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    proc = harness("check", str(empty))
    assert proc.returncode == 2 and "unknown" in proc.stdout
    assert "the history has no operations" in proc.stdout


def test_limits_cover_parsing(tmp_path: Path) -> None:
    history = tmp_path / "big.jsonl"
    with history.open("w") as fh:
        for i in range(150_000):
            op = {"process": i % 10, "f": "write", "key": i % 100, "value": i}
            fh.write(json.dumps({**op, "type": "invoke"}) + "\n")
            fh.write(json.dumps({**op, "type": "ok"}) + "\n")
    t0 = time.monotonic()
    proc = harness("check", str(history), "--memory-limit", "100")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "past the memory limit of 100 MB" in proc.stdout
    assert time.monotonic() - t0 < 10
    proc = harness("check", str(history), "--time-limit", "0.3")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "time limit" in proc.stdout


def test_serve_keeps_to_the_store(tmp_path: Path) -> None:
    import threading
    import urllib.error
    import urllib.request

    from harness.report.serve import make_server

    store = tmp_path / "store"
    (store / "t" / "r").mkdir(parents=True)
    (store / "t" / "r" / "a.txt").write_text("inside")
    (store / "latest").symlink_to("t/r")
    (tmp_path / "secret.txt").write_text("outside")
    (store / "evil").symlink_to(tmp_path)
    server = make_server(store, port=0, quiet=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert urllib.request.urlopen(f"{base}/latest/a.txt", timeout=5).read() == b"inside"
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{base}/evil/secret.txt", timeout=5)
        assert err.value.code == 404
    finally:
        server.shutdown()
        server.server_close()


# -- any configuration validates and plans quickly, or is refused with one line -------------

_numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                     st.integers(min_value=-2**70, max_value=2**70))


def _config_strategy() -> st.SearchStrategy[dict]:
    fields = {name: _numbers for name in RANGES}
    fields["nemesis"] = st.sampled_from(["", ",,,", "none", "partition", "partition,kill",
                                         "kill:all", "flood", "partition:nope", "delay,disk"])
    fields["name"] = st.one_of(st.none(), st.text(max_size=30))
    fields["workload"] = st.sampled_from(["register", "set", "queue"])
    return st.fixed_dictionaries({}, optional=fields)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_config_strategy())
def test_any_configuration_validates_and_plans_fast_or_is_refused(data: dict) -> None:
    import random

    config = RunConfig(**{k: v for k, v in data.items()})
    t0 = time.monotonic()
    try:
        config.validate()
    except ConfigError as exc:
        message = str(exc)
        assert message and "\n" not in message
        return
    faults = plan(parse_spec(config.nemesis), config.phase_durations()["faults"],
                  config.nemesis_interval, random.Random(1))
    assert time.monotonic() - t0 < 1.0
    assert isinstance(faults, list)
    # what validated is storable as strict JSON and reads back the same
    text = json.dumps(config.to_json(), allow_nan=False)
    again = RunConfig.from_json(json.loads(text))
    again.validate()
    for name in RANGES:
        value = getattr(config, name)
        assert value is None or math.isfinite(value)


# -- a system without a capability is refused what needs it ------------------------------------

@pytest.mark.parametrize("options,words", [
    ({"nemesis": "partition:isolate-leader"}, "partition:isolate-leader needs a system that can "
     "name its leader; system plain cannot"),
    ({"nemesis": "kill:all"}, "kill:all needs a system that can keep acknowledged writes"),
    ({"nemesis": "pause:leader"}, "pause:leader needs a system that can name its leader"),
    ({"nemesis": "partition:halves", "bugs": ["read-local"]}, "--bug needs a system that can "
     "inject the bug catalogue"),
])
def test_a_capability_the_system_lacks_is_refused(monkeypatch, options: dict,
                                                   words: str) -> None:
    from harness.run import config as config_module
    from harness.systems import System

    plain = System("plain", frozenset({"log", "counters"}))
    monkeypatch.setattr(config_module, "make_system", lambda name, **options: plain)
    with pytest.raises(ConfigError) as err:
        RunConfig(**options).validate()
    assert words in str(err.value) and "\n" not in str(err.value)
    # what needs nothing of it passes
    RunConfig(nemesis="partition:halves,kill:one").validate()


def test_the_test_name_tells_backends_and_systems_apart() -> None:
    from harness.run.config import RunConfig

    local = RunConfig(nemesis="partition", bugs=["small-quorum"])
    assert local.test_name() == "register-partition-n3-small-quorum"
    docker = RunConfig(nemesis="partition", bugs=["small-quorum"], backend="docker")
    assert docker.test_name() == "register-partition-n3-small-quorum-docker"
    assert RunConfig(system="etcd", nemesis="kill",
                     backend="docker").test_name() == "etcd-register-kill-n3-docker"
