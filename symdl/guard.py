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


_active = threading.local()


@contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    # A real-time timer interrupts pure-Python work wherever it is. Signals reach only
    # the main thread; elsewhere (or nested inside a running budget) no timer is set.
    if threading.current_thread() is not threading.main_thread() or getattr(
            _active, "on", False):
        yield
        return

    def _expire(signum, frame):
        raise _OverBudget

    previous = signal.signal(signal.SIGALRM, _expire)
    _active.on = True
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        _active.on = False


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
