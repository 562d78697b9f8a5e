"""sojourn: size GPU fleets for batch LLM inference.

The public API is what this module re-exports; everything else lives in
private modules and may change.
"""

from sojourn._cache import clear_caches
from sojourn._errors import ConfigError, SojournError

__all__ = ["ConfigError", "SojournError", "__version__", "clear_caches"]

__version__ = "0.1.0"
