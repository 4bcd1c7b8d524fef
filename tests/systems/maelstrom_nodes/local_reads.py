#!/usr/bin/env python3
"""A wrong Maelstrom lin-kv node, for the tests: it acknowledges a write at once, tells its
peers about it in the background and answers reads from its own copy. Under a partition its
reads are stale."""
import json
import sys

node_id, peers, store, next_id = None, [], {}, 0


def send(dest, body):
    global next_id
    next_id += 1
    sys.stdout.write(json.dumps({"src": node_id, "dest": dest,
                                 "body": {"msg_id": next_id, **body}}) + "\n")
    sys.stdout.flush()


for line in sys.stdin:
    msg = json.loads(line)
    src, body = msg["src"], msg["body"]
    kind, reply_to = body["type"], body.get("msg_id")
    if kind == "init":
        node_id = body["node_id"]
        peers = [n for n in body["node_ids"] if n != node_id]
        send(src, {"type": "init_ok", "in_reply_to": reply_to})
    elif kind == "read":
        if body["key"] in store:
            send(src, {"type": "read_ok", "in_reply_to": reply_to, "value": store[body["key"]]})
        else:
            send(src, {"type": "error", "in_reply_to": reply_to, "code": 20,
                       "text": "no such key"})
    elif kind == "write":
        store[body["key"]] = body["value"]
        for peer in peers:
            send(peer, {"type": "replicate", "key": body["key"], "value": body["value"]})
        send(src, {"type": "write_ok", "in_reply_to": reply_to})
    elif kind == "cas":
        key, old, new = body["key"], body["from"], body["to"]
        if key not in store:
            send(src, {"type": "error", "in_reply_to": reply_to, "code": 20})
        elif store[key] != old:
            send(src, {"type": "error", "in_reply_to": reply_to, "code": 22})
        else:
            store[key] = new
            for peer in peers:
                send(peer, {"type": "replicate", "key": key, "value": new})
            send(src, {"type": "cas_ok", "in_reply_to": reply_to})
    elif kind == "replicate":
        store[body["key"]] = body["value"]
    print(f"{node_id} handled {kind}", file=sys.stderr)
