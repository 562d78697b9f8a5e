"""Subcommands of the ``sojourn`` CLI: each module has ``add_parser(sub, name)`` and ``run(args)``."""
