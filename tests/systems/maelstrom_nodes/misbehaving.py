#!/usr/bin/env python3
"""Maelstrom nodes that break the protocol, for the tests; the first argument says how:
crash (exits after init), garbage (a line that is no message after init), silent (never answers
init), flood (endless valid messages to a client nobody is), long-line (a line over 1 MiB),
service (asks Maelstrom's lin-kv service for a key)."""
import json
import sys

mode = sys.argv[1]


def send(msg):
    sys.stdout.write(json.dumps(msg) + "\n")
    sys.stdout.flush()


for line in sys.stdin:
    msg = json.loads(line)
    body = msg["body"]
    if body["type"] != "init":
        continue
    me = body["node_id"]
    if mode == "silent":
        continue
    send({"src": me, "dest": msg["src"], "body": {"type": "init_ok",
                                                  "in_reply_to": body["msg_id"]}})
    if mode == "crash":
        print("misbehaving: crashing on purpose", file=sys.stderr)
        sys.exit(9)
    if mode == "garbage":
        sys.stdout.write("this is not json\n")
        sys.stdout.flush()
    if mode == "long-line":
        sys.stdout.write("x" * (2 << 20) + "\n")
        sys.stdout.flush()
    if mode == "service":
        send({"src": me, "dest": "lin-kv", "body": {"type": "read", "key": 1, "msg_id": 1}})
    if mode == "flood":
        out = json.dumps({"src": me, "dest": "c999999", "body": {"type": "x"}}) + "\n"
        while True:
            sys.stdout.write(out * 1000)
    if mode == "stderr-flood":
        while True:
            sys.stderr.write("y" * 65536)
