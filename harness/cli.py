"""Deploy a cluster, drive clients under faults, and check what happened.

`harness COMMAND --help` explains each command. Exit status: 0 valid, 1 invalid, 2 unknown,
3 bad input or a harness failure, 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from importlib import metadata

# name -> (module, one-line help). A command's module is imported only when it runs, so that
# `harness check` never loads the plotting stack and a broken optional backend stops no other
# command.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("harness.commands.run",
            "deploy a cluster, drive clients under faults, check the history"),
    "check": ("harness.commands.check",
              "check one or more history files for linearizability"),
    "recheck": ("harness.commands.recheck", "check a stored run again"),
    "rerun": ("harness.commands.rerun", "run a stored run's configuration and seed again"),
    "campaign": ("harness.commands.campaign", "run a matrix of runs from a TOML file"),
    "explore": ("harness.commands.explore",
                "search drawn runs for a violation within a time budget, then shrink it"),
    "compare": ("harness.commands.compare", "compare the fast-path windows of two runs"),
    "export": ("harness.commands.export",
               "write a run's history as Jepsen EDN (history.edn) for Knossos and Elle"),
    "serve": ("harness.commands.serve", "browse the store in a web browser"),
    "bench": ("harness.commands.bench", "the node's fast-path benchmark"),
    "bench-check": ("harness.commands.bench_check", "time the checker over a corpus directory"),
    "sim-detect": ("harness.commands.sim_detect",
                   "the bug catalogue's detection over many simulated runs"),
    "clean": ("harness.commands.clean", "remove what earlier runs left behind"),
    "image": ("harness.commands.image", "build the node's Docker image (offline if need be)"),
}


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on bad input; DESIGN.md reserves 2 for `unknown`, so bad input is 3."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(3, f"{self.prog}: error: {message}\n")


def version() -> str:
    try:
        return metadata.version("paxos-harness")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser: a command name and its arguments, parsed later by the command."""
    listing = "\n".join(f"  {name:<12} {help_text}" for name, (_, help_text) in COMMANDS.items())
    parser = _Parser(prog="harness", description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter,
                     usage="harness [-h] [--version] COMMAND ...",
                     epilog=f"commands:\n{listing}")
    parser.add_argument("--version", action="version", version=f"harness {version()}")
    parser.add_argument("command", nargs="?", metavar="COMMAND", choices=list(COMMANDS),
                        help="one of the commands below")
    parser.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def command_parser(name: str) -> argparse.ArgumentParser | None:
    """The parser of one command, its module imported now; None if the module is missing."""
    module_name, help_text = COMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        return None
    parser = _Parser(prog=f"harness {name}", description=help_text)
    module.add_arguments(parser)
    parser.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    top = build_parser().parse_args(argv)
    if top.command is None:
        build_parser().print_help()
        return 3
    parser = command_parser(top.command)
    if parser is None:
        print(f"harness {top.command}: not available in this build", file=sys.stderr)
        return 3
    args = parser.parse_args(top.args)
    args.command = top.command
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("harness: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`). Point stdout at /dev/null so that the interpreter's
        # last flush does not fail again; 141 is a shell's status for death by SIGPIPE.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as exc:
        # Harness trouble must never read as a verdict (exit 1 is "invalid"), nor as a
        # traceback where one line was promised; PAXOS_HARNESS_DEBUG=1 shows the traceback.
        if os.environ.get("PAXOS_HARNESS_DEBUG"):
            raise
        text = " ".join(f"{type(exc).__name__}: {exc}".split())[:400]
        print(f"harness {top.command}: internal error: {text}", file=sys.stderr)
        return 3
