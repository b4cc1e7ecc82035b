"""The kernel IR: between the formulas (what) and a backend (how it runs).

    formulas (symdl.formula, symdl.library)
      -> derivation (symdl.derive: gradients; symdl.stable: stable rewrites)
      -> IR (this package: build.py makes Pointwise / Reduction nodes, passes.py
         schedules their expressions into Blocks of assignments)
      -> backend (symdl.backends.numba: printer, functions, loops)
      -> templates (templates/numba/*.j2: structure only)

The IR holds SymPy expressions, never printed text, and no target-specific choice:
a backend says which implementation a function gets and how the iteration space
becomes loops.
"""

from .nodes import Assign, Axis, Block, Element, Local, Pointwise, Reduction
from .passes import hoist_invariants, schedule

__all__ = ["Assign", "Axis", "Block", "Element", "Local", "Pointwise", "Reduction",
           "hoist_invariants", "schedule"]
