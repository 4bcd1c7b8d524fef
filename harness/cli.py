"""The `harness` command: one subcommand per module, each with `add_arguments` and `run`.

Subcommand modules are imported lazily so that `harness check` works without the plotting
stack loaded and a broken optional backend never stops the other commands.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("harness.commands.run",
            "deploy a cluster, drive clients under faults, check the history"),
    "check": ("harness.commands.check",
              "check one or more history files for linearizability"),
    "recheck": ("harness.commands.recheck", "check a stored run again"),
    "rerun": ("harness.commands.rerun", "run a stored run's configuration and seed again"),
    "campaign": ("harness.commands.campaign", "run a matrix of runs from a TOML file"),
    "compare": ("harness.commands.compare", "compare the fast-path windows of two runs"),
    "serve": ("harness.commands.serve", "browse the store in a web browser"),
    "bench": ("harness.commands.bench", "the node's fast-path benchmark"),
    "bench-check": ("harness.commands.bench_check", "time the checker over a corpus directory"),
    "clean": ("harness.commands.clean", "remove what earlier runs left behind"),
    "image": ("harness.commands.image", "build the node's Docker image (offline if need be)"),
}


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on bad input; DESIGN.md reserves 2 for `unknown`, so bad input is 3."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(3, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="harness", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, (module_name, help_text) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            sp.set_defaults(_missing=module_name)
            continue
        module.add_arguments(sp)
        sp.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 3
    if getattr(args, "_missing", None):
        print(f"harness {args.command}: not available in this build", file=sys.stderr)
        return 3
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("harness: interrupted", file=sys.stderr)
        return 130
