"""Benchmarks behind `actiond bench ...`: frame transport between processes (transport)
and the stage pipeline against a sequential loop (pipeline). Each module exposes
add_arguments(parser) and run(args) -> exit code for the CLI."""
