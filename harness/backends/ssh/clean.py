"""`harness clean --hosts`: what runs whose controller died left on SSH hosts."""

from __future__ import annotations

from pathlib import Path

from harness.backends import netcmds
from harness.backends.base import BackendError, controller_alive
from harness.backends.ssh.backend import SshBackend, _parallel, _raise_first
from harness.backends.ssh.hosts import parse_hosts


def _instances_script(root: str) -> str:
    """Shell: one tab-separated line per instance directory under root: the directory, its
    run, its controller, and the pid of its node if one of ours runs."""
    q = netcmds.quote
    return (f"R={q([root])}\n"
            'for D in "$R"/*; do [ -d "$D" ] || continue\n'
            '  run=$(sed -n 1p "$D/owner" 2>/dev/null); ctl=$(sed -n 2p "$D/owner" 2>/dev/null)\n'
            '  p=$(cat "$D/node.pid" 2>/dev/null)\n'
            '  if [ -n "$p" ] && tr "\\000" "\\n" <"/proc/$p/cmdline" 2>/dev/null '
            '| grep -qxF -- "$D/data"; then :; else p=""; fi\n'
            '  printf "instance\\t%s\\t%s\\t%s\\t%s\\n" "$D" "$run" "$ctl" "$p"\n'
            "done\n")


def _remove_instance_script(base: str, pid: str) -> str:
    q = netcmds.quote
    stop = ""
    if pid:
        # The pid is checked again: the node may have exited (and its pid been reused) since.
        stop = (f"D={q([base])}; p={q([pid])}\n"
                'ours() { tr "\\000" "\\n" <"/proc/$p/cmdline" 2>/dev/null '
                '| grep -qxF -- "$D/data"; }\n'
                'if ours; then kill -CONT "$p"; kill -KILL "$p"; fi\n'
                'i=0; while ours && [ "$i" -lt 100 ]; do i=$((i+1)); sleep 0.03; done\n'
                "! ours || exit 4\n")
    return stop + f"rm -rf {q([base])}\n"


def clean_ssh(hosts: str, run_id: str | None = None, known_hosts: str | None = None,
              ssh_key: str | None = None) -> list[str]:
    """`harness clean --hosts`: on every host, stop the nodes and remove the directories that
    runs left behind (one run's, or every run's whose controller on this machine is gone), and
    our firewall chain once no instance is left there. Instances whose controller runs on
    another machine are kept: we cannot tell whether it is alive. Returns what was done."""
    host_list = parse_hosts(hosts)
    # Node ids only to address the hosts; a named host keeps its name as its label.
    ids = [f"host{i}" for i in range(1, len(host_list) + 1)]
    backend = SshBackend(ids, Path("."), [], "clean", hosts=host_list, known_hosts=known_hosts,
                         ssh_key=ssh_key)
    try:
        backend.capabilities()

        def one(node: str) -> list[str]:
            label = backend.hosts[node].label()
            root = backend.remote_root(node)
            res = backend.run(node, _instances_script(root))
            if res.code != 0:
                raise BackendError(f"host {label}: listing {root} failed: {res.text()}")
            done, kept = [], 0
            for line in res.out.splitlines():
                fields = line.split("\t")
                if fields[0] != "instance" or len(fields) != 5:
                    continue
                base, run, controller, pid = fields[1:]
                leftover = (run == run_id if run_id is not None
                            else not controller_alive(controller))
                if not leftover:
                    kept += 1
                    continue
                res = backend.run(node, _remove_instance_script(base, pid))
                if res.code != 0:
                    raise BackendError(f"host {label}: removing {base} failed: {res.text()}")
                done.append(f"ssh {label}: " + (f"killed node pid {pid}, " if pid else "")
                            + f"removed {base}" + (f" (run {run})" if run else ""))
            if not kept and backend.facts[node].root:
                res = backend.run(node, netcmds.cleanup_script(manage_qdisc=False)
                                  + f"rmdir {netcmds.quote([root])} 2>/dev/null || true\n",
                                  root=True)
                if res.code != 0:
                    raise BackendError(f"host {label}: removing the firewall chain failed: "
                                       f"{res.text()}")
            return done

        results = _parallel(one, ids)
        _raise_first(results)
        return [line for node in ids for line in results[node]]  # type: ignore[union-attr]
    finally:
        backend.close_connections()
