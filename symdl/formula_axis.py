"""``AxisReduction``: statistics along one axis of N-d arrays, then outputs.

Softmax, log-softmax, LayerNorm, RMSNorm, softmax cross-entropy and mean losses are
all one shape: along the reduced axis, a few statistics (a max, sums, means), each
possibly using the earlier ones, then outputs per element (softmax's y) or per row
(a cross-entropy loss). The kernel takes ``axis`` (any axis of the inputs, or None
for all their elements) as a keyword argument.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import sympy as sp

from .errors import FormulaError
from .formula import (
    DOMAINS,
    Formula,
    Param,
    _check_free,
    _exprs,
    _symbols,
    check_identifier,
)

#: How a statistic combines its per-element terms along the axis.
STAT_OPS = ("sum", "mean", "max", "min")


@dataclass(frozen=True)
class AxisReduction(Formula):
    """Statistics along an axis, then per-element and per-row outputs.

    ``inputs`` are arrays of one shape (any number of dimensions). ``weights`` are 1-D
    arrays with one value per position along the reduced axis (LayerNorm's gamma and
    beta). ``row_inputs`` are arrays with one value per row, the inputs' shape without
    the axis (batch norm's gamma and beta along axis 0; in a derived kernel, a row
    output's incoming gradient). ``stats`` maps each statistic's name, in order, to
    ``(op, term)``: op is "sum", "mean", "max" or "min" of the per-element ``term``
    along the axis; a term may use the inputs, weights, row inputs, parameters, ``n``
    (the length of the axis) and the earlier statistics. ``outputs`` map names to
    expressions: an output that uses an input or a weight is computed per element (the
    inputs' shape); one that uses only statistics, row inputs, parameters and ``n`` is
    one value per row (the shape without the axis). ``backward=True`` asks SymPy for
    ``<name>_backward``: the gradients of every input, row input and weight, derived
    by the chain rule through the statistics (``symdl.derive_axis``). ``summed`` is
    for that derived kernel: per-element outputs summed over the rows into a weight's
    gradient.
    """

    inputs: tuple[sp.Symbol, ...] = ()
    weights: tuple[sp.Symbol, ...] = ()
    params: tuple[Param, ...] = ()
    stats: Mapping[str, tuple[str, sp.Expr]] = field(default_factory=dict)
    outputs: Mapping[str, sp.Expr] = field(default_factory=dict)
    backward: bool = False
    domains: Mapping[str, str] = field(default_factory=dict)
    row_inputs: tuple[sp.Symbol, ...] = ()
    summed: tuple[str, ...] = ()
    plot: tuple[float, float] | None = None
    kind: str = field(default="axis reduction", init=False)

    #: the length of the reduced axis, usable in terms and outputs
    count = sp.Symbol("n", integer=True, positive=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        for k in ("inputs", "weights", "row_inputs"):
            object.__setattr__(self, k, _symbols(getattr(self, k), k[:-1]))
        object.__setattr__(self, "params", tuple(self.params))
        if not self.inputs:
            raise FormulaError(f"{self.name}: an axis reduction needs at least one input")
        stats = {}
        for k, v in dict(self.stats).items():
            check_identifier(k, "statistic")
            if not (isinstance(v, tuple) and len(v) == 2 and v[0] in STAT_OPS):
                raise FormulaError(f"{self.name}: statistic {k!r} must be (op, term) with op "
                                   f"one of {', '.join(STAT_OPS)}")
            stats[k] = (v[0], sp.sympify(v[1]))
        object.__setattr__(self, "stats", stats)
        object.__setattr__(self, "outputs", _exprs(self.outputs, "output"))
        names = [*self.argument_names(), *self.stats, *self.outputs]
        dup = sorted({n for n in names if names.count(n) > 1} | ({self.count.name} & set(names)))
        if dup:
            raise FormulaError(f"{self.name}: name(s) {dup} used twice (n is the axis length)")
        allowed = ({*self.inputs, *self.weights, *self.row_inputs, self.count}
                   | {p.symbol for p in self.params})
        for k, (_, term) in self.stats.items():
            _check_free({k: term}, allowed, f"{self.name}: statistic")
            allowed.add(sp.Symbol(k, real=True))
        _check_free(self.outputs, allowed, f"{self.name}: output")
        unknown = set(self.summed) - set(self.outputs)
        if unknown or any(n not in self.element_outputs() for n in self.summed):
            raise FormulaError(f"{self.name}: summed must name per-element outputs")
        for k, d in self.domains.items():
            if d not in DOMAINS or k not in {s.name for s in self.inputs}:
                raise FormulaError(f"{self.name}: bad domain {k!r}: {d!r}")

    def stat_symbols(self) -> list[sp.Symbol]:
        return [sp.Symbol(k, real=True) for k in self.stats]

    def element_outputs(self) -> list[str]:
        """Outputs computed per element: those that use an input or a weight."""
        per_element = {*self.inputs, *self.weights}
        return [k for k, e in self.outputs.items() if e.free_symbols & per_element]

    def row_outputs(self) -> list[str]:
        return [k for k in self.outputs if k not in self.element_outputs()]

    def expressions(self) -> dict[str, sp.Expr]:
        j = sp.Symbol("j", integer=True)
        n = self.count
        out: dict[str, sp.Expr] = {}
        for k, (op, term) in self.stats.items():
            indexed = term.subs({s: sp.Indexed(s.name, j) for s in self.inputs})
            if op in ("sum", "mean"):
                total = sp.Sum(indexed, (j, 1, n))
                out[k] = total / n if op == "mean" else total
            else:
                # (an undefined function: shown as max(x[j]) over j, never evaluated)
                out[k] = sp.Function(f"{op}_j")(indexed)
        return {**out, **self.outputs}

    def argument_names(self) -> list[str]:
        return [s.name for s in (*self.inputs, *self.row_inputs, *self.weights)] + [
            p.name for p in self.params]

    def content_hash(self) -> str:
        import hashlib

        extra = repr(([s.name for s in self.weights], [s.name for s in self.row_inputs],
                      list(self.summed), [op for op, _ in self.stats.values()]))
        return hashlib.sha256((super().content_hash() + extra).encode()).hexdigest()[:16]
