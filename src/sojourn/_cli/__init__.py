"""Subcommands of the ``sojourn`` CLI: each module has ``add_parser(sub, name)`` and ``run(args)``.

Private: only ``sojourn.cli`` imports these modules (docs/architecture.md).
"""

__all__: list[str] = []
