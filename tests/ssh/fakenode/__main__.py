"""A stand-in node for the SSH backend's own tests (standard library only): listens where a node
would, answers `status` with how often it was started on its data directory, and on request
dials a peer (as the real node does) to show whether a partition lets it through."""

import argparse
import asyncio
import json
import os
import sys


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--id", required=True)
    p.add_argument("--listen", required=True)
    p.add_argument("--peer", action="append", default=[])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--secret-file")  # the real node authenticates its peers; this one does not
    args, extra = p.parse_known_args()
    peers = {}
    for item in args.peer:
        name, addr = item.split("=", 1)
        host, port = addr.rsplit(":", 1)
        peers[name] = (host, int(port))
    os.makedirs(args.data_dir, exist_ok=True)
    with open(os.path.join(args.data_dir, "starts"), "a") as f:
        f.write("start\n")
    with open(os.path.join(args.data_dir, "starts")) as f:
        starts = len(f.readlines())
    print(f"{args.id} start {starts}, extra args {extra}", file=sys.stderr, flush=True)

    async def reach(peer: str) -> bool:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(*peers[peer]), 1.0)
            writer.write(b'{"op": "status"}\n')
            line = await asyncio.wait_for(reader.readline(), 1.0)
            writer.close()
            return bool(line)
        except (TimeoutError, OSError):
            return False

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async for line in reader:
            req = json.loads(line)
            if req.get("op") == "status":
                reply = {"ok": True, "id": args.id, "role": "leader", "serving": True,
                         "ballot": [1, args.id], "starts": starts, "extra": extra,
                         "pid": os.getpid()}
            elif req.get("op") == "reach":
                reply = {"ok": await reach(req["to"])}
            else:
                reply = {"ok": False, "error": "malformed-request"}
            writer.write((json.dumps(reply) + "\n").encode())
            await writer.drain()
        writer.close()

    async def serve() -> None:
        host, port = args.listen.rsplit(":", 1)
        server = await asyncio.start_server(handle, host, int(port))
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


main()
