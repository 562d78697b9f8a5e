"""The ``sojourn`` command line: one subcommand per module in ``sojourn._cli``.

Every bad input ends as one line on stderr naming the field and what is allowed,
with exit code 2 and no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from sojourn._errors import SojournError

__all__ = ["COMMANDS", "build_parser", "main"]

#: Subcommands, in the order ``--help`` lists them: name -> module in sojourn._cli.
COMMANDS = {
    "study": "study",
    "compare-hardware": "compare_hardware",
    "simulate": "simulate",
    "perf": "perf",
    "catalogue": "catalogue",
    "calibrate": "calibrate",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # exit code 2 with one line, as argparse does
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sojourn", description=__doc__.splitlines()[0] if __doc__ else None)
    from sojourn import __version__

    parser.add_argument("--version", action="version", version=f"sojourn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name, module in COMMANDS.items():
        mod = importlib.import_module(f"sojourn._cli.{module}")
        p = mod.add_parser(sub, name)
        p.set_defaults(_run=mod.run)
    return parser


class _NoSojournErrorTraceback(logging.Filter):
    """Drop Optuna's report of a trial stopped by a SojournError (a traceback): the error ends the
    run, and main prints it as its one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, SojournError)


def _quiet_trial_errors() -> None:
    # Optuna logs a failed trial from this module's logger (a name, so Optuna need not be imported).
    log = logging.getLogger("optuna.study._optimize")
    if not any(isinstance(f, _NoSojournErrorTraceback) for f in log.filters):
        log.addFilter(_NoSojournErrorTraceback())


def main(argv: Sequence[str] | None = None) -> int:
    _quiet_trial_errors()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except SojournError as err:
        print(f"sojourn {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sojourn {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
