"""A stand-in node for the Docker backend's own tests: listens where a node would, answers
`status`, and on request sends a line to a peer on a connection it dials itself (as the real
node does), remembering on its data volume what it received. Standard library only."""

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
    store = os.path.join(args.data_dir, "received.jsonl")
    print(f"{args.id} starting, extra args {extra}", file=sys.stderr, flush=True)

    async def send(peer: str, text: str) -> bool:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(*peers[peer]), 1.0)
            note = {"op": "note", "from": args.id, "text": text}
            writer.write((json.dumps(note) + "\n").encode())
            await asyncio.wait_for(writer.drain(), 1.0)
            writer.close()
            return True
        except (TimeoutError, OSError):
            return False

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async for line in reader:
            req = json.loads(line)
            op = req.get("op")
            if op == "status":
                reply = {"ok": True, "id": args.id, "role": "leader", "serving": True,
                         "ballot": [1, args.id], "extra": extra}
            elif op == "send":
                reply = {"ok": await send(req["to"], req["text"])}
            elif op == "note":
                with open(store, "a") as f:
                    f.write(json.dumps(req) + "\n")
                    f.flush()
                    os.fsync(f.fileno())
                print(f"{args.id} got {req['text']} from {req['from']}", file=sys.stderr,
                      flush=True)
                continue
            elif op == "received":
                try:
                    with open(store) as f:
                        reply = {"ok": True, "notes": [json.loads(x) for x in f]}
                except FileNotFoundError:
                    reply = {"ok": True, "notes": []}
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
