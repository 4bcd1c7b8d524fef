"""A deterministic in-process network for the sans-IO replica.

Everything random comes from one seeded RNG, so a failing schedule replays from its seed. The
network can deliver (in any order), drop, duplicate and hold messages across partitions; nodes
can crash (losing everything not persisted) and restart from their simulated disk. Messages go
through JSON both ways, like on the wire.

The simulation checks safety online: every value any replica learns as chosen is compared with
what any other replica learned for that slot, ever.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

from node.core import LEADER, Config, Ready, Replica
from node.kv import KV, canonical


@dataclass
class Disk:
    records: list[Any] = field(default_factory=list)
    snapshot: tuple[int, str] | None = None


@dataclass
class ClientOp:
    cmd: dict[str, Any]
    started: int
    attempts: int = 0
    token: Any = None
    sent_at: int = -1


class Client:
    def __init__(self, cid: str, process: int) -> None:
        self.id = cid
        self.seq = 0
        self.op: ClientOp | None = None
        self.target: str | None = None
        self.backoff_until = 0
        self.process = process   # history process id; a new one after an indeterminate op


class Sim:
    def __init__(self, n: int = 3, seed: int = 0, *, bugs: dict[str, list[str]] | None = None,
                 election_ticks: int = 10, heartbeat_ticks: int = 2,
                 snapshot_every: int = 10_000, classic: bool = False,
                 mid_crash_prob: float = 0.0, max_inflight: int = 64,
                 request_timeout: int = 40, async_persist: bool = False,
                 register_only: bool = False, window: int = 1024) -> None:
        self.rng = random.Random(seed)
        self.ids = [f"n{i + 1}" for i in range(n)]
        self.bugs = bugs or {}
        self.cfg = dict(election_ticks=election_ticks, heartbeat_ticks=heartbeat_ticks,
                        snapshot_every=snapshot_every, classic=classic,
                        max_inflight=max_inflight, max_batch=16, window=window)
        self.disks = {i: Disk() for i in self.ids}
        self.nodes: dict[str, Replica | None] = {}
        self.net: list[tuple[str, str, str]] = []      # (src, dst, json text)
        self.blocked: set[tuple[str, str]] = set()
        self.mid_crash_prob = mid_crash_prob
        self.crash_before_persist: set[str] = set()
        self.async_persist = async_persist
        self.persisting: dict[str, Ready] = {}
        self.events: list[tuple[str, str]] = []
        self.request_timeout = request_timeout
        self.step_no = 0
        # safety bookkeeping
        self.chosen: dict[int, str] = {}               # slot -> canonical value, all time
        self.chosen_raw: dict[int, Any] = {}
        self.violations: list[str] = []
        # clients
        self.clients: list[Client] = []
        self.acked: dict[tuple[str, int], dict[str, Any]] = {}
        self.replies: dict[Any, dict[str, Any]] = {}
        self.retried: set[tuple[str, int]] = set()
        self.value_counter = 0
        self.clients_active = True
        # The clients' history in the DESIGN.md shape (register ops only when register_only),
        # for checkers.linearizability; time is the simulation's event counter.
        self.register_only = register_only
        self.history: list[dict[str, Any]] = []
        self.next_process = 0
        for i in self.ids:
            self._boot(i)

    # -- nodes ----------------------------------------------------------------------------
    def config(self, nid: str) -> Config:
        return Config(node_id=nid, peers=[p for p in self.ids if p != nid],
                      bugs=frozenset(self.bugs.get(nid, [])), **self.cfg)

    def _boot(self, nid: str) -> None:
        disk = self.disks[nid]
        rng = random.Random(self.rng.random())
        self.nodes[nid] = Replica.restore(self.config(nid), rng, disk.snapshot,
                                          json.loads(json.dumps(disk.records)))
        self.process(nid)

    def crash(self, nid: str) -> None:
        self.nodes[nid] = None
        self.persisting.pop(nid, None)   # the write in progress dies with the process

    def restart(self, nid: str) -> None:
        if self.nodes[nid] is None:
            self._boot(nid)

    def alive(self) -> list[str]:
        return [i for i in self.ids if self.nodes[i] is not None]

    def leaders(self) -> list[str]:
        return [i for i in self.alive() if self.nodes[i].role == LEADER]  # type: ignore[union-attr]

    def serving_leader(self) -> str | None:
        for i in self.alive():
            r = self.nodes[i]
            if r.role == LEADER and r.serving:  # type: ignore[union-attr]
                return i
        return None

    def process(self, nid: str) -> None:
        """Run the node's Ready/Advance loop to quiescence, like the driver does. With
        async_persist, a Ready with records stays in flight (the fsync is running) while the
        node keeps taking input; finish_persist completes it later."""
        while True:
            r = self.nodes[nid]
            if r is None:
                return
            if nid in self.persisting:
                # like the server: what depends on nothing unpersisted leaves at once
                msgs, replies = r.take_early()
                # What it learned chosen so far counts now: a reply may leave before the Ready
                # that reports the slot, and a crash may lose that Ready.
                self._check_chosen(nid, r.out)
                for m in msgs:
                    self._send(m)
                for token, body in replies:
                    self._on_reply(token, body)
                return
            if not r.has_ready():
                return
            rd = r.ready()
            self.events.extend((nid, e) for e in rd.events)
            self._check_chosen(nid, rd)
            for m in rd.early_messages:
                self._send(m)
            for token, body in rd.early_replies:
                self._on_reply(token, body)
            if (rd.records or rd.snapshot) and (
                    nid in self.crash_before_persist
                    or (self.mid_crash_prob and self.rng.random() < self.mid_crash_prob)):
                self.crash_before_persist.discard(nid)
                self.crash(nid)   # died before the fsync finished: rd is lost
                return
            if self.async_persist and (rd.records or rd.snapshot):
                self.persisting[nid] = rd
                return
            self._complete(nid, rd)

    def _complete(self, nid: str, rd: Ready) -> None:
        r = self.nodes[nid]
        assert r is not None
        self._persist(nid, rd)
        for m in rd.messages:
            self._send(m)
        for token, body in rd.replies:
            self._on_reply(token, body)
        r.advance(rd)

    def finish_persist(self, nid: str) -> None:
        rd = self.persisting.pop(nid, None)
        if rd is not None and self.nodes[nid] is not None:
            self._complete(nid, rd)
            self.process(nid)

    def finish_all_persists(self) -> None:
        while self.persisting:
            self.finish_persist(next(iter(self.persisting)))

    def _persist(self, nid: str, rd: Ready) -> None:
        disk = self.disks[nid]
        if rd.snapshot is not None:
            disk.snapshot = (rd.snapshot.index, rd.snapshot.data)
        recs = json.loads(json.dumps(rd.records))
        if rd.rewrite:
            disk.records = recs
        else:
            disk.records.extend(recs)

    def _check_chosen(self, nid: str, rd: Ready) -> None:
        for s, v in rd.chosen:
            c = canonical(v)
            old = self.chosen.get(s)
            if old is None:
                self.chosen[s] = c
                self.chosen_raw[s] = json.loads(c)
            elif old != c:
                self.violations.append(f"slot {s}: {nid} chose {c}, earlier {old}")

    # -- network --------------------------------------------------------------------------
    def _send(self, m: dict[str, Any]) -> None:
        self.net.append((m["from"], m["to"], json.dumps(m)))

    def deliver(self, idx: int | None = None, *, keep: bool = False) -> bool:
        if not self.net:
            return False
        if idx is None:
            idx = self.rng.randrange(len(self.net))
        src, dst, text = self.net[idx] if keep else self.net.pop(idx)
        if (src, dst) in self.blocked:
            return False
        r = self.nodes.get(dst)
        if r is None:
            return False
        r.step(json.loads(text))
        self.process(dst)
        return True

    def matching(self, **fields: Any) -> list[int]:
        """Indexes of in-flight messages whose fields (src/dst/type or message fields) match."""
        alias = {"src": "from", "dst": "to"}
        want = {alias.get(k, k): v for k, v in fields.items()}
        out = []
        for i, (_src, _dst, text) in enumerate(self.net):
            m = json.loads(text)
            if all(m.get(k) == v for k, v in want.items()):
                out.append(i)
        return out

    def deliver_matching(self, **fields: Any) -> int:
        """Deliver (in order) every in-flight message matching; returns how many."""
        n = 0
        while True:
            idx = self.matching(**fields)
            if not idx:
                return n
            self.deliver(idx[0])
            n += 1

    def drop_matching(self, **fields: Any) -> int:
        idx = self.matching(**fields)
        for i in reversed(idx):
            self.net.pop(i)
        return len(idx)

    def drop(self) -> None:
        if self.net:
            self.net.pop(self.rng.randrange(len(self.net)))

    def duplicate(self) -> None:
        if self.net:
            self.net.append(self.net[self.rng.randrange(len(self.net))])

    def partition(self, *groups: list[str]) -> None:
        self.blocked = set()
        where = {n: gi for gi, g in enumerate(groups) for n in g}
        for a in self.ids:
            for b in self.ids:
                if a != b and where.get(a, -1) != where.get(b, -2):
                    self.blocked.add((a, b))

    def heal(self) -> None:
        self.blocked = set()

    def tick(self, nid: str) -> None:
        r = self.nodes[nid]
        if r is not None:
            r.tick()
            self.process(nid)

    def tick_all(self) -> None:
        for i in self.ids:
            self.tick(i)

    def run(self, steps: int, deliver_all: bool = True) -> None:
        """Lossless operation: tick everyone, deliver everything deliverable."""
        for _ in range(steps):
            self.step_no += 1
            self.finish_all_persists()
            self.tick_all()
            if deliver_all:
                self.flush()
            self.client_round()

    def flush(self, limit: int = 100_000) -> None:
        """Deliver every message that can be delivered now (in random order); drop the rest."""
        n = 0
        while (self.net or self.persisting) and n < limit:
            self.finish_all_persists()
            if self.net:
                self.deliver(self.rng.randrange(len(self.net)))
            n += 1

    def run_until(self, pred: Any, max_steps: int = 2000) -> bool:
        for _ in range(max_steps):
            if pred():
                return True
            self.run(1)
        return bool(pred())

    # -- clients --------------------------------------------------------------------------
    def add_clients(self, k: int) -> None:
        for _ in range(k):
            self.clients.append(Client(f"c{len(self.clients)}", self._new_process()))

    def _new_process(self) -> int:
        self.next_process += 1
        return self.next_process - 1

    def _record(self, c: Client, typ: str, cmd: dict[str, Any], value: Any = None,
                **extra: Any) -> None:
        op = {"index": len(self.history), "time": len(self.history), "process": c.process,
              "type": typ, "f": cmd["op"], "key": cmd["key"]}
        if typ == "invoke":
            op["value"] = ([cmd["from"], cmd["to"]] if cmd["op"] == "cas"
                           else cmd.get("value"))
        else:
            op["value"] = value
        op.update(extra)
        self.history.append(op)
        if typ == "info":
            c.process = self._new_process()   # Jepsen's rule

    def _finish_op(self, c: Client, typ: str, value: Any = None, **extra: Any) -> None:
        op = c.op
        assert op is not None
        cmd = op.cmd
        if typ == "info" and cmd["op"] == "read":
            typ = "fail"   # a read that never answered had no effect
        if typ == "ok" and cmd["op"] != "read":
            value = self.history_invoked(c)
        self._record(c, typ, cmd, value, **extra)
        c.op = None

    def history_invoked(self, c: Client) -> Any:
        for op in reversed(self.history):
            if op["process"] == c.process and op["type"] == "invoke":
                return op["value"]
        return None

    def new_command(self, c: Client) -> dict[str, Any]:
        c.seq += 1
        self.value_counter += 1
        kind = self.rng.random()
        key = f"k{self.rng.randrange(3)}"
        if self.register_only and 0.45 <= kind < 0.65:
            kind = 0.0   # a write instead of an add
        if kind < 0.45:
            return {"client": c.id, "seq": c.seq, "op": "write", "key": key,
                    "value": self.value_counter}
        if kind < 0.65:
            return {"client": c.id, "seq": c.seq, "op": "add", "key": "s" + key,
                    "value": self.value_counter}
        if kind < 0.8:
            return {"client": c.id, "seq": c.seq, "op": "cas", "key": key,
                    "from": self.rng.randrange(self.value_counter), "to": self.value_counter}
        return {"client": c.id, "seq": c.seq, "op": "read", "key": key}

    def submit(self, c: Client, target: str | None = None) -> None:
        op = c.op
        assert op is not None
        target = target or c.target or self.rng.choice(self.ids)
        c.target = target
        op.attempts += 1
        if op.attempts > 1:
            self.retried.add((op.cmd["client"], op.cmd["seq"]))
        op.token = (c.id, op.cmd["seq"], op.attempts)
        op.sent_at = self.step_no
        r = self.nodes.get(target)
        if r is None:
            return  # connection refused: times out
        reply = r.propose(dict(op.cmd), op.token)
        if reply is not None:
            self._on_reply(op.token, reply)
        self.process(target)

    def client_round(self) -> None:
        if not self.clients_active:
            return
        for c in self.clients:
            if c.op is None:
                if self.step_no < c.backoff_until:
                    continue
                c.op = ClientOp(self.new_command(c), self.step_no)
                self._record(c, "invoke", c.op.cmd)
                self.submit(c)
            elif self.step_no - c.op.sent_at > self.request_timeout:
                r = self.nodes.get(c.target) if c.target else None
                if r is not None:
                    r.cancel(c.op.token)
                if c.op.attempts >= 6:
                    self._finish_op(c, "info")   # give up: indeterminate
                else:
                    self.submit(c, self.rng.choice(self.ids))

    def _on_reply(self, token: Any, body: dict[str, Any]) -> None:
        self.replies[token] = body
        cid, seq, attempt = token
        c = next((x for x in self.clients if x.id == cid), None)
        if c is None or c.op is None or c.op.token != token:
            return
        cmd = c.op.cmd
        if body.get("ok"):
            if cmd["op"] != "read":
                self.acked[(cid, seq)] = cmd
            self._finish_op(c, "ok", body.get("value"))
        elif body.get("code") in (20, 22):
            if cmd["op"] != "read":
                self.acked[(cid, seq)] = cmd   # it ran (it is in the log), without effect
            if cmd["op"] == "read":
                self._finish_op(c, "ok", None)   # a key never written reads null
            else:
                self._finish_op(c, "fail", compare_failed=True)
        elif body.get("code") == 11:
            # Not proposed: try the hinted leader (or anyone) a little later.
            c.target = body.get("leader") or self.rng.choice(self.ids)
            c.op.sent_at = self.step_no - self.request_timeout + 3
        else:
            self._finish_op(c, "info")

    # -- random schedules -----------------------------------------------------------------
    def random_step(self, p: dict[str, float]) -> None:
        """One random event. p: probabilities of drop, dup, crash, partition, heal (the rest
        are deliveries and ticks)."""
        self.step_no += 1
        x = self.rng.random()
        acc = 0.0
        for name in ("drop", "dup", "crash", "restart", "partition", "heal", "client"):
            acc += p.get(name, 0.0)
            if x < acc:
                break
        else:
            name = "deliver" if self.rng.random() < 0.75 else "tick"
        if name == "drop":
            self.drop()
        elif name == "dup":
            self.duplicate()
        elif name == "crash":
            alive = self.alive()
            if len(alive) > 1:
                self.crash(self.rng.choice(alive))
        elif name == "restart":
            dead = [i for i in self.ids if self.nodes[i] is None]
            if dead:
                self.restart(self.rng.choice(dead))
        elif name == "partition" and len(self.ids) > 1:
            ids = self.ids[:]
            self.rng.shuffle(ids)
            cut = self.rng.randrange(1, len(ids))
            self.partition(ids[:cut], ids[cut:])
        elif name == "heal":
            self.heal()
        elif name == "client":
            self.client_round()
        elif name == "deliver":
            if self.persisting and self.rng.random() < 0.3:
                self.finish_persist(self.rng.choice(list(self.persisting)))
            elif not self.deliver():
                self.tick(self.rng.choice(self.ids))
        else:
            self.tick(self.rng.choice(self.ids))

    def chaos_round(self, p: dict[str, float]) -> None:
        """One round of time under faults: most nodes tick (clocks drift), every in-flight
        message is delivered, dropped, duplicated or held back (so reordered), in random order;
        then maybe a crash, restart, partition or heal; then the clients act."""
        self.step_no += 1
        rng = self.rng
        for i in self.ids:
            if rng.random() < 0.9:
                self.tick(i)
        for i in list(self.persisting):
            if rng.random() < 0.6:
                self.finish_persist(i)
        msgs, self.net = self.net, []
        rng.shuffle(msgs)
        drop, dup, hold = p.get("drop", 0.0), p.get("dup", 0.0), p.get("hold", 0.2)
        for m in msgs:
            x = rng.random()
            if x < drop:
                continue
            if x < drop + hold:
                self.net.append(m)
                continue
            if x < drop + hold + dup:
                self.net.append(m)
            self.net.append(m)
            self.deliver(len(self.net) - 1)
        if rng.random() < p.get("crash", 0.0):
            alive = self.alive()
            if len(alive) > 1:
                self.crash(rng.choice(alive))
        if rng.random() < p.get("restart", 0.0):
            dead = [i for i in self.ids if self.nodes[i] is None]
            if dead:
                self.restart(rng.choice(dead))
        if rng.random() < p.get("partition", 0.0) and len(self.ids) > 1:
            ids = self.ids[:]
            rng.shuffle(ids)
            cut = rng.randrange(1, len(ids))
            self.partition(ids[:cut], ids[cut:])
        if rng.random() < p.get("heal", 0.0):
            self.heal()
        self.client_round()

    def stabilize(self, max_steps: int = 3000) -> bool:
        """Heal, restart everyone, run losslessly until all replicas agree on the log end."""
        self.heal()
        self.mid_crash_prob = 0.0
        self.clients_active = False
        for i in self.ids:
            self.restart(i)

        def settled() -> bool:
            ld = self.serving_leader()
            if ld is None:
                return False
            top = self.nodes[ld].chosen_upto  # type: ignore[union-attr]
            return all(self.nodes[i].applied == top for i in self.ids)  # type: ignore[union-attr]
        return self.run_until(settled, max_steps)

    # -- final checks ---------------------------------------------------------------------
    def check_safety(self) -> list[str]:
        problems = list(self.violations)
        # Every replica's current log agrees with everything ever chosen.
        for i in self.alive():
            r = self.nodes[i]
            for s, v in r.chosen.items():  # type: ignore[union-attr]
                if self.chosen.get(s) not in (None, canonical(v)):
                    problems.append(f"{i} holds slot {s} = {canonical(v)}")
        # Replicas at equal applied index have equal state.
        by_index: dict[int, set[str]] = {}
        for i in self.alive():
            r = self.nodes[i]
            by_index.setdefault(r.applied, set()).add(r.sm.digest())  # type: ignore[union-attr]
        for idx, digests in by_index.items():
            if len(digests) > 1:
                problems.append(f"replicas at applied {idx} differ: {sorted(digests)}")
        return problems

    def check_states(self) -> list[str]:
        """Each replica's state equals a fresh replay of the chosen log up to its applied index
        (through the session rule), snapshots included."""
        problems = []
        for i in self.alive():
            r = self.nodes[i]
            if r.applied < 0:  # type: ignore[union-attr]
                continue
            if any(s not in self.chosen_raw for s in range(r.applied + 1)):  # type: ignore
                continue
            ref = self.reference_state(r.applied).digest()  # type: ignore[union-attr]
            if ref != r.sm.digest():  # type: ignore[union-attr]
                problems.append(f"{i} state at {r.applied} differs from the log replay")  # type: ignore
        return problems

    def reference_state(self, upto: int) -> KV:
        kv = KV()
        for s in range(upto + 1):
            kv.apply(self.chosen_raw[s])
        return kv

    def check_acked(self) -> list[str]:
        """Every acknowledged update is in the chosen log (once, unless it was retried)."""
        problems = []
        slots: dict[tuple[str, int], list[int]] = {}
        for s, v in self.chosen_raw.items():
            if isinstance(v, dict) and v.get("op") in ("write", "cas", "add"):
                slots.setdefault((v["client"], v["seq"]), []).append(s)
        for key, cmd in self.acked.items():
            found = slots.get(key, [])
            if not found:
                problems.append(f"acknowledged {cmd} is not in the chosen log")
        for key, found in slots.items():
            if len(found) > 1:
                problems.append(f"{key} chosen in slots {found}")
        return problems
