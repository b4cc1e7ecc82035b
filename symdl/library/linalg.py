"""Linear algebra: the matrix-vector product, in index notation."""

import sympy as sp

from symdl.formula import Contraction

SECTION = "Matrix-vector product"

m, n = sp.symbols("m n", integer=True, positive=True)
i = sp.Idx("i", m)
j = sp.Idx("j", n)
A = sp.IndexedBase("A", shape=(m, n))
x = sp.IndexedBase("x", shape=(n,))
y = sp.IndexedBase("y", shape=(m,))

matvec = Contraction(
    "matvec",
    SECTION,
    "Matrix-vector product",
    "Row `i` of `y` is the dot product of row `i` of `A` with `x`: `y` = `A` `x`.",
    output=y[i],
    expr=sp.Sum(A[i, j] * x[j], (j, 0, n - 1)),
    arg_order=("A", "x"),
)

FORMULAS = [matvec]
