"""SSH backend: one node per remote host, deployed and faulted over SSH (paramiko), as Jepsen's
control node does.

- Hosts: `--hosts` is a file (one host a line) or a comma list; each host is
  `[NAME=][USER@]ADDRESS[:PORT]` with optional `key=PATH`, `python=PATH`, `node-port=N`
  (see parse_hosts). Node i runs on host i, unless every host is named after a node.
- Trust: key authentication only; the host keys are checked against a known_hosts file with a
  RejectPolicy. Accepting unknown keys (trust on first use, appended to the file) needs the
  explicit, unsafe, `accept_new_host_keys`; a key that differs from the known one is always
  refused.
- Deploy: the node package goes over SFTP into ~/.paxos-harness/<instance>/ on each host and
  runs detached (its own session, so neither the SSH channel nor a command deadline takes it
  down), with a pid file; its stderr is node.log there, fetched into the run directory at the end.
  A restart reuses the same data directory.
- Faults: the same iptables/tc scripts as the Docker backend (harness/backends/netcmds.py), run as
  root (directly, or with `sudo -n`); pause, resume and kill are SIGSTOP/SIGCONT/SIGKILL of the
  node's pid, after checking that the pid is still our node (pids are reused).
- Commands: every argument shell-quoted, every command under a deadline on both sides (coreutils
  timeout there, a clock here), stdout, stderr and the exit status read to the end. One
  connection per host, shared by the threads, re-opened (and an idempotent command retried once)
  after it fails. Every command this backend runs is idempotent, so a retry is always safe.
- Trouble is one line naming the host: authentication failed, host key mismatch or unknown, host
  unreachable, python too old, iptables missing, not root and no sudo; all of it found by probe(),
  before anything is started.
"""

from harness.backends.ssh.backend import SshBackend
from harness.backends.ssh.clean import clean_ssh
from harness.backends.ssh.hosts import Host, assign_hosts, parse_host, parse_hosts

__all__ = ["Host", "SshBackend", "assign_hosts", "clean_ssh", "parse_host", "parse_hosts"]
