"""One module per `harness` subcommand, each with `add_arguments(parser)` and `run(args) -> int`."""
