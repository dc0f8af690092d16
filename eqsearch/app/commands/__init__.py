"""Subcommands of ``eqsearch``: one module per command group, each with ``register(commands)``."""
