"""Sans-IO Multi-Paxos replica (acceptor, learner and, when elected, leader in one object).

No sockets, no clock, no files, no asyncio: the driver (server.py, or a test's simulated network)
feeds inputs and carries out what comes back, like etcd-io/raft's Step/Tick/Ready/Advance:

    replica.step(msg)              a peer message (a decoded JSON object)
    replica.tick()                 one unit of time passed
    replica.propose(cmd, token)    a client command; may return an immediate reply
    rd = replica.ready()           what to do now (only if replica.has_ready())
        - send rd.early_messages and rd.early_replies (they depend on nothing unpersisted)
        - persist rd.records (+ rd.snapshot), fsync if rd.sync, atomically if rd.rewrite
        - then send rd.messages and rd.replies (they depend on those records)
    replica.advance(rd)            the records are durable
    replica.take_early()           optional, at any time (also while a Ready is being
                                   persisted): the early messages and replies produced since
                                   the last ready(), to send at once

A leader's own vote for a slot, and a candidate's own promise, only count at advance(): a quorum
never includes a vote that is not on disk. Everything else is ordered by the driver persisting
Ready N before it starts on Ready N+1.

Protocol summary (details at each handler):
- Ballots are (round, node_id); a node picks a round above every round it has seen, and its
  promised ballot is durable before any Prepare leaves, so a ballot is never reused, restarts
  included.
- Election: a follower that has not heard from a leader for its randomized election timeout
  first asks for pre-votes (no state change); only with a majority of pre-votes does it pick a
  new ballot and run Phase 1. Nodes that heard from a live leader within the minimum election
  timeout refuse pre-votes and Prepares from anyone else, so a node rejoining after a partition
  cannot depose a healthy leader.
- Takeover: one Phase 1 for every slot from the candidate's first unchosen one up. For each slot
  the highest-ballot accepted value reported is re-proposed, holes get no-ops, and clients are
  served only once all of these are chosen. A promise also reports the acceptor's snapshot index:
  slots compacted away there are chosen, and the new leader fetches them (catch-up) rather than
  re-proposing them.
- Steady state: Phase 2 only. Commands arriving together form one batch: one Accept per peer,
  one fsync. The commit point rides on every Accept and heartbeat; a follower marks slot s
  chosen when s <= commit and it accepted s at the leader's ballot (one ballot never proposes
  two values for a slot), and asks for catch-up otherwise.
- Replies carry the ballot they answer; a reply to another ballot is never counted.
- A leader that has not heard from a majority for the minimum election timeout steps down.
- Reads (ReadIndex, Multi-Paxos mode): no log write. The reads that arrived together get the
  leader's commit point (chosen_upto) and one confirmation round: a heartbeat carrying a new
  round number, which acceptors echo at the leader's ballot. Once a majority (the leader
  included) answered that round or a later one at this ballot, no other leader can have chosen
  anything the commit point misses, and the reads are answered as soon as the leader has applied
  through it. A new leader starts confirmation rounds only once its takeover slots (re-proposed
  values and no-ops) are chosen: before that its commit point can miss values the previous
  leader had chosen and acknowledged. In classic mode reads go through the log like updates.
- Client replies and heartbeat acknowledgements depend on nothing unpersisted (a reply follows
  a chosen slot, i.e. a majority's durable votes), so they are early: the driver sends them
  without waiting for the fsync in progress.
"""

from __future__ import annotations

import json
import random
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from node import messages, protocol
from node.kv import KV
from node.messages import Ballot

ZERO: Ballot = (0, "")
NOOP: dict[str, Any] = {"op": "noop"}
NEVER = -(10 ** 12)
RETAINED_SLOTS = 10_000
DURABLE_RETAINED_SLOTS = 1_000   # of those, kept in the log file across a restart

FOLLOWER = "follower"
PRECANDIDATE = "precandidate"
CANDIDATE = "candidate"
LEADER = "leader"


def fmt_ballot(b: Ballot) -> str:
    return f"{b[0]}.{b[1]}" if b[1] else "0"


def _key_of(v: Any) -> tuple[str, int] | None:
    if isinstance(v, dict) and v.get("op") != "noop" and "client" in v:
        return (v["client"], v["seq"])
    return None


@dataclass
class Config:
    node_id: str
    peers: list[str]
    election_ticks: int = 30
    heartbeat_ticks: int = 5
    snapshot_every: int = 10_000
    max_batch: int = 512
    max_inflight: int = 4096   # unchosen slots in flight (all followers together)
    window: int = 1024         # per follower: slots sent beyond what it is known to hold
    classic: bool = False
    bugs: frozenset[str] = frozenset()


@dataclass
class SnapshotOut:
    index: int
    data: str


