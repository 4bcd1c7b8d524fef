"""Harness-owned TCP proxies, one per directed peer link, so a fault can cut or slow one direction.

Node i dials peer j at the proxy of edge (i, j); the proxy forwards to j's real address. A cut
closes the edge's connections and then accepts new ones into a black hole (like an iptables DROP:
the dialer believes it is connected, nothing arrives). Closing on cut and on heal keeps message
framing intact: a peer never sees half a frame followed by a later frame.

The proxies run on their own event loop in a thread, so a busy client loop cannot slow peer traffic.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Callable, Iterable

Edge = tuple[str, str]

_CHUNK = 65536


class _Link:
    """One accepted connection on an edge and its upstream."""

    def __init__(self, down_writer: asyncio.StreamWriter) -> None:
        self.down_writer = down_writer
        self.up_writer: asyncio.StreamWriter | None = None
        self.tasks: list[asyncio.Task] = []

    def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for writer in (self.down_writer, self.up_writer):
            if writer is not None:
                writer.close()


class _EdgeProxy:
    def __init__(self, edge: Edge, target: tuple[str, int]) -> None:
        self.edge = edge
        self.target = target
        self.cut = False
        self.delay_s = 0.0
        # The probability each message (one line: the edge's protocol is line-framed) is lost.
        self.loss = 0.0
        self.rng = random.Random(f"loss {edge}")
        self.lost_messages = 0
        self.links: set[_Link] = set()
        self.server: asyncio.base_events.Server | None = None
        self.address: tuple[str, int] | None = None
        self.forwarded_bytes = 0

    async def start(self, host: str) -> None:
        self.server = await asyncio.start_server(self._accept, host, 0)
        self.address = self.server.sockets[0].getsockname()[:2]

    def drop_links(self) -> None:
        for link in list(self.links):
            link.close()
        self.links.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self.serve(reader, writer)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    prefix: bytes = b"", payload_backward: bool = False,
                    target: tuple[str, int] | None = None) -> None:
        """Carry one connection of this edge. `prefix`: bytes already read from the dialer;
        `payload_backward`: the edge's messages travel in the replies (a stream the receiver
        asked for), so the delay applies to that direction."""
        link = _Link(writer)
        self.links.add(link)
        try:
            if self.cut:
                await self._black_hole(reader)
                return
            try:
                up_reader, link.up_writer = await asyncio.wait_for(
                    asyncio.open_connection(*(target or self.target)), timeout=2.0
                )
            except (TimeoutError, OSError):
                return
            if prefix:
                link.up_writer.write(prefix)
            forward = asyncio.ensure_future(self._pump(reader, link.up_writer,
                                                       forward=not payload_backward))
            backward = asyncio.ensure_future(self._pump(up_reader, writer,
                                                        forward=payload_backward))
            link.tasks = [forward, backward]
            await asyncio.wait(link.tasks, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            pass
        finally:
            link.close()
            self.links.discard(link)

    @staticmethod
    async def _black_hole(reader: asyncio.StreamReader) -> None:
        while await reader.read(_CHUNK):
            pass

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, forward: bool
    ) -> None:
        # Each chunk is due `delay` after it arrived; a queue keeps the order without adding
        # one chunk's delay to the next (a delay, not a throttle).
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        sender = asyncio.ensure_future(self._send(queue, writer))
        partial = b""  # an unfinished line, held while the edge is lossy
        try:
            while True:
                data = await reader.read(_CHUNK)
                if not data:
                    break
                if forward and (self.loss > 0 or partial):
                    data, partial = self._lossy(partial + data)
                    if not data:
                        continue
                delay = self.delay_s if forward else 0.0
                queue.put_nowait((loop.time() + delay, data))
            queue.put_nowait(None)
            await sender
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            sender.cancel()

    def _lossy(self, data: bytes) -> tuple[bytes, bytes]:
        """(the whole lines that survive, the unfinished rest): each line is lost with
        probability `loss`, so framing stays intact and only whole messages go missing."""
        *lines, rest = data.split(b"\n")
        kept = []
        for line in lines:
            if self.loss > 0 and self.rng.random() < self.loss:
                self.lost_messages += 1
            else:
                kept.append(line + b"\n")
        return b"".join(kept), rest

    async def _send(self, queue: asyncio.Queue, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        try:
            while (item := await queue.get()) is not None:
                due, data = item
                if due > loop.time():
                    await asyncio.sleep(due - loop.time())
                if self.cut:
                    return
                writer.write(data)
                self.forwarded_bytes += len(data)
                await writer.drain()
        except (OSError, asyncio.CancelledError):
            pass


def _closing(head: bytes) -> bytes:
    """An HTTP/1.1 request head that asks the server to close the connection after its reply."""
    lines = [line for line in head[:-4].split(b"\r\n")
             if not line.lower().startswith(b"connection:")]
    return b"\r\n".join([*lines, b"Connection: close"]) + b"\r\n\r\n"


class _RoutedListener:
    """One listener in front of one member's peer port, for systems whose members all dial a
    peer at the one address it advertises (etcd): each connection's first HTTP request names
    its sender (the mesh's `sender_header`, etcd's X-Server-From), which picks the directed edge
    it belongs to. A stream a member
    asks its peer for (`GET /raft/stream/...`) carries the peer's messages back: it belongs to
    the edge from the peer to the asker. A connection that names no known sender is carried
    as it is (probes, version checks)."""

    def __init__(self, mesh: ProxyMesh, dst: str, target: tuple[str, int]) -> None:
        self.mesh = mesh
        self.dst = dst
        self.passthrough = _EdgeProxy((dst, dst), target)
        self.server: asyncio.base_events.Server | None = None
        self.address: tuple[str, int] | None = None

    async def start(self, host: str) -> None:
        self.server = await asyncio.start_server(self._accept, host, 0)
        self.address = self.server.sockets[0].getsockname()[:2]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10.0)
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            writer.close()
            return
        request, *headers = head.decode("latin-1").split("\r\n")
        method, _, rest = request.partition(" ")
        path = rest.partition(" ")[0]
        wanted = self.mesh.sender_header.lower()
        sender_id = next((v.strip() for k, _, v in (h.partition(":") for h in headers)
                          if k.strip().lower() == wanted), None)
        src = self.mesh.names.get(sender_id or "")
        target = self.passthrough.target
        if src is None or src == self.dst:
            # One request only: a client that pools connections (etcd's peers share one pool
            # for version checks and raft messages) would otherwise send a later raft request
            # over this unrouted connection, past every cut.
            await self.passthrough.serve(reader, writer, prefix=_closing(head))
        elif method == "GET" and path.startswith("/raft/stream/"):
            await self.mesh.edges[(self.dst, src)].serve(reader, writer, prefix=head,
                                                        payload_backward=True, target=target)
        else:
            await self.mesh.edges[(src, self.dst)].serve(reader, writer, prefix=head,
                                                        target=target)


class ProxyMesh:
    """All directed edges of a cluster. Thread-safe control from the harness."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.edges: dict[Edge, _EdgeProxy] = {}
        self.routed: dict[str, _RoutedListener] = {}
        self.names: dict[str, str] = {}  # sender ids in request headers -> node names
        self.sender_header = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="proxies", daemon=True)
        self._thread.start()

    def _call(self, coro_or_fn, *args):
        async def wrapper():
            result = coro_or_fn(*args)
            if asyncio.iscoroutine(result):
                result = await result
            return result

        return asyncio.run_coroutine_threadsafe(wrapper(), self._loop).result(timeout=10)

    def add_edge(self, edge: Edge, target: tuple[str, int]) -> tuple[str, int]:
        """Start the proxy for `edge` forwarding to `target`; returns the address to dial."""
        proxy = _EdgeProxy(edge, target)
        self._call(proxy.start, self.host)
        self.edges[edge] = proxy
        assert proxy.address is not None
        return proxy.address

    def route_cluster(self, peers: dict[str, tuple[str, int]], sender_header: str,
                      names_of: Callable[[dict[str, tuple[str, int]]], dict[str, str]]
                      ) -> dict[str, tuple[str, int]]:
        """One listener in front of each member's peer port (`peers`), splitting its
        connections into the edges between that member and the others by the sender the
        requests name in `sender_header`. `names_of(advertised)` gives the sender ids (which
        may derive from the advertised addresses) to node names. Returns the address each
        member should advertise."""
        self.sender_header = sender_header
        advertised = {}
        for dst, target in peers.items():
            for other in peers:
                for edge in ((other, dst), (dst, other)):
                    if other != dst and edge not in self.edges:
                        # No listener of its own: its connections come through a routed
                        # listener, which names the upstream.
                        self.edges[edge] = _EdgeProxy(edge, target)
            listener = _RoutedListener(self, dst, target)
            self._call(listener.start, self.host)
            self.routed[dst] = listener
            assert listener.address is not None
            advertised[dst] = listener.address
        self.names.update(names_of(advertised))
        return advertised

    def set_cut(self, cut: Iterable[Edge]) -> None:
        """Make exactly the given edges cut; every other edge flows."""
        wanted = set(cut)
        unknown = wanted - set(self.edges)
        if unknown:
            raise ValueError(f"unknown edges: {sorted(unknown)}")

        def apply() -> None:
            for edge, proxy in self.edges.items():
                now_cut = edge in wanted
                if now_cut != proxy.cut:
                    proxy.cut = now_cut
                    proxy.drop_links()

        self._call(apply)

    def set_delay(self, delays: dict[Edge, float]) -> None:
        """Delay (seconds) on the given edges; every other edge undelayed."""

        def apply() -> None:
            for edge, proxy in self.edges.items():
                proxy.delay_s = float(delays.get(edge, 0.0))

        self._call(apply)

    def set_loss(self, losses: dict[Edge, float]) -> None:
        """The probability each message on the given edges is lost; none elsewhere."""

        def apply() -> None:
            for edge, proxy in self.edges.items():
                proxy.loss = float(losses.get(edge, 0.0))

        self._call(apply)

    def cut_edges(self) -> set[Edge]:
        return {edge for edge, proxy in self.edges.items() if proxy.cut}

    def close(self) -> None:
        def stop() -> None:
            for proxy in [*self.edges.values(), *(r.passthrough for r in self.routed.values())]:
                proxy.drop_links()
                if proxy.server is not None:
                    proxy.server.close()
            for listener in self.routed.values():
                if listener.server is not None:
                    listener.server.close()

        if self._loop.is_running():
            try:
                self._call(stop)
            except Exception:  # noqa: BLE001 - closing must go on whatever a proxy did
                pass
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
        self._loop.close()
