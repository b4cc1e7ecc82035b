"""The Numba backend: a printer, a choice of functions and a mapping onto loops.

As in SymForce's ``codegen/backends/<lang>/``, a backend is three small modules and
structure-only templates (``templates/numba/``):
    printer.py     IR blocks -> Python source statements (``symdl.printers.NumbaPrinter``
                   prints each expression);
    functions.py   which implementation each function gets (``select_functions``);
    loops.py       how an iteration space becomes loops (serial, parallel, streaming).
``lowering.py`` (and ``lowering_axis.py``) drive it: formula -> IR (``symdl.ir``) -> the
printer, functions and loops here -> the template data.
"""

from .functions import select_functions
from .loops import pointwise_cores, streamable, wide_vectors
from .printer import Statement, element_target, print_block

__all__ = ["Statement", "element_target", "pointwise_cores", "print_block",
           "select_functions", "streamable", "wide_vectors"]
