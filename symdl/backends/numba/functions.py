"""The Numba backend's choice of function implementations (pystencils' select_function).

Numba cannot vectorize a loop that calls ``math.exp`` (no SVML in this llvmlite), so
exp, tanh and log1p become the vectorizable algorithms of ``symdl.vecmath``, written in
SymPy and printed into the module as jitted functions (``templates/numba/vecmath.py.j2``).
Every other function prints as its ``math`` call (``printer.NumbaPrinter``). A CUDA
backend would choose libdevice calls here instead.
"""

from __future__ import annotations

from ...vecmath import ALGORITHMS, vectorize

select_functions = vectorize

__all__ = ["ALGORITHMS", "select_functions"]