@dataclass
class Ready:
    """One batch of work for the driver. See the module docstring for the order."""
    records: list[dict[str, Any]] = field(default_factory=list)
    sync: bool = False
    rewrite: bool = False
    snapshot: SnapshotOut | None = None
    early_messages: list[dict[str, Any]] = field(default_factory=list)
    early_replies: list[tuple[Any, dict[str, Any]]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    replies: list[tuple[Any, dict[str, Any]]] = field(default_factory=list)
    chosen: list[tuple[int, Any]] = field(default_factory=list)
    applied: list[tuple[int, Any]] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    self_accepts: list[tuple[Ballot, list[int]]] = field(default_factory=list)
    self_promise: Ballot | None = None

    def has_work(self) -> bool:
        return bool(self.records or self.snapshot or self.early_messages or self.messages
                    or self.early_replies or self.replies or self.chosen or self.applied
                    or self.events
                    or self.self_accepts or self.self_promise is not None)


@dataclass(slots=True)
class Proposal:
    value: Any
    acks: set[str] = field(default_factory=set)
    sent: int = NEVER


class Replica:
    """One Multi-Paxos replica. Single-threaded: call it from one thread (the event loop)."""

    def __init__(self, config: Config, rng: random.Random) -> None:
        self.cfg = config
        self.id = config.node_id
        self.peers = [p for p in config.peers if p != config.node_id]
        self.peer_set = set(self.peers)
        self.n = len(self.peers) + 1
        self.bugs = frozenset(config.bugs)
        # A majority, so any two quorums intersect. The small-quorum bug breaks exactly that.
        self.quorum = max(1, self.n // 2) if "small-quorum" in self.bugs else self.n // 2 + 1
        self.T = max(2, config.election_ticks)
        self.hb = max(1, min(config.heartbeat_ticks, self.T - 1))
        self.rng = rng
        self.volatile = "volatile-acceptor" in self.bugs

        # acceptor state (durable)
        self.promised: Ballot = ZERO
        self.accepted: dict[int, tuple[Ballot, Any]] = {}
        # learner state: chosen values above the snapshot (not necessarily contiguous)
        self.chosen: dict[int, Any] = {}
        # The latest compacted chosen values, kept only for the `log` admin request:
        # an observer polling the log sees every slot even though the node compacts (at most
        # RETAINED_SLOTS or one snapshot interval of entries; the newest
        # DURABLE_RETAINED_SLOTS of them also in the log file, so they survive a restart).
        self.retained: dict[int, Any] = {}
        self.chosen_upto = -1
        self.applied = -1
        self.snap_index = -1
        self.snapshot_data: str | None = None
        self.sm = KV(dedup="no-dedup" not in self.bugs)

        # time and roles
        self.now = 0
        self.role = FOLLOWER
        self.leader_id: str | None = None
        self.last_leader_contact = NEVER
        self.commit_seen = -1
        self.failed_elections = 0
        self.election_deadline = 0
        self.max_round = 0
        self.catchup_sent = NEVER

        # candidate / leader state
        self.ballot: Ballot = ZERO
        self.prevote_ballot: Ballot = ZERO
        self.prevotes: set[str] = set()
        self.prevote_rejects: set[str] = set()
        self.promises: dict[str, dict[str, Any]] = {}
        self.self_promised = False
        self.first_slot = 0
        self.phase_sent = NEVER
        self.preparing = False          # classic mode: a leader re-running Phase 1
        self.classic_ready = False
        self.serving = False
        self.leader_since = NEVER
        self.last_heartbeat = NEVER
        self.peer_ack: dict[str, int] = {}
        # Per-follower window (this term): the highest slot sent to a peer in an Accept, and
        # the highest it is known to hold (acknowledged, or reported chosen).
        self.peer_sent: dict[str, int] = {}
        self.peer_match: dict[str, int] = {}
        self.proposals: dict[int, Proposal] = {}
        self.unsent: list[int] = []
        self.next_slot = 0
        self.recovery_target = -1
        self.recovered: dict[int, tuple[Ballot, Any]] = {}
        self.catchup_need = -1
        self.catchup_sources: list[str] = []

        # clients
        self.queue: deque[dict[str, Any]] = deque()
        self.queued_keys: set[tuple[str, int]] = set()
        self.known_keys: dict[tuple[str, int], int] = {}   # proposed / chosen, not yet applied
        self.applied_keys: dict[tuple[str, int], int] = {}  # applied, still in the log
        self.waiting: dict[tuple[str, int], list[Hashable]] = {}
        self.token_key: dict[Hashable, tuple[str, int]] = {}
        # ReadIndex reads (leader): token -> key of every read not answered yet; reads not yet
        # in a confirmation round; (round, read index, token) waiting for their round to be
        # confirmed; (read index, token) confirmed, waiting for the leader to apply that far.
        self.read_tokens: dict[Hashable, Any] = {}
        self.reads_new: list[Hashable] = []
        self.reads_wait: deque[tuple[int, int, Hashable]] = deque()
        self.reads_ready: deque[tuple[int, Hashable]] = deque()
        self.read_round = 0                  # the latest confirmation round started
        self.peer_round: dict[str, int] = {}  # the latest round each peer answered, this ballot

        self.counters = {"elections": 0, "phase1_rounds": 0, "phase2_rounds": 0, "commits": 0,
                         "reads": 0, "read_rounds": 0, "messages_sent": 0, "window_full": 0,
                         "dropped_messages": 0, "snapshots_taken": 0, "snapshots_installed": 0}
        self.drop_logged: set[tuple[str, str]] = set()  # (sender, problem) already logged
        self.out = Ready()
        self._rec_promise: Ballot | None = None
        self._rec_acc: list[list[Any]] = []
        self._rec_chosen: list[list[Any]] = []
        self._reset_election_timer()

    # ------------------------------------------------------------------ recovery from disk --
    @classmethod
    def restore(cls, config: Config, rng: random.Random, snapshot: tuple[int, str] | None,
                records: list[Any]) -> Replica:
        """Rebuild a replica from its snapshot and write-ahead log records. Raises ValueError on
        a record this code did not write."""
        r = cls(config, rng)
        if snapshot is not None:
            index, data = snapshot
            r.sm = KV.from_snapshot(json.loads(data), dedup=r.sm.dedup)
            r.snap_index = r.applied = r.chosen_upto = index
            r.snapshot_data = data
        n_acc = n_chosen = 0
        try:
            for rec in records:
                t = rec["t"]
                if t == "prom":
                    if not r.volatile:
                        r.promised = max(r.promised, messages.ballot_of(rec["b"]))
                elif t == "acc":
                    if r.volatile:
                        continue
                    for s, b, v in rec["e"]:
                        b = messages.ballot_of(b)
                        if s > r.snap_index and (s not in r.accepted or b >= r.accepted[s][0]):
                            r.accepted[s] = (b, v)
                            n_acc += 1
                elif t == "chosen":
                    for s, v in rec["e"]:
                        if s > r.snap_index:
                            r.chosen[s] = v
                            n_chosen += 1
                        else:
                            r.retained[s] = v
                else:
                    raise ValueError(f"unknown record type {t!r}")
        except (KeyError, TypeError, ValueError, messages.BadMessage) as exc:
            raise ValueError(f"unreadable log record: {exc}") from None
        r.retained = dict(sorted(r.retained.items()))
        r.max_round = r.promised[0]
        r.ballot = r.promised if r.promised[1] == r.id else ZERO
        while r.chosen_upto + 1 in r.chosen:
            r.chosen_upto += 1
        for s, v in r.chosen.items():
            k = _key_of(v)
            if k is not None and s > r.chosen_upto:
                r.known_keys[k] = s
        r._apply(replying=False)
        r.out.applied.clear()
        r._event(f"recovered: snapshot at {r.snap_index}, promised {fmt_ballot(r.promised)}, "
                 f"{len(r.accepted)} accepted and {len(r.chosen)} chosen slots above it, "
                 f"applied through {r.applied}")
        return r

    # ------------------------------------------------------------------ driver interface --
    def has_ready(self) -> bool:
        self._flush()
        return (self.out.has_work() or self._rec_promise is not None or bool(self._rec_acc)
                or bool(self._rec_chosen))

    def take_early(self) -> tuple[list[dict[str, Any]], list[tuple[Any, dict[str, Any]]]]:
        """The early messages and early replies produced since the last ready() (new batches'
        Accepts, heartbeats and their acknowledgements, client replies), taken out so that the
        driver can send them now, even while it is still persisting an earlier Ready: they
        depend on nothing unpersisted. The rest waits for the next ready()."""
        self._flush()
        out = self.out
        msgs, replies = out.early_messages, out.early_replies
        out.early_messages = []
        out.early_replies = []
        return msgs, replies

    def _flush(self) -> None:
        self._flush_queue()
        self._flush_reads()
        self._flush_unsent()

    def ready(self) -> Ready:
        self._flush()
        rd = self.out
        self.out = Ready()
        if rd.snapshot is not None:
            # The new log is the whole durable state above the snapshot, so it supersedes the
            # records accumulated in this round.
            rd.records = self._wal_base()
            rd.rewrite = True
            rd.sync = True
        else:
            if self._rec_promise is not None:
                rd.records.append({"t": "prom", "b": self._rec_promise})
            if self._rec_acc:
                rd.records.append({"t": "acc", "e": self._rec_acc})
            if self._rec_chosen:
                rd.records.append({"t": "chosen", "e": self._rec_chosen})
        self._rec_promise = None
        self._rec_acc = []
        self._rec_chosen = []
        if "reply-before-fsync" in self.bugs:
            rd.early_messages.extend(rd.messages)
            rd.messages = []
        return rd

    def advance(self, rd: Ready) -> None:
        """rd's records are durable: count this node's own promise and votes."""
        if (rd.self_promise is not None and rd.self_promise == self.ballot
                and self._in_phase1()):
            self.self_promised = True
            self._check_phase1()
        for b, slots in rd.self_accepts:
            if self.role != LEADER or b != self.ballot:
                continue
            for s in slots:
                p = self.proposals.get(s)
                if p is not None:
                    p.acks.add(self.id)
                    self._check_chosen(s)

    def tick(self) -> None:
        self.now += 1
        if self.role == LEADER:
            if ("read-local" not in self.bugs and self.now - self.leader_since >= self.T
                    and not self._leader_healthy()):
                self._step_down("no word from a majority within the election timeout")
                self._reset_election_timer()
                return
            if self.now - self.last_heartbeat >= self.hb:
                self._heartbeat()
                if self.preparing:
                    self._resend_prepares()
                if self.catchup_need >= 0 and self.catchup_sources:
                    # rotate, in case the first source became unreachable
                    if self.now - self.catchup_sent >= 2 * self.hb:
                        self.catchup_sources.append(self.catchup_sources.pop(0))
                    self._maybe_catchup(self.catchup_sources[0])
        elif self.role == FOLLOWER:
            if self.now >= self.election_deadline:
                self._start_prevote()
            elif self.commit_seen > self.chosen_upto:
                self._maybe_catchup(self.leader_id)
        elif self.role == PRECANDIDATE:
            if self.now >= self.election_deadline:
                self._election_failed("no majority of pre-votes in time")
            elif self.now - self.phase_sent >= self.hb:
                self.phase_sent = self.now
                for p in self.peers:
                    if p not in self.prevotes:
                        self._send(p, {"type": "prevote", "ballot": self.prevote_ballot},
                                   early=True)
        elif self.role == CANDIDATE:
            if self.now >= self.election_deadline:
                self._election_failed(f"Phase 1 of ballot {fmt_ballot(self.ballot)} timed out")
            elif self.now - self.phase_sent >= self.hb:
                self._resend_prepares()

    def step(self, raw: Any) -> None:
        """Handle one peer message. Malformed or misaddressed messages are logged and dropped."""
        try:
            m = messages.parse(raw)
        except messages.BadMessage as exc:
            sender = raw.get("from") if isinstance(raw, dict) else None
            self._dropped(str(sender)[:64], f"malformed peer message: {exc}")
            return
        if m["to"] != self.id or m["from"] not in self.peer_set:
            self._dropped(m["from"], f"message {m['type']} from {m['from']!r} to {m['to']!r}")
            return
        for name in ("ballot", "promised"):
            node = m[name][1] if name in m else ""
            if node and node != self.id and node not in self.peer_set:
                self._dropped(m["from"], f"{m['type']} with a {name} of unknown node {node!r}")
                return
        if m["type"] not in ("prevote", "prevote_reply"):  # those carry a would-be ballot
            self._observe(m["ballot"])
        if "promised" in m:
            self._observe(m["promised"])
        getattr(self, "_on_" + m["type"])(m)

    def _dropped(self, sender: str, problem: str) -> None:
        """Count a dropped message; log each kind of problem once per sender (a flood of bad
        messages must not become a flood of log lines)."""
        self.counters["dropped_messages"] += 1
        kind = problem.split(":")[0] if ":" in problem else problem.split(" ")[1]
        if (sender, kind) not in self.drop_logged and len(self.drop_logged) < 1024:
            self.drop_logged.add((sender, kind))
            self._event(f"dropped {problem} (further ones like it are only counted)")

    def propose(self, cmd: dict[str, Any], token: Hashable) -> dict[str, Any] | None:
        """Submit a client command (as returned by protocol.parse_request). Returns an immediate
        reply, or None: the reply will come in a later Ready (or never: the driver times out)."""
        op = cmd["op"]
        if op == "read" and "read-local" in self.bugs and self.role == LEADER:
            return self.sm.read(cmd["key"])
        if self.role != LEADER:
            return protocol.error(protocol.UNAVAILABLE, "not the leader",
                                  leader=self.leader_id if self.role == FOLLOWER else None)
        if op == "read" and not self.cfg.classic:
            # ReadIndex: no slot, no session table (a read has no effect to de-duplicate).
            self.read_tokens[token] = cmd["key"]
            self.reads_new.append(token)
            return None
        key = (cmd["client"], cmd["seq"])
        dedup = "no-dedup" not in self.bugs
        if op != "read" and dedup:
            state, cached = self.sm.session_reply(*key)
            if state == "done":
                return cached
            if state == "stale":
                return protocol.error(protocol.MALFORMED,
                                      "seq is older than the client's last applied one")
        self.waiting.setdefault(key, []).append(token)
        self.token_key[token] = key
        if dedup and (key in self.known_keys or key in self.queued_keys):
            return None  # already on its way: answer both when it applies
        self.queue.append(cmd)
        self.queued_keys.add(key)
        return None

    def cancel(self, token: Hashable) -> None:
        """The driver gave up waiting (timeout or closed connection)."""
        if self.read_tokens.pop(token, None) is not None:
            return  # its entries in the read queues are skipped when they come up
        key = self.token_key.pop(token, None)
        if key is None:
            return
        lst = self.waiting.get(key)
        if lst is not None:
            try:
                lst.remove(token)
            except ValueError:
                pass
            if not lst:
                del self.waiting[key]

    # ------------------------------------------------------------------ admin --
    def status(self) -> dict[str, Any]:
        role = CANDIDATE if self.role == PRECANDIDATE else self.role
        return {
            "ok": True,
            "id": self.id,
            "role": role,
            "ballot": list(self.promised),
            "leader": self.leader_id,
            "serving": self.role == LEADER and self.serving,
            "chosen": self.chosen_upto,
            "applied": self.applied,
            "counters": dict(self.counters),
            "digest": self.sm.digest(),
            "bugs": sorted(self.bugs),
            "first": self.snap_index + 1,
            "inflight": len(self.proposals),
            "queued": len(self.queue),
            "reads_pending": len(self.read_tokens),
        }

    def log(self, start: int, limit: int) -> dict[str, Any]:
        first = self.snap_index + 1
        while first - 1 in self.retained:
            first -= 1
        lo = max(start, first)
        hi = min(self.chosen_upto, lo + limit - 1)
        return {"ok": True, "first": first,
                "entries": [{"slot": s, "value": self.chosen[s] if s in self.chosen
                             else self.retained[s]} for s in range(lo, hi + 1)]}

    # ------------------------------------------------------------------ helpers --
    def _event(self, text: str) -> None:
        self.out.events.append(text)

    def _send(self, to: str, msg: dict[str, Any], early: bool = False) -> None:
        msg["from"] = self.id
        msg["to"] = to
        msg.setdefault("ballot", self.promised)
        self.counters["messages_sent"] += 1
        (self.out.early_messages if early else self.out.messages).append(msg)

    def _reply(self, token: Hashable, body: dict[str, Any]) -> None:
        """A reply about something chosen (or an error about something that did not happen):
        it depends on nothing unpersisted."""
        self.out.early_replies.append((token, body))

    def _reply_late(self, token: Hashable, body: dict[str, Any]) -> None:
        """A reply that must wait for this Ready's records (only the ack-before-chosen bug's
        acknowledgement of a proposal, which at least waits for the leader's own vote)."""
        self.out.replies.append((token, body))

    def _observe(self, b: Ballot) -> None:
        if b[0] > self.max_round:
            self.max_round = b[0]

    def _in_phase1(self) -> bool:
        return self.role == CANDIDATE or (self.role == LEADER and self.preparing)

    def _reset_election_timer(self) -> None:
        if "no-election-jitter" in self.bugs:
            self.election_deadline = self.now + self.T
            return
        t = self.rng.randrange(self.T, 2 * self.T)
        if self.failed_elections:
            # Backoff: candidates that keep pre-empting each other spread out further.
            t += self.rng.randrange(0, self.T * min(self.failed_elections, 4) + 1)
        self.election_deadline = self.now + t

    def _lease_blocks(self, sender: str) -> bool:
        """Whether this node refuses to help `sender` become leader: it heard from another live
        leader within the minimum election timeout, or it is that healthy leader."""
        if self.role == LEADER:
            return sender != self.id and self._leader_healthy()
        return (self.leader_id is not None and self.leader_id != sender
                and self.now - self.last_leader_contact < self.T)

    def _leader_healthy(self) -> bool:
        heard = 1 + sum(1 for p in self.peers if self.now - self.peer_ack.get(p, NEVER) < self.T)
        return heard >= self.quorum

    def _persist_promise(self, b: Ballot) -> None:
        self.promised = b
        if not self.volatile:
            self._rec_promise = b
            self.out.sync = True

    def _persist_accept(self, s: int, b: Ballot, v: Any) -> None:
        self.accepted[s] = (b, v)
        if not self.volatile:
            self._rec_acc.append([s, b, v])
            self.out.sync = True

    def _wal_base(self) -> list[dict[str, Any]]:
        recs: list[dict[str, Any]] = []
        if not self.volatile:
            recs.append({"t": "prom", "b": self.promised})
            recs.append({"t": "acc", "e": [[s, b, v] for s, (b, v) in self.accepted.items()]})
        # The newest compacted values go along (restore puts them back in `retained`), so an
        # observer of the log loses none to a crash right after a compaction.
        keep = max(self.cfg.snapshot_every, DURABLE_RETAINED_SLOTS)
        tail = list(self.retained.items())[-keep:]
        recs.append({"t": "chosen", "e": [[s, v] for s, v in tail]
                     + [[s, v] for s, v in self.chosen.items()]})
        return recs

    def _step_down(self, reason: str) -> None:
        if self.role == LEADER:
            self._event(f"stepping down as leader of ballot {fmt_ballot(self.ballot)}: {reason}")
        elif self.role in (CANDIDATE, PRECANDIDATE):
            self._event(f"abandoning election: {reason}")
        self.role = FOLLOWER
        self.preparing = False
        self.classic_ready = False
        self.serving = False
        self.proposals.clear()
        self.unsent = []
        self.promises = {}
        self.prevotes = set()
        self.recovered = {}
        self.catchup_need = -1
        if self.leader_id == self.id:
            self.leader_id = None
        self.known_keys = {}
        for s, v in self.chosen.items():
            k = _key_of(v)
            if k is not None and s > self.applied:
                self.known_keys[k] = s
        # Queued commands were never proposed: they certainly did not happen.
        for cmd in self.queue:
            key = (cmd["client"], cmd["seq"])
            for t in self.waiting.pop(key, []):
                self.token_key.pop(t, None)
                self._reply(t, protocol.error(protocol.UNAVAILABLE, "leader stepped down",
                                              leader=None))
        self.queue.clear()
        self.queued_keys.clear()
        self._fail_reads("leader stepped down")
        self.peer_round = {}

    def _fail_reads(self, why: str) -> None:
        """Reads not answered yet: they had no effect, so they definitely did not happen."""
        for t in self.read_tokens:
            self._reply(t, protocol.error(protocol.UNAVAILABLE, why, leader=None))
        self.read_tokens.clear()
        self.reads_new = []
        self.reads_wait.clear()
        self.reads_ready.clear()

    def _preempted(self, b: Ballot) -> None:
        self._observe(b)
        self._step_down(f"pre-empted by ballot {fmt_ballot(b)}")
        self.failed_elections += 1
        self._reset_election_timer()

    # ------------------------------------------------------------------ elections --
    def _start_prevote(self) -> None:
        if self.role == LEADER:
            return
        self.role = PRECANDIDATE
        self.leader_id = None
        self.promises = {}
        self.prevote_ballot = (max(self.promised[0], self.max_round) + 1, self.id)
        self.prevotes = {self.id}
        self.prevote_rejects = set()
        self.phase_sent = self.now
        self._reset_election_timer()
        if len(self.prevotes) >= self.quorum:
            self._start_phase1()
            return
        for p in self.peers:
            self._send(p, {"type": "prevote", "ballot": self.prevote_ballot}, early=True)

    def _on_prevote(self, m: dict[str, Any]) -> None:
        # Only an idle follower grants: a (pre)candidate is busy with its own attempt, and
        # randomized timeouts break the tie between simultaneous ones.
        granted = self.role == FOLLOWER and not self._lease_blocks(m["from"])
        self._send(m["from"], {"type": "prevote_reply", "ballot": m["ballot"],
                               "granted": granted, "promised": self.promised,
                               "leader": self.leader_id}, early=True)

    def _on_prevote_reply(self, m: dict[str, Any]) -> None:
        if self.role != PRECANDIDATE or m["ballot"] != self.prevote_ballot:
            return
        if not m["granted"]:
            self.prevote_rejects.add(m["from"])
            if (len(self.prevote_rejects) > self.n - self.quorum
                    and "no-election-jitter" not in self.bugs):
                self._election_failed("pre-vote refused by a majority")
            return
        self.prevotes.add(m["from"])
        if len(self.prevotes) >= self.quorum:
            self._start_phase1()

    def _election_failed(self, reason: str) -> None:
        # Back to follower, so that this node grants the next pre-vote it sees, and wait a
        # fresh random (and growing) timeout: this is what breaks ties between nodes that keep
        # starting elections at the same moment.
        self._step_down(reason)
        self.failed_elections += 1
        self._reset_election_timer()
        if "no-election-jitter" in self.bugs:
            self._start_prevote()   # no backoff: straight into the next attempt

    def _start_phase1(self, reprepare: bool = False) -> None:
        rnd = max(self.promised[0], self.max_round) + 1
        self.max_round = rnd
        self.ballot = (rnd, self.id)
        self._persist_promise(self.ballot)
        if reprepare:
            self.preparing = True
        else:
            self.role = CANDIDATE
            self.counters["elections"] += 1
            self._event(f"starting election with ballot {fmt_ballot(self.ballot)}")
            self._reset_election_timer()
        self.counters["phase1_rounds"] += 1
        self.promises = {}
        self.self_promised = False
        self.first_slot = self.chosen_upto + 1
        self.out.self_promise = self.ballot
        self.phase_sent = self.now
        for p in self.peers:
            self._send(p, {"type": "prepare", "ballot": self.ballot, "first": self.first_slot})

    def _resend_prepares(self) -> None:
        self.phase_sent = self.now
        for p in self.peers:
            if p not in self.promises:
                self._send(p, {"type": "prepare", "ballot": self.ballot,
                               "first": self.first_slot})

    def _on_prepare(self, m: dict[str, Any]) -> None:
        b, frm = m["ballot"], m["from"]
        if b < self.promised or self._lease_blocks(frm):
            self._send(frm, {"type": "promise", "ballot": b, "ok": False,
                             "promised": self.promised, "accepted": [], "snap": self.snap_index,
                             "chosen": self.chosen_upto})
            return
        if b > self.promised:
            if self.role != FOLLOWER:
                self._preempted(b)
            self._persist_promise(b)
            if frm != self.leader_id:
                self.leader_id = None
            else:
                self.last_leader_contact = self.now
            self._reset_election_timer()
        first = m["first"]
        acc = [[s, ab, v] for s, (ab, v) in self.accepted.items() if s >= first]
        self._send(frm, {"type": "promise", "ballot": b, "ok": True, "promised": self.promised,
                         "accepted": acc, "snap": self.snap_index, "chosen": self.chosen_upto})

    def _on_promise(self, m: dict[str, Any]) -> None:
        if not self._in_phase1() or m["ballot"] != self.ballot:
            return  # an answer to an older attempt
        if not m["ok"]:
            if m["promised"] > self.ballot:
                self._preempted(m["promised"])
            return
        self.promises[m["from"]] = m
        self._check_phase1()

    def _check_phase1(self) -> None:
        if self.self_promised and len(self.promises) + 1 >= self.quorum:
            self._phase1_done()

    def _phase1_done(self) -> None:
        was_leader = self.role == LEADER
        self.role = LEADER
        self.preparing = False
        self.leader_id = self.id
        if not was_leader:
            self.leader_since = self.now
            self.failed_elections = 0
            self.serving = False
            self.peer_round = {}
            self.peer_sent = {}
            self.peer_match = {}
            for p in self.peers:
                self.peer_ack[p] = self.now
            self._event(f"elected leader with ballot {fmt_ballot(self.ballot)}; recovering "
                        f"from slot {self.first_slot}")
        for p in self.promises:
            self.peer_ack[p] = self.now
        recovered: dict[int, tuple[Ballot, Any]] = {}
        sources: list[list[Any]] = [
            [(s, b, v) for s, (b, v) in self.accepted.items() if s >= self.first_slot]]
        need = -1
        if "skip-recovery" not in self.bugs:
            sources += [p["accepted"] for p in self.promises.values()]
            need = max([p["snap"] for p in self.promises.values()] + [-1])
        for src in sources:
            for s, b, v in src:
                if s > self.chosen_upto and (s not in recovered or b > recovered[s][0]):
                    recovered[s] = (b, v)
        self.recovered = recovered
        self.catchup_need = need
        if need > self.chosen_upto:
            # Some acceptor compacted slots we have not learned: they are chosen, and their
            # values are only in its snapshot. Fetch it rather than guess.
            self.catchup_sources = sorted(
                (p for p in self.promises if self.promises[p]["chosen"] >= need),
                key=lambda p: -self.promises[p]["chosen"])
            self.catchup_sent = NEVER
            self._event(f"leader must learn slots through {need} (compacted on "
                        f"{', '.join(self.catchup_sources)}) before recovering")
            self._maybe_catchup(self.catchup_sources[0])
        else:
            self._takeover()
        if not self.unsent:
            self._heartbeat()

    def _takeover(self) -> None:
        self.catchup_need = -1
        recovered = self.recovered
        self.recovered = {}
        hi = max([self.chosen_upto, *recovered, *self.chosen])
        if "no-dedup" not in self.bugs:
            self._drop_duplicate_copies(recovered)
        n_values = n_noops = 0
        for s in range(self.chosen_upto + 1, hi + 1):
            if s in self.chosen:
                continue
            if s in recovered:
                value = recovered[s][1]
                n_values += 1
            else:
                value = NOOP
                n_noops += 1
            self._propose(s, value)
        self.next_slot = hi + 1
        self.recovery_target = hi
        if n_values or n_noops:
            self._event(f"re-proposing {n_values} recovered values and {n_noops} no-ops "
                        f"through slot {hi}")
        if "no-takeover-noop" in self.bugs and not self.serving:
            # The bug: serve at once. Reads get this leader's commit point, which can miss the
            # values the previous leader chose (and acknowledged) in the slots re-proposed here.
            self.serving = True
            self._event(f"serving clients from slot {self.next_slot} before the takeover "
                        f"slots through {hi} are chosen (bug no-takeover-noop)")
        if self.cfg.classic:
            self.classic_ready = True
        self._check_serving()

    def _drop_duplicate_copies(self, recovered: dict[int, tuple[Ballot, Any]]) -> None:
        """A client command can be in two slots: leader A proposed it, A lost leadership, leader
        B (whose quorum missed A's slot) proposed the client's retry elsewhere, and now both
        copies are reported. Only one may be chosen, or the retry would be in the log twice.

        Rule: keep only the copy with the highest reported ballot; none at all if this node
        knows the command is chosen already. Why it is safe (by induction over ballots, given
        every leader follows the rule and never proposes a command it knows of afresh): if the
        lower-ballot copy at slot s1 had been chosen, at some ballot <= its reported one, then
        the leader that proposed the higher-ballot copy ran Phase 1 after that and saw the
        command at s1 (quorum intersection); it could then only have re-proposed the s2 copy
        by keeping it over s1's under this same rule, i.e. with s1's copy never chosen."""
        copies: dict[tuple[str, int], list[tuple[Ballot, int]]] = {}
        for s, (b, v) in recovered.items():
            k = _key_of(v)
            # Reads are exempt: they are re-proposed freely (they bypass the session table),
            # and a read in two slots is harmless.
            if (k is not None and v["op"] != "read" and s > self.chosen_upto
                    and s not in self.chosen):
                copies.setdefault(k, []).append((b, s))
        for k, lst in copies.items():
            known = (k in self.known_keys or k in self.applied_keys
                     or self.sm.session_reply(*k)[0] == "done")
            if len(lst) < 2 and not known:
                continue
            top = max(b for b, _ in lst)
            for b, s in lst:
                # A tie cannot happen (no leader proposes a command twice in one ballot); if it
                # did, plain Paxos (keep every highest-ballot value) is the safe answer.
                if known or b < top:
                    recovered[s] = (b, NOOP)
                    where = "an applied slot" if known else "a slot with a higher ballot"
                    self._event(f"slot {s}: {k} is also in {where}; re-proposing a no-op here")

    def _check_serving(self) -> None:
        if (self.role == LEADER and not self.serving and self.catchup_need < 0
                and self.chosen_upto >= self.recovery_target):
            self.serving = True
            self._event(f"serving clients from slot {self.next_slot}")

    # ------------------------------------------------------------------ phase 2 --
    def _propose(self, s: int, value: Any) -> None:
        self.proposals[s] = Proposal(value)
        self._persist_accept(s, self.ballot, value)
        self.unsent.append(s)
        k = _key_of(value)
        if k is not None:
            self.known_keys[k] = s

    def _flush_queue(self) -> None:
        if self.role != LEADER or not self.serving or self.preparing or not self.queue:
            return
        limit = self.cfg.max_inflight
        if self.cfg.classic:
            if not self.classic_ready:
                if not self.proposals:
                    self._start_phase1(reprepare=True)
                return
            self.classic_ready = False
            limit = len(self.proposals) + 1   # one slot per Phase 1: single-decree per slot
        ack_early = "ack-before-chosen" in self.bugs
        while self.queue and len(self.proposals) < limit:
            cmd = self.queue.popleft()
            key = (cmd["client"], cmd["seq"])
            self.queued_keys.discard(key)
            if key not in self.waiting:
                continue  # every requester gave up before it was proposed: never propose it
            if "no-dedup" not in self.bugs and key in self.known_keys:
                continue  # a takeover found it in the log meanwhile: it is answered from there
            s = self.next_slot
            self.next_slot += 1
            self._propose(s, cmd)
            if ack_early and cmd["op"] != "read":
                for t in self.waiting.pop(key, []):
                    self.token_key.pop(t, None)
                    self._reply_late(t, {"ok": True})

    def _flush_unsent(self) -> None:
        if not self.unsent:
            return
        slots = sorted(self.unsent)
        self.unsent = []
        if self.role != LEADER:
            return
        entries = [[s, self.proposals[s].value] for s in slots if s in self.proposals]
        step = self.cfg.max_batch
        # The same chunk objects for every peer (a driver may encode each chunk only once).
        chunks = [entries] if len(entries) <= step else [
            entries[i:i + step] for i in range(0, len(entries), step)]
        top = slots[-1]
        for p in self.peers:
            # Per-follower window: a follower that is far behind (slow, paused, cut off) gets
            # no more entries, only heartbeats; what it misses that gets chosen meanwhile it
            # fetches through catch-up, and what is still unchosen goes out again with the
            # heartbeats once it has caught up.
            if self.peer_sent.get(p, -1) - self.peer_match.get(p, -1) >= self.cfg.window:
                self.counters["window_full"] += 1
                continue
            self.peer_sent[p] = top
            for chunk in chunks:
                self._send(p, {"type": "accept", "ballot": self.ballot, "entries": chunk,
                               "commit": self.chosen_upto, "read": self.read_round},
                           early=True)
        for s in slots:
            if s in self.proposals:
                self.proposals[s].sent = self.now
        self.counters["phase2_rounds"] += 1
        self.out.self_accepts.append((self.ballot, slots))

    def _heartbeat(self) -> None:
        """Heartbeat every peer with the commit point, re-sending what it has not acknowledged."""
        self.last_heartbeat = self.now
        stale = sorted(s for s, p in self.proposals.items() if self.now - p.sent >= self.hb)
        resent: set[int] = set()
        for peer in self.peers:
            entries = []
            for s in stale:
                p = self.proposals[s]
                if peer not in p.acks:
                    entries.append([s, p.value])
                    resent.add(s)
                    if len(entries) >= self.cfg.max_batch:
                        break
            self._send(peer, {"type": "accept", "ballot": self.ballot, "entries": entries,
                              "commit": self.chosen_upto, "read": self.read_round}, early=True)
        for s in resent:
            self.proposals[s].sent = self.now

    # ------------------------------------------------------------------ reads --
    def _flush_reads(self) -> None:
        """Start one confirmation round for the reads that arrived since the last one."""
        if not self.reads_new or self.role != LEADER or not self.serving:
            return  # a new leader's reads wait for its takeover (or fail if it steps down)
        self.read_round += 1
        self.counters["read_rounds"] += 1
        r, idx = self.read_round, self.chosen_upto
        for t in self.reads_new:
            self.reads_wait.append((r, idx, t))
        self.reads_new = []
        # A bare heartbeat, even when Accepts go out too: acceptors acknowledge it without
        # waiting for their fsync.
        for peer in self.peers:
            self._send(peer, {"type": "accept", "ballot": self.ballot, "entries": [],
                              "commit": self.chosen_upto, "read": r}, early=True)
        self._confirm_reads()

    def _confirm_reads(self) -> None:
        if not self.reads_wait:
            return
        rounds = sorted([self.read_round] + [self.peer_round.get(p, 0) for p in self.peers],
                        reverse=True)
        confirmed = rounds[self.quorum - 1]
        while self.reads_wait and self.reads_wait[0][0] <= confirmed:
            _, idx, t = self.reads_wait.popleft()
            if t in self.read_tokens:
                self.reads_ready.append((idx, t))
        self._answer_reads()

    def _answer_reads(self) -> None:
        while self.reads_ready and self.reads_ready[0][0] <= self.applied:
            _, t = self.reads_ready.popleft()
            key = self.read_tokens.pop(t, None)
            if key is not None:
                self.counters["reads"] += 1
                self._reply(t, self.sm.read(key))

    def _on_accept(self, m: dict[str, Any]) -> None:
        b, frm = m["ballot"], m["from"]
        lower = b < self.promised
        if lower and "accept-lower-ballot" not in self.bugs:
            self._send(frm, {"type": "accepted", "ballot": b, "ok": False, "slots": [],
                             "promised": self.promised, "chosen": self.chosen_upto})
            return
        if not lower:
            if b > self.promised:
                # Accepting raises the promise (and must be durable like one).
                if self.role != FOLLOWER:
                    self._step_down(f"following {frm} at ballot {fmt_ballot(b)}")
                self._persist_promise(b)
            elif self.role != FOLLOWER:
                self._step_down(f"following {frm} at ballot {fmt_ballot(b)}")
            if self.leader_id != frm:
                self._event(f"following leader {frm} at ballot {fmt_ballot(b)}")
                self.leader_id = frm
            self.last_leader_contact = self.now
            self.failed_elections = 0
            self._reset_election_timer()
        # A bare heartbeat at the promised ballot changes nothing durable here, so its
        # acknowledgement need not wait for the fsync in progress (or any).
        early = not m["entries"] and b == self.promised and self._rec_promise is None
        slots = []
        for s, v in m["entries"]:
            if s > self.snap_index:
                self._persist_accept(s, b, v)
            slots.append(s)
        if not lower:
            self._learn_commit(b, m["commit"], frm)
        self._send(frm, {"type": "accepted", "ballot": b, "ok": True, "slots": slots,
                         "promised": self.promised, "chosen": self.chosen_upto,
                         "read": m["read"]}, early=early)

    def _learn_commit(self, b: Ballot, commit: int, frm: str) -> None:
        if commit > self.commit_seen:
            self.commit_seen = commit
        # Bounded scan: a replica far behind gets the rest through catch-up.
        s = self.chosen_upto + 1
        top = min(commit, s + 8192)
        while s <= top:
            if s not in self.chosen:
                a = self.accepted.get(s)
                if a is not None and a[0] == b:
                    self._learn(s, a[1])
            s += 1
        if self.chosen_upto < commit:
            self._maybe_catchup(frm)

    def _on_accepted(self, m: dict[str, Any]) -> None:
        if self.role != LEADER:
            return
        if not m["ok"]:
            if m["promised"] > self.ballot:
                self._preempted(m["promised"])
            return
        if m["ballot"] != self.ballot:
            return  # answers an older ballot: never counted
        frm = m["from"]
        self.peer_ack[frm] = self.now
        held = max(m["chosen"], m["slots"][-1] if m["slots"] else -1)
        if held > self.peer_match.get(frm, -1):
            self.peer_match[frm] = held
        for s in m["slots"]:
            p = self.proposals.get(s)
            if p is not None:
                p.acks.add(frm)
                self._check_chosen(s)
        if m["read"] > self.peer_round.get(frm, 0):
            self.peer_round[frm] = m["read"]
            self._confirm_reads()

    def _check_chosen(self, s: int) -> None:
        p = self.proposals.get(s)
        if p is not None and len(p.acks) >= self.quorum:
            del self.proposals[s]
            self._learn(s, p.value)

    # ------------------------------------------------------------------ learning --
    def _learn(self, s: int, v: Any) -> None:
        if s <= self.snap_index:
            return
        old = self.chosen.get(s)
        if old is not None:
            if old != v:
                self._event(f"CONFLICT: slot {s} learned as {v!r} but already chosen as {old!r}")
            return
        chosen = self.chosen
        chosen[s] = v
        self._rec_chosen.append([s, v])
        self.out.chosen.append((s, v))
        self.counters["commits"] += 1
        up = self.chosen_upto
        if s != up + 1:
            k = _key_of(v)
            if k is not None:
                self.known_keys.setdefault(k, s)   # chosen, not applied yet: a hole before it
            return
        up = s
        while up + 1 in chosen:
            up += 1
        self.chosen_upto = up
        self._apply()
        if self.role == LEADER and not self.serving:
            self._check_serving()

    def _apply(self, replying: bool = True) -> None:
        chosen, sm_apply, applied_out = self.chosen, self.sm.apply, self.out.applied
        known, waiting = self.known_keys, self.waiting
        while self.applied < self.chosen_upto:
            s = self.applied + 1
            v = chosen[s]
            result = sm_apply(v)
            self.applied = s
            applied_out.append((s, v))
            op = v.get("op")
            if op == "noop" or "client" not in v:
                continue
            k = (v["client"], v["seq"])
            if op != "read":
                self.applied_keys[k] = s
            if known.get(k) == s:
                del known[k]
            tokens = waiting.pop(k, None)
            if tokens:
                for t in tokens:
                    self.token_key.pop(t, None)
                    if result is not None and replying:
                        self._reply(t, result)
        if self.reads_ready:
            self._answer_reads()
        if self.applied - self.snap_index >= self.cfg.snapshot_every:
            self._take_snapshot()

    def _take_snapshot(self) -> None:
        idx = self.applied
        data = json.dumps(self.sm.snapshot(), separators=(",", ":"))
        self._compact(idx, data)
        self.out.snapshot = SnapshotOut(idx, data)
        self.counters["snapshots_taken"] += 1
        self._event(f"snapshot through slot {idx} ({len(data)} bytes); log truncated")

    def _compact(self, idx: int, data: str) -> None:
        self.snap_index = idx
        self.snapshot_data = data
        for s in [s for s in self.accepted if s <= idx]:
            del self.accepted[s]
        for s in sorted(s for s in self.chosen if s <= idx):
            self.retained[s] = self.chosen.pop(s)
        floor = idx - max(self.cfg.snapshot_every, RETAINED_SLOTS)
        while self.retained:  # in slot order: compaction inserts them so
            oldest = next(iter(self.retained))
            if oldest > floor:
                break
            del self.retained[oldest]
        self.applied_keys = {k: s for k, s in self.applied_keys.items() if s > idx}

    def _maybe_catchup(self, target: str | None) -> None:
        if target is None or target == self.id or target not in self.peer_set:
            return
        if self.now - self.catchup_sent < 2 * self.hb:
            return  # one outstanding request at a time
        self.catchup_sent = self.now
        self._send(target, {"type": "catchup", "from_slot": self.chosen_upto + 1}, early=True)

    def _on_catchup(self, m: dict[str, Any]) -> None:
        f = m["from_slot"]
        frm = m["from"]
        if f <= self.snap_index and self.snapshot_data is not None:
            self._send(frm, {"type": "snapshot", "index": self.snap_index,
                             "data": self.snapshot_data}, early=True)
            f = self.snap_index + 1
        entries = []
        s = f
        while s <= self.chosen_upto and len(entries) < self.cfg.max_batch:
            entries.append([s, self.chosen[s]])
            s += 1
        self._send(frm, {"type": "learn", "entries": entries, "commit": self.chosen_upto},
                   early=True)

    def _on_learn(self, m: dict[str, Any]) -> None:
        for s, v in m["entries"]:
            self._learn(s, v)
        if m["commit"] > self.commit_seen:
            self.commit_seen = m["commit"]
        self._after_catchup(m["from"], bool(m["entries"]), m["commit"])

    def _after_catchup(self, frm: str, progressed: bool, their_commit: int) -> None:
        if self.role == LEADER and self.catchup_need >= 0:
            if self.chosen_upto >= self.catchup_need:
                self._takeover()
                return
        if progressed and self.chosen_upto < their_commit:
            self.catchup_sent = NEVER  # keep streaming while it has more
            self._maybe_catchup(frm)

    def _on_snapshot(self, m: dict[str, Any]) -> None:
        idx = m["index"]
        if idx <= self.applied:
            return
        try:
            sm = KV.from_snapshot(json.loads(m["data"]), dedup=self.sm.dedup)
        except (ValueError, RecursionError) as exc:
            self._event(f"dropped bad snapshot from {m['from']}: {exc}")
            return
        self.sm = sm
        self.applied = idx
        self.chosen_upto = idx
        self._compact(idx, m["data"])
        while self.chosen_upto + 1 in self.chosen:
            self.chosen_upto += 1
        self.out.snapshot = SnapshotOut(idx, m["data"])
        self.counters["snapshots_installed"] += 1
        self._event(f"installed snapshot through slot {idx} from {m['from']}")
        # Commands inside the snapshot can still be answered from the session table.
        for key in list(self.waiting):
            state, cached = self.sm.session_reply(*key)
            if state == "done" and cached is not None:
                for t in self.waiting.pop(key):
                    self.token_key.pop(t, None)
                    self._reply(t, cached)
        self.known_keys = {k: s for k, s in self.known_keys.items() if s > idx}
        self._apply()
        self._after_catchup(m["from"], True, idx)
