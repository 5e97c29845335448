"""Scanpy-style logging that survives changes to scanpy's undocumented logging API.

scanpy documents only ``scanpy.logging.print_versions``; ``info``/``warning``/``debug`` are
internal. We use them when present (so messages follow ``sc.settings.verbosity``) and fall back
to the standard library logger otherwise.
"""

from __future__ import annotations

import logging as _stdlib_logging
from datetime import datetime

_fallback = _stdlib_logging.getLogger("scdeepimpute")


def _scanpy_logg():
    try:
        from scanpy import logging as logg
    except ImportError:  # pragma: no cover - scanpy is a hard dependency
        return None
    if all(hasattr(logg, name) for name in ("info", "warning", "debug", "hint")):
        return logg
    return None  # pragma: no cover


def info(msg: str, *, time: datetime | None = None, deep: str | None = None) -> datetime:
    """Log at info level; returns the current time so callers can report elapsed time."""
    logg = _scanpy_logg()
    if logg is not None:
        return logg.info(msg, time=time, deep=deep)
    _fallback.info(msg)  # pragma: no cover
    return datetime.now()  # pragma: no cover


def debug(msg: str) -> None:
    """Log at debug level."""
    logg = _scanpy_logg()
    if logg is not None:
        logg.debug(msg)
    else:  # pragma: no cover
        _fallback.debug(msg)


def warning(msg: str) -> None:
    """Log a warning through scanpy (shown at verbosity >= 1)."""
    logg = _scanpy_logg()
    if logg is not None:
        logg.warning(msg)
    else:  # pragma: no cover
        _fallback.warning(msg)


def verbosity() -> int:
    """Scanpy's current verbosity as an int (0 errors .. 4 debug)."""
    try:
        import scanpy as sc

        return int(sc.settings.verbosity)
    except Exception:  # noqa: BLE001  # pragma: no cover
        return 1
