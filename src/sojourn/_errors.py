"""Errors that carry the offending field, so the CLI can print one clear line."""

from __future__ import annotations

__all__ = ["ConfigError", "SojournError"]


class SojournError(Exception):
    """Base class of every error sojourn raises on purpose."""


class ConfigError(SojournError, ValueError):
    """Bad input: names the field (dotted path, e.g. ``fleet.tp``) and what is allowed."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)

    def __reduce__(self):  # picklable, so errors cross joblib worker processes intact
        return (type(self), (self.field, self.message))
