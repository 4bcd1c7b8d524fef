"""What a fault is: the kinds, their shapes, and how targets follow from the cluster.

A partition is a set of cut directed edges (src's messages do not reach dst). Shapes that need
the leader take it at run time; every random choice comes from the rng passed in, so a seed fixes
the whole schedule.
"""

from __future__ import annotations

import random

Edge = tuple[str, str]

# kind -> shapes it can take; `--nemesis` names kinds.
KINDS: dict[str, tuple[str, ...]] = {
    "partition": ("isolate-one", "isolate-leader", "halves", "majorities-ring", "bridge",
                  "one-way", "lagging-takeover", "deposed-bridge"),
    "pause": ("one", "leader", "minority", "stall-leader"),
    "kill": ("one", "leader", "minority", "all"),
    "delay": ("all-links", "one-node", "leader", "lossy-links", "lossy-node"),
    "disk": ("followers", "one", "leader", "all", "lose-unsynced", "power-cut"),
}
ALIASES = {"packet": "delay", "crash": "kill"}
# Which backend capability each kind needs.
CAPABILITY = {"partition": "partition", "pause": "pause", "kill": "kill", "delay": "delay",
              "disk": "disk"}
# Shapes that need more than their kind's capability.
SHAPE_CAPABILITIES = {"stall-leader": ("pause", "delay"),
                      "deposed-bridge": ("delay", "one-way"),
                      # a cut in one direction only: a backend that can only cut both ways
                      # (etcd in Docker) must refuse these rather than run another fault
                      "one-way": ("one-way",), "lagging-takeover": ("one-way",),
                      # a crash that takes the page cache with it (LazyFS)
                      "lose-unsynced": ("lose-unsynced",), "power-cut": ("lose-unsynced",),
                      # whole messages dropped on a link (a proxy that knows the framing)
                      "lossy-links": ("loss",), "lossy-node": ("loss",)}
# Shapes that ask the system who leads (a system that cannot say cannot have them).
LEADER_SHAPES = frozenset({"isolate-leader", "lagging-takeover", "deposed-bridge", "leader",
                           "stall-leader", "followers"})
# Shapes that need the system to keep what it acknowledged across a restart of every member.
DURABLE_SHAPES = frozenset({("kill", "all"), ("disk", "power-cut")})
# Disk shapes that crash their targets, dropping what they wrote but never synced: a minority
# of the nodes, or every node at once (a power cut). The others slow the disk down.
CRASH_SHAPES = frozenset({"lose-unsynced", "power-cut"})
# Targeted shapes a kind takes only when named (`partition:deposed-bridge`): a kind named
# without shapes keeps its general-purpose ones, so existing specs and seeds plan as before.
NAMED_ONLY = frozenset({"deposed-bridge", "stall-leader", "lossy-links", "lossy-node"})
# Delay shapes that drop messages (each with the run's --loss probability) instead of slowing
# them: on every link, or on one node's links.
LOSS_SHAPES = frozenset({"lossy-links", "lossy-node"})


def capabilities(spec: dict[str, tuple[str, ...]]) -> set[str]:
    """What a backend must be able to do for this nemesis spec."""
    needed = {CAPABILITY[kind] for kind in spec}
    for shapes in spec.values():
        for shape in shapes:
            needed.update(SHAPE_CAPABILITIES.get(shape, ()))
    return needed


def system_needs(spec: dict[str, tuple[str, ...]]) -> dict[str, str]:
    """What a nemesis spec needs of the system under test: {capability: the shape that
    needs it}."""
    needs: dict[str, str] = {}
    for kind, shapes in spec.items():
        for shape in shapes:
            if shape in LEADER_SHAPES:
                needs.setdefault("leader", f"{kind}:{shape}")
            if (kind, shape) in DURABLE_SHAPES:
                needs.setdefault("durable", f"{kind}:{shape}")
    return needs


class NemesisError(ValueError):
    pass


def parse_spec(text: str) -> dict[str, tuple[str, ...]]:
    """`partition,pause:leader,kill:one/all` -> {kind: shapes}; a kind without shapes takes
    all of its shapes; `none` or empty -> no faults."""
    spec: dict[str, tuple[str, ...]] = {}
    for raw in filter(None, (part.strip() for part in text.split(","))):
        if raw == "none":
            continue
        name, _, shapes_text = raw.partition(":")
        kind = ALIASES.get(name, name)
        if kind not in KINDS:
            raise NemesisError(
                f"unknown nemesis {name!r}; choose from {', '.join([*KINDS, 'none'])}"
            )
        shapes = tuple(s for s in shapes_text.split("/") if s) or tuple(
            s for s in KINDS[kind] if s not in NAMED_ONLY)
        for shape in shapes:
            if shape not in KINDS[kind]:
                raise NemesisError(f"unknown {kind} shape {shape!r}; choose from "
                                   f"{', '.join(KINDS[kind])}")
        spec[kind] = tuple(dict.fromkeys(spec.get(kind, ()) + shapes))
    return spec


def without_leader_shapes(text: str) -> str:
    """The spec for a system that names no leader: each kind named without shapes gets its
    shapes that need none, written out (so the stored configuration says what ran)."""
    parts = []
    for raw in filter(None, (part.strip() for part in text.split(","))):
        name, sep, _ = raw.partition(":")
        kind = ALIASES.get(name, name)
        if sep or kind not in KINDS:
            parts.append(raw)
            continue
        shapes = [s for s in KINDS[kind] if s not in NAMED_ONLY and s not in LEADER_SHAPES]
        parts.append(f"{name}:{'/'.join(shapes)}")
    return ",".join(parts)


def parse_kinds(text: str) -> list[str]:
    """The fault kinds named in a nemesis spec."""
    return list(parse_spec(text))


def minority_size(n: int) -> int:
    return (n - 1) // 2


def isolate(node: str, nodes: list[str]) -> set[Edge]:
    return {(a, b) for a in nodes for b in nodes if a != b and node in (a, b)}


def split(group_a: list[str], group_b: list[str]) -> set[Edge]:
    return {(a, b) for a in group_a for b in group_b} | {(b, a) for a in group_a for b in group_b}


def halves(nodes: list[str], rng: random.Random) -> set[Edge]:
    shuffled = rng.sample(nodes, len(nodes))
    k = len(nodes) // 2
    return split(shuffled[:k], shuffled[k:])


def bridge(nodes: list[str], rng: random.Random) -> set[Edge]:
    """Two sides that cannot talk, and one node in the middle that talks to both."""
    shuffled = rng.sample(nodes, len(nodes))
    rest = shuffled[1:]
    k = len(rest) // 2
    return split(rest[:k], rest[k:])


def majorities_ring(nodes: list[str], rng: random.Random) -> set[Edge]:
    """Each node sees a majority (its ring neighbours), and no two see the same one.

    With fewer than five nodes every pair is within reach of a majority ring, so this
    falls back to a bridge, which is its nearest equivalent there.
    """
    n = len(nodes)
    if n < 5:
        return bridge(nodes, rng)
    ring = rng.sample(nodes, n)
    reach = (n // 2 + 1) // 2  # neighbours on each side; with itself, a majority
    cut: set[Edge] = set()
    for i, a in enumerate(ring):
        for j, b in enumerate(ring):
            distance = min((i - j) % n, (j - i) % n)
            if a != b and distance > reach:
                cut.add((a, b))
    return cut


def one_way(source: str, nodes: list[str]) -> set[Edge]:
    """`source` hears everyone, nobody hears `source`."""
    return {(source, b) for b in nodes if b != source}
