"""Ctrl-C for long work that writes to a database: at once inside computations, never mid-write.

``interrupt_at_once()`` wraps a long phase (confirmations, compare-hardware);
``stoppable()`` marks the computations inside it that a KeyboardInterrupt may break off
at any instruction (a simulation, a wait). Elsewhere (Optuna telling a trial, SQLAlchemy
writing a row) Ctrl-C is held to the next ``check_interrupt()``, milliseconds away: an
exception raised inside that bookkeeping can leave it half-done and surface as another error.
"""

from __future__ import annotations

import _thread
import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

__all__ = ["check_interrupt", "in_stoppable", "interrupt_at_once", "interruptible_sleep", "not_stoppable",
           "stoppable"]


class _Interrupt:
    """Ctrl-C's state under ``interrupt_at_once`` (the main thread's only)."""

    active = False  # an interrupt_at_once block is running
    pending = False  # Ctrl-C pressed, not yet handled
    zone = False  # inside ``stoppable()``: work that may be stopped at any instruction


def in_stoppable() -> bool:
    """True inside a ``stoppable()`` block: work a KeyboardInterrupt may break off anywhere."""
    return _Interrupt.zone


def check_interrupt() -> None:
    """Raise KeyboardInterrupt if Ctrl-C was pressed (the points between database writes)."""
    if _Interrupt.pending:
        raise KeyboardInterrupt


@contextlib.contextmanager
def stoppable() -> Iterator[None]:
    """A computation Ctrl-C may stop at any instruction (a simulation): it raises at once inside.

    Outside these blocks, under ``interrupt_at_once``, Ctrl-C is held until the next
    ``check_interrupt()`` or the block's entry or end: a KeyboardInterrupt raised inside
    Optuna's or SQLAlchemy's bookkeeping (a trial being told, a row being written) can leave
    it half-done and turn into another error.
    """
    check_interrupt()
    was, _Interrupt.zone = _Interrupt.zone, True
    try:
        yield
    finally:
        _Interrupt.zone = was
    check_interrupt()


@contextlib.contextmanager
def not_stoppable() -> Iterator[None]:
    """Inside ``stoppable()``, a step not to break off (a database write); Ctrl-C raises after it."""
    was, _Interrupt.zone = _Interrupt.zone, False
    try:
        yield
    finally:
        _Interrupt.zone = was
    check_interrupt()


def interruptible_sleep(seconds: float) -> None:
    """``time.sleep`` that Ctrl-C ends at once under ``interrupt_at_once``."""
    with stoppable():
        time.sleep(seconds)


@contextlib.contextmanager
def interrupt_at_once() -> Iterator[None]:
    """Ctrl-C stops the work in the main thread within a second, without breaking a database write.

    Inside ``stoppable()`` blocks (simulations, waits) Ctrl-C raises KeyboardInterrupt at
    once; elsewhere it is held to the next ``check_interrupt()`` (milliseconds away). Python
    swallows an exception raised in a weakref callback or ``__del__`` ("Exception ignored
    in ..."), where a signal's KeyboardInterrupt can land (a garbage collection in Optuna or
    SQLAlchemy): it is raised again every 0.5 s until handled, and at the block's end if
    the work finished meanwhile.
    """
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        yield  # not the main thread, or started to ignore Ctrl-C (a background job of a shell): leave it so
        return

    def again() -> None:
        if _Interrupt.pending and _Interrupt.zone:
            _thread.interrupt_main()  # the handler below, once more
        if _Interrupt.pending and _Interrupt.active:
            _timer()

    def _timer() -> None:
        t = threading.Timer(0.5, again)
        t.daemon = True
        t.start()

    def handler(signum: int, frame: Any) -> None:
        first = not _Interrupt.pending
        _Interrupt.pending = True
        if first:
            _timer()
        if _Interrupt.zone:
            raise KeyboardInterrupt

    old = signal.signal(signal.SIGINT, handler)
    _Interrupt.active, _Interrupt.pending = True, False
    try:
        yield
    except KeyboardInterrupt:
        _Interrupt.pending = False
        raise
    finally:
        _Interrupt.active = False
        signal.signal(signal.SIGINT, old)
    if _Interrupt.pending:
        _Interrupt.pending = False
        raise KeyboardInterrupt
