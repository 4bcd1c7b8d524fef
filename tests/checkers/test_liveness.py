"""The liveness checker on crafted histories."""

from __future__ import annotations

from typing import Any

from checkers import liveness

NODES = ["n1", "n2", "n3"]
S = 1_000_000_000


class History:
    def __init__(self) -> None:
        self.ops: list[dict[str, Any]] = []

    def op(self, t: float, end: float | None, f: str, status: str = "ok",
           process: int = 0) -> None:
        self.ops.append({"process": process, "type": "invoke", "f": f, "key": "k",
                         "value": 1, "time": int(t * S)})
        if end is not None:
            self.ops.append({"process": process, "type": status, "f": f, "key": "k",
                             "value": 1, "time": int(end * S)})

    def nemesis(self, t: float, f: str, nodes: list[str], value: Any = None,
                done: float | None = None) -> None:
        self.ops.append({"process": "nemesis", "type": "invoke", "f": f, "value": value,
                         "node": nodes, "time": int(t * S)})
        self.ops.append({"process": "nemesis", "type": "info", "f": f, "value": value,
                         "node": nodes, "time": int((done if done is not None else t) * S)})

    def steady(self, start: float, end: float, f: str = "write", step: float = 0.1) -> None:
        t = start
        while t < end:
            self.op(t, t + 0.01, f, process={"write": 1, "read": 2}.get(f, 3))
            t += step

    def sorted(self) -> list[dict[str, Any]]:
        return sorted(self.ops, key=lambda o: o["time"])


def test_a_stall_with_a_majority_up_is_false_and_names_the_nodes() -> None:
    h = History()
    h.steady(0, 3)
    h.steady(0, 20, "read")
    h.nemesis(3, "kill", ["n1"])
    h.op(3.1, 12.0, "write", "info", process=9)   # a write that hangs, with n2, n3 up
    h.nemesis(12, "restart", ["n1"])
    h.steady(12.1, 20)
    result = liveness.check(h.sorted(), NODES, bound_s=2.0)
    assert result["valid"] is False
    stall = result["stalls"][0]
    assert stall["kind"] == "update" and stall["majority"] == ["n2", "n3"]
    assert 2.9 < stall["start_s"] < 3.2 and 11.9 < stall["end_s"] < 12.2
    assert "n2, n3 were up and connected" in result["reason"]


def test_a_stall_while_the_majority_is_cut_is_not_a_violation() -> None:
    h = History()
    h.steady(0, 3)
    h.nemesis(3, "start-partition", ["n1", "n2", "n3"],
              {"shape": "halves", "cut": [[a, b] for a in NODES for b in NODES if a != b]})
    h.op(3.1, 12.0, "write", "info", process=9)
    h.nemesis(12, "stop-partition", ["n1", "n2", "n3"], done=12.2)
    h.steady(12.3, 20)
    result = liveness.check(h.sorted(), NODES, bound_s=2.0)
    assert result["valid"] is True, result["reason"]
    assert result["judged_s"] > 10


def test_a_one_way_cut_leaves_no_two_way_majority() -> None:
    h = History()
    h.steady(0, 3)
    # n1 hears nobody, n2 does not hear n3: no two nodes are linked both ways
    cut = [["n2", "n1"], ["n3", "n1"], ["n3", "n2"]]
    h.nemesis(3, "start-partition", NODES, {"shape": "one-way", "cut": cut})
    h.nemesis(9, "stop-partition", NODES)
    h.steady(9.1, 20)
    windows = liveness.healthy_windows(h.sorted(), NODES, int(20 * S))
    assert not any(3 * S < a < 9 * S for a, _, _ in windows[1:])
    result = liveness.check(h.sorted(), NODES, bound_s=2.0)
    assert result["valid"] is True


def test_reads_do_not_hide_stalled_writes() -> None:
    h = History()
    h.steady(0, 20, "read")
    h.steady(0, 5)
    h.op(5.05, 15.0, "write", "info", process=9)
    h.steady(15, 20)
    result = liveness.check(h.sorted(), NODES, bound_s=2.0)
    assert result["valid"] is False and result["stalls"][0]["kind"] == "update"


def test_a_stall_shorter_than_the_bound_is_fine_and_a_pause_counts_as_down() -> None:
    h = History()
    h.steady(0, 5)
    h.op(5.05, 6.5, "write", process=9)
    h.steady(6.5, 10)
    h.nemesis(10, "pause", ["n1", "n2"])
    h.op(10.1, 18, "write", "info", process=9)
    h.nemesis(18, "resume", ["n1", "n2"])
    h.steady(18.1, 25)
    result = liveness.check(h.sorted(), NODES, bound_s=2.0)
    assert result["valid"] is True, result["reason"]


def test_nothing_ok_or_nothing_long_enough_is_unknown() -> None:
    h = History()
    h.op(0, 1, "write", "fail")
    assert liveness.check(h.sorted(), NODES, 2.0)["valid"] == "unknown"
    h = History()
    h.steady(0, 1.5)
    assert liveness.check(h.sorted(), NODES, 2.0)["valid"] == "unknown"


def test_bound_grows_with_timeouts() -> None:
    assert liveness.bound(2.0, 300) == 4.2
    assert liveness.bound(0.5, 100) < liveness.bound(2.0, 300)


def test_the_time_before_the_first_operation_is_not_judged() -> None:
    # The cluster took 5 s to start (the history's clock runs from the controller's start).
    h = History()
    h.steady(5, 20)
    h.steady(5, 20, "read")
    result = liveness.check(h.sorted(), NODES, bound_s=2.0)
    assert result["valid"] is True, result["reason"]
    assert result["healthy_windows"][0]["start_s"] == 5.0
