"""One line, never a traceback or a hang, for a formula that a generation step cannot do.

Derivation, lowering and sheet printing run SymPy on a user's expressions. SymPy may
raise anything (NotImplementedError from its solver, a printer that knows no such
function) or run for hours (``sp.solve`` on the tanh form of GELU). Each step on a
formula runs under ``formula_step``: an error becomes a ``FormulaError`` naming the
formula and the step, and a step that runs past ``SYMDL_SYMPY_SECONDS`` (default 60)
is interrupted with one.

``SYMDL_TRACEBACK=1`` lets the original exception through, for debugging symdl itself.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from .errors import FormulaError

#: Seconds one step on one formula may take (a named setting: the environment wins).
DEFAULT_SECONDS = 60.0


def budget_seconds() -> float:
    """The time budget of one SymPy step, from ``SYMDL_SYMPY_SECONDS``."""
    raw = os.environ.get("SYMDL_SYMPY_SECONDS", "")
    try:
        value = float(raw) if raw else DEFAULT_SECONDS
    except ValueError:
        raise FormulaError(f"SYMDL_SYMPY_SECONDS must be a number of seconds, got {raw!r}"
                           ) from None
    if not value > 0:
        raise FormulaError(f"SYMDL_SYMPY_SECONDS must be positive, got {raw!r}")
    return value


class _OverBudget(BaseException):
    """Raised by the timer inside SymPy; a BaseException so no `except Exception` in
    SymPy swallows it."""


class TimeUp(Exception):
    """An optional step (``within``) ran out of its own, shorter budget."""


_deadlines: list[float] = []  # monotonic times, innermost last (main thread only)


def _arm() -> None:
    signal.setitimer(signal.ITIMER_REAL, max(_deadlines[-1] - time.monotonic(), 1e-6))


@contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    # A real-time timer interrupts pure-Python work wherever it is. Signals reach only
    # the main thread; elsewhere no timer is set. The timer always holds the nearest
    # deadline: an inner one never outlives the step around it.
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _expire(signum, frame):
        raise _OverBudget

    outer = bool(_deadlines)
    previous = None if outer else signal.signal(signal.SIGALRM, _expire)
    mine = time.monotonic() + seconds
    _deadlines.append(min(mine, _deadlines[-1]) if outer else mine)
    _arm()
    try:
        yield
    finally:
        _deadlines.pop()
        if outer:
            _arm()  # the step around this one: its own remaining time (or at once)
        else:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


@contextmanager
def within(seconds: float) -> Iterator[None]:
    """An optional piece of SymPy work (a nicer form, a faster kernel) that gives up
    with TimeUp after ``seconds``, so that the caller can take a plainer way."""
    try:
        with _deadline(seconds):
            yield
    except _OverBudget:
        raise TimeUp from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else ""


@contextmanager
def formula_step(where: str, step: str) -> Iterator[None]:
    """Run one generation step on one formula; any failure becomes one FormulaError
    line: ``<where>: <step> ...``."""
    seconds = budget_seconds()
    try:
        with _deadline(seconds):
            yield
    except _OverBudget:
        raise FormulaError(
            f"{where}: {step} took more than {seconds:g} s of SymPy work and was stopped "
            f"(simplify the formula, or raise SYMDL_SYMPY_SECONDS)") from None
    except FormulaError as err:
        message = str(err)
        raise FormulaError(message if message.startswith(where) else f"{where}: {message}"
                           ) from None
    except RecursionError:
        raise FormulaError(f"{where}: {step} failed: the expression is too deeply nested "
                           f"for SymPy (RecursionError)") from None
    except Exception as err:
        if os.environ.get("SYMDL_TRACEBACK"):
            raise
        raise FormulaError(f"{where}: {step} failed: {type(err).__name__}: "
                           f"{_first_line(err)}") from None
