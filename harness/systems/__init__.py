"""The system interface: what the harness needs from a system under test (Jepsen's DB and Client).

A system says how a member starts, stops, is killed and paused on a backend; how a client turns a
workload's operation into a request and a reply into `ok`, `fail` (definitely did not happen) or
`info` (may have happened); and which optional capabilities it has: naming its leader, serving its
chosen log, reporting counters, surviving a crash with its data directory. The bundled Multi-Paxos
node is one such system; etcd, Maelstrom-protocol nodes and a user's own are others. A fault or a
checker that needs a capability the system lacks is refused before the run, or reported as not
applicable, never passed silently. Empty for now: the bundled node is wired in directly
(harness/run/nodeclient.py, harness/backends/), and the issue "Test a system you did not write"
moves it behind this seam.
"""
