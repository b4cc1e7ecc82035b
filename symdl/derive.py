"""Derivation: gradients by SymPy, rewritten in terms of the forward output.

This is where every derivative in symdl is taken. ``backward_formula`` turns a
forward formula y = f(x) into the formula of its backward kernel,
dx = dy * f'(x) with x eliminated in favour of y (sigmoid' -> y*(1-y)); no
derivative is written by hand anywhere in the project.
"""

from __future__ import annotations

import functools
import random

import sympy as sp

from .formula import (
    Batch,
    BatchGradient,
    BatchMap,
    BatchReduction,
    Contraction,
    Correlation,
    CorrelationGradient,
    Elementwise,
    FormulaError,
    MaskedElementwise,
    Network,
    NetworkGradient,
    Reduction,
    Window,
    WindowGradient,
)
from .formula_axis import AxisReduction
from .guard import TimeUp, within


class DerivationError(FormulaError):
    """SymPy could not derive what a formula asks for."""


def least_count(f: Elementwise, name: str) -> int:
    """The least value of an integer parameter (a step number, a batch size): 1, or
    more where a denominator that holds it vanishes. SymPy solves each denominator for
    it: 1 - beta1**t is 0 at t = 0 (so t >= 1), m - 1 at m = 1 (so m >= 2)."""
    (symbol,) = [p.symbol for p in f.params if p.name == name]
    zeros = []
    for expr in f.results().values():
        for node in sp.preorder_traversal(expr):
            if node.is_Pow and node.exp.is_negative and node.base.has(symbol):
                zeros += [z for z in sp.solve(node.base, symbol) if z.is_real]
    return max([1] + [int(sp.floor(z)) + 1 for z in zeros])


def backward_name(name: str) -> str:
    """sigmoid -> sigmoid_backward; batchnorm_forward -> batchnorm_backward."""
    return name.removesuffix("_forward") + "_backward"


def _agrees(candidate: sp.Expr, target: sp.Expr, x: sp.Symbol, y: sp.Symbol, f: sp.Expr) -> bool:
    """Check numerically that candidate(y=f(x)) equals target(x) at a few points
    (parameters at a few values too)."""
    rng = random.Random(0)
    others = sorted((candidate.free_symbols | target.free_symbols | f.free_symbols)
                    - {x, y}, key=lambda s: s.name)
    for _ in range(6):
        at = {s: sp.Float(rng.uniform(0.25, 2.0), 30) for s in others}
        xv = sp.Float(rng.uniform(-2.5, 2.5), 30)
        yv = f.subs(at).subs(x, xv).evalf(30)
        lhs = candidate.subs(at).subs(y, yv).evalf(30)
        rhs = target.subs(at).subs(x, xv).evalf(30)
        if not (lhs.is_real and rhs.is_real) or abs(lhs - rhs) > 1e-20 * (1 + abs(rhs)):
            return False
    return True


def _inverts(branch: sp.Expr, x: sp.Symbol, f: sp.Expr, y: sp.Symbol) -> bool:
    """Whether SymPy proves branch(f(x)) = x for every real x: then a derivative
    written through that branch is the same function over the whole domain. A branch
    that holds on part of it (LambertW's for SiLU) is not proven, and not used."""
    try:
        return sp.simplify(branch.subs(y, f) - x) == 0
    except Exception:  # (SymPy gave up: not proven)
        return False


def in_terms_of_output(expr: sp.Expr, x: sp.Symbol, f: sp.Expr, y: sp.Symbol) -> sp.Expr:
    """Rewrite ``expr`` (a function of x) as a function of y = f(x) alone.

    A general mechanism, not a table: first substitute f(x) -> y where it appears
    literally (tanh' = 1 - tanh(x)**2: an identity); otherwise solve y = f(x) for x
    and substitute each branch that SymPy proves to invert f on all reals (sigmoid's
    x = log(y/(1 - y))). Every candidate is also checked numerically, and the simplest
    wins. Raises DerivationError if x cannot be eliminated that way.
    """
    candidates = []
    direct = sp.simplify(expr.subs(f, y))
    if x not in direct.free_symbols:
        candidates.append(direct)
    if not candidates:
        for branch in sp.solve(sp.Eq(y, f), x):
            if not _inverts(branch, x, f, y):
                continue
            for form in (sp.simplify(expr.subs(x, branch)),):
                for c in (form, sp.simplify(form.rewrite(sp.exp))):
                    if x not in c.free_symbols:
                        candidates.append(c)
    good = [c for c in candidates if _agrees(c, expr, x, y, f)]
    if not good:
        raise DerivationError(f"cannot express {expr} in terms of the output {y} = {f}")
    return min(good, key=lambda c: (sp.count_ops(c), sp.default_sort_key(c)))


#: Seconds the output-only rewrite of a derivative may take before the backward
#: kernel takes the inputs instead (sp.solve can run for many minutes).
OUTPUT_REWRITE_SECONDS = 10.0


def local_derivative(expr: sp.Expr, x: sp.Symbol) -> sp.Expr:
    """d expr / dx, with PyTorch's convention at kinks: a step (the derivative of
    Max, Min, a clamp) is 0 where its argument is 0 (relu'(0) = 0, hardsigmoid'(+-3)
    = 0), sign(0) = 0 (abs'(0) = 0), and a Piecewise keeps its conditions (leaky ReLU's
    slope at 0, as `x > 0 ? 1 : slope`). Steps print as Piecewise, which every printer
    knows."""
    d = sp.diff(expr, x)
    d = d.replace(lambda e: isinstance(e, sp.Heaviside),
                  lambda e: sp.Piecewise((1, e.args[0] > 0), (0, True)))
    if d.has(sp.DiracDelta, sp.Derivative, sp.Subs):
        raise DerivationError(f"the derivative of {expr} with respect to {x} is not a "
                              f"function SymPy can write down: {d}")
    return d


def backward_formula(fwd: Elementwise) -> Elementwise:
    """The backward kernel's formula.

    One input and one output: dx = dy * f'(x), the derivative written in terms of the
    output y where SymPy proves that correct (``<name>_backward(y, dy)``, params too).
    Otherwise the kernel takes the inputs and one incoming gradient per output and
    returns the gradient of every input: dx_j = sum_k dy_k * dy_k/dx_j
    (``<name>_backward(x..., dy..., params)``)."""
    results = fwd.results()
    if len(fwd.inputs) == 1 and len(results) == 1:
        (x,) = fwd.inputs
        ((yname, f),) = results.items()
        y = sp.Symbol(yname, real=True)
        dy = sp.Symbol("d" + yname, real=True)
        try:
            with within(OUTPUT_REWRITE_SECONDS):
                local = in_terms_of_output(local_derivative(f, x), x, f, y)
        except (DerivationError, TimeUp, NotImplementedError):
            pass  # not provably a function of y alone: take the input instead
        else:
            return Elementwise(
                name=backward_name(fwd.name),
                section=fwd.section,
                title=f"{fwd.title}: backward",
                # (Not "dy * dy/dx": the incoming gradient and the derivative differ.)
                doc=f"Gradient of {fwd.name} from its output {yname}: d{x.name} = "
                    f"d{yname} * {fwd.name}'({x.name}), the derivative written in terms "
                    f"of {yname}.",
                inputs=(y, dy),
                params=fwd.params,
                outputs={"d" + x.name: dy * local},
                derived_from=fwd.name,
            )
    return _input_backward(fwd, results)


def param_gradient_formula(fwd: Elementwise) -> Reduction:
    """The gradients of the parameters a formula names in ``param_gradients``:
    d<param> = sum over every element of sum_k d<output_k> * d output_k / d param
    (a PReLU's slope, a temperature), as one reduction kernel
    ``<name>_param_grad(inputs..., d<output>..., params)`` over arrays of any one shape.
    """
    results = fwd.results()
    douts = {o: sp.Symbol("d" + o, real=True) for o in results}
    sums, outputs = {}, {}
    for q in (q for q in fwd.params if q.name in fwd.param_gradients):
        sums[f"sum_d{q.name}"] = sp.Add(*[douts[o] * local_derivative(e, q.symbol)
                                         for o, e in results.items()])
        outputs[f"d{q.name}"] = sp.Symbol(f"sum_d{q.name}", real=True)
    return Reduction(
        name=fwd.name + "_param_grad",
        section=fwd.section,
        title=f"{fwd.title}: parameter gradients",
        doc=f"Gradients of {fwd.name} with respect to {', '.join(fwd.param_gradients)}: "
            f"each the sum over every element of the incoming gradient times the output's "
            f"derivative by the parameter.",
        inputs=tuple(fwd.inputs) + tuple(douts.values()),
        params=fwd.params,
        sums=sums,
        outputs=outputs,
        any_shape=True,
        derived_from=fwd.name,
    )


def _input_backward(fwd: Elementwise, results: dict[str, sp.Expr]) -> Elementwise:
    douts = {o: sp.Symbol("d" + o, real=True) for o in results}
    names = {s.name for s in fwd.inputs} | {p.name for p in fwd.params}
    grads = {}
    for x in fwd.inputs:
        grads["d" + x.name] = sp.Add(*[douts[o] * local_derivative(e, x)
                                       for o, e in results.items()])
    clash = sorted(names & ({s.name for s in douts.values()} | set(grads)))
    if clash:
        raise DerivationError(
            f"backward=True names its incoming and outgoing gradients d<name>, but "
            f"{', '.join(clash)} is already an input or a parameter: rename it")
    ins = ", ".join(s.name for s in fwd.inputs)
    return Elementwise(
        name=backward_name(fwd.name),
        section=fwd.section,
        title=f"{fwd.title}: backward",
        doc=f"Gradient of {fwd.name} with respect to each input ({ins}), from the inputs "
            f"and the incoming gradient of each output: d<input> = sum over the outputs "
            f"of d<output> * (partial derivative of the output by the input).",
        inputs=tuple(fwd.inputs) + tuple(douts.values()),
        params=fwd.params,
        outputs=grads,
        domains=dict(fwd.domains),
        assumed=fwd.assumed,
        derived_from=fwd.name,
    )


def batch_backward_formula(fwd: Batch) -> BatchGradient:
    """Reverse-mode chain rule through the batch means of a ``Batch`` formula.

    With loss L = Sum_i Sum_o dO_i * o_i and stats s_k = (1/m) Sum_i g_k(x_i, s_<k):
      adjoint of s_k:  S_k = Sum_i Sum_o dO_i do_i/ds_k + Sum_{l>k} S_l (1/m) Sum_i dg_l/ds_k
      dx_i = Sum_o dO_i do_i/dx + Sum_k S_k (1/m) dg_k/dx
      dfeature = Sum_i Sum_o dO_i do_i/dfeature
    Every partial derivative is SymPy's; the sums become one reduction pass.
    """
    m = Batch.count
    stats = fwd.stat_symbols()
    douts = {o: sp.Symbol("d" + o, real=True) for o in fwd.outputs}
    seed = sp.Add(*[douts[o] * e for o, e in fwd.outputs.items()])  # Sum_o dO * o
    reductions: dict[str, sp.Expr] = {}
    vanished: dict[str, sp.Expr] = {}
    finish: dict[str, sp.Expr] = {}
    adjoint = {s: sp.Symbol(f"adj_{s.name}", real=True) for s in stats}
    # Stats in reverse order: a later stat's adjoint feeds the earlier ones'.
    for k in reversed(range(len(stats))):
        s = stats[k]
        direct = sp.diff(seed, s)
        total = 0
        if direct != 0:
            reductions[f"r_{s.name}"] = direct
            total += sp.Symbol(f"r_{s.name}", real=True)
        for later, g in list(zip(stats, fwd.stats.values(), strict=True))[k + 1:]:
            dg = sp.diff(g, s)
            name = f"r_{later.name}_{s.name}"
            if dg != 0 and _sum_vanishes(dg, fwd):
                vanished[name] = dg
            elif dg != 0:
                reductions[name] = dg
                total += adjoint[later] * sp.Symbol(name, real=True) / m
        finish[adjoint[s].name] = total
    for feat in fwd.features:
        d = sp.diff(seed, feat)
        reductions[f"r_{feat.name}"] = d
        finish["d" + feat.name] = sp.Symbol(f"r_{feat.name}", real=True)
    outputs = {}
    for x in fwd.inputs:
        dx = sp.diff(seed, x)
        for s, g in zip(stats, fwd.stats.values(), strict=True):
            dx += adjoint[s] * sp.diff(g, x) / m
        outputs["d" + x.name] = dx
    used = set().union(*[e.free_symbols for e in (*reductions.values(), *outputs.values())])
    features = [f for f in fwd.features if f in used] + stats
    return BatchGradient(
        name=backward_name(fwd.name),
        section=fwd.section,
        title=f"{fwd.title}: backward",
        doc=f"Gradients of {fwd.name} with respect to its inputs and features, derived by "
            "SymPy through the batch means.",
        arrays=(*douts.values(), *fwd.inputs),
        features=tuple(features),
        params=fwd.params,
        reductions=reductions,
        finish=finish,
        outputs=outputs,
        feature_outputs=tuple("d" + f.name for f in fwd.features),
        vanished=vanished,
        # A stat that SymPy knows is >= 0 (a mean of squares: the variance) is checked.
        domains={**{k: d for k, d in fwd.domains.items() if sp.Symbol(k, real=True) in features},
                 **{k: "nonnegative" for k, e in fwd.stats.items() if e.is_nonnegative}},
        derived_from=fwd.name,
    )


def _sum_vanishes(summand: sp.Expr, fwd: Batch) -> bool:
    """Whether Sum_i summand is zero by the definitions of the batch means.

    An affine summand c0 + Sum_x c_x x_i (c free of the inputs) sums to
    m (c0 + Sum_x c_x mean_x) when each x with c_x != 0 has a stat mean_x defined as the
    mean of x itself; SymPy decides whether that is zero. Such a sum (the variance's
    Sum_i 2 (mean - x_i)) is exactly zero, while summing it in floating point would only
    add rounding, and a pass, to the backward (PyTorch's closed form leaves it out too).
    """
    inputs = list(fwd.inputs)
    if any(sp.diff(summand, a, b) != 0 for a in inputs for b in inputs):
        return False  # not affine in the inputs
    means = {g: s for s, g in zip(fwd.stat_symbols(), fwd.stats.values(), strict=True)}
    total = summand.xreplace({x: 0 for x in inputs})
    for x in inputs:
        c = sp.diff(summand, x)
        if c != 0:
            if x not in means:
                return False
            total += c * means[x]
    return sp.simplify(total) == 0


def mask_expectations(f: MaskedElementwise) -> dict[bool, dict[str, tuple[sp.Expr, sp.Expr]]]:
    """Per variant and output: (the unevaluated expectation over the mask, its value).

    The mask symbol X becomes a ``sympy.stats`` Bernoulli(keep) random variable and
    SymPy takes the expectation: for dropout, the test-time output.
    """
    from sympy.stats import Bernoulli, E, Expectation

    m = f.mask
    rv = Bernoulli(m.symbol.name, m.keep)
    out = {}
    for v, outputs in f.variants.items():
        out[v] = {}
        for k, e in outputs.items():
            value = sp.simplify(E(e.subs(m.symbol, rv)))
            if value.atoms(sp.stats.rv.RandomSymbol):
                raise DerivationError(f"{f.name}: cannot take the expectation of {e}")
            out[v][k] = (Expectation(e.subs(m.symbol, rv)), value)
    return out


def inference_formula(f: MaskedElementwise) -> MaskedElementwise:
    """The test-time formula: each output replaced by its expectation over the mask."""
    expectations = mask_expectations(f)
    variants = {v: {k: value for k, (_, value) in outs.items()}
                for v, outs in expectations.items()}
    used = set().union(*(e.free_symbols for o in variants.values() for e in o.values()))
    used |= set().union(*(f.let[s].free_symbols for s in used if s in f.let))
    return MaskedElementwise(
        name=f"{f.name}_inference",
        section=f.section,
        title=f"{f.title}: inference",
        doc=f"Test-time {f.name}: the expected training output over the mask.",
        inputs=f.inputs,
        args=tuple(a for a in f.args if a.symbol in used),
        let={s: e for s, e in f.let.items() if s in used},
        flag=f.flag,
        flag_default=f.flag_default,
        variants=variants,
        derived_from=f.name,
    )


WINDOW_VALUE = sp.Symbol("v", real=True)
WINDOW_REST = sp.Symbol("rho", real=True)


def window_local(f: Window) -> sp.Expr:
    """d y / d v for one element v of a window, by SymPy.

    An associative reduction of the window is op(h(v), rho), with h the element's
    function and rho the reduction of every other element (any window size): so the
    derivative needs no unrolled window. Average: 1/f**2; maximum: Heaviside(v - rho).
    """
    from .window import reduction_op

    node = f.node()
    element = f.element()
    r = sp.Symbol("_r")
    finalize = f.expr.xreplace({node: r})
    h = node.function.xreplace({element: WINDOW_VALUE})
    reduced = reduction_op(node)(h, WINDOW_REST)
    return sp.simplify(sp.diff(finalize.xreplace({r: reduced}), WINDOW_VALUE))


def window_backward_formula(fwd: Window) -> WindowGradient:
    """The backward kernel's formula: dx = sum over the windows holding x of dy * dy/dv."""
    return WindowGradient(
        name=backward_name(fwd.name),
        section=fwd.section,
        title=f"{fwd.title}: backward",
        doc=f"Gradient of {fwd.name} with respect to its input: each window passes "
            f"d{fwd.output.base.name} times the derivative SymPy takes of the window's "
            "reduction with respect to each of its elements.",
        forward=fwd,
        local=window_local(fwd),
        value=WINDOW_VALUE,
        rest=WINDOW_REST,
        derived_from=fwd.name,
    )


def indexed_gradient(target: sp.IndexedBase, loss: sp.Expr, limits: list[tuple],
                     names: list[str]) -> tuple[sp.Indexed, sp.Expr]:
    """d loss / d target[h...] by SymPy, for loss = Sum over ``indices`` of a summand.

    SymPy differentiates the summand with respect to target[h1, h2, ...] (fresh
    symbols named ``names``), which yields KroneckerDelta(h_k, e_k) for each of the
    target's index expressions e_k. A delta with a bare summation index (w's o, c, a,
    b) is summed out by substitution; one with a compound index (x's s*i + a - p)
    stays: it says where the term lands. ``limits`` are the (index, lower, upper) of
    every summation index. Returns (dtarget[h...], Sum(value, remaining limits)).
    """
    hs = [sp.Symbol(nm, integer=True) for nm in names]
    term = sp.diff(loss, target[tuple(hs)])
    bounds = {lim[0]: lim for lim in limits}
    rest = [lim[0] for lim in limits]
    for delta in sorted(term.atoms(sp.KroneckerDelta), key=sp.default_sort_key):
        h, e = delta.args if delta.args[0] in hs else delta.args[::-1]
        if e in rest:
            term = term.xreplace({delta: sp.S.One}).xreplace({e: h})
            rest.remove(e)
    grad = sp.IndexedBase("d" + target.label.name)[tuple(hs)]
    return grad, sp.Sum(term, *[bounds[k] for k in rest]) if rest else term


def _plain_axes(fwd: Contraction, base: sp.IndexedBase) -> list[str]:
    """The names of base's indices in fwd.expr, where every use of base has the same
    plain indices (A[i, j]); else the caller must name the gradient's axes."""
    uses = {ix.indices for ix in fwd.expr.atoms(sp.Indexed) if ix.base == base}
    (indices,) = uses if len(uses) == 1 else (None,)
    if indices is None or not all(isinstance(k, sp.Symbol | sp.Idx) for k in indices):
        raise DerivationError(f"{fwd.name}: name the axes of d{base.name}: {base.name} is "
                              "used with index expressions")
    return [str(k.label) if isinstance(k, sp.Idx) else k.name for k in indices]


def contraction_gradients(fwd: Contraction, axes: dict[str, list[str]] | None = None
                          ) -> dict[str, tuple[sp.Indexed, sp.Expr]]:
    """The gradient of each input array of a contraction in index notation, by SymPy.

    With L = Sum over the output's indices of dy * expr (dy the incoming gradient),
    each array's gradient is dL/d<array>[h...]: every additive term of expr is
    differentiated over its own summation limits (``indexed_gradient``), and the
    terms in which the array appears are added. One mechanism for every contraction:
    matvec (dA = dy x^T, dx = A^T dy), a network's layer, a convolution. ``axes``
    names the gradient's indices per array (default: the array's own indices).
    """
    seed = sp.IndexedBase("d" + fwd.output.base.name)[fwd.output.indices]
    out_limits = fwd.output_limits()
    gradients = {}
    for base in fwd.input_bases():
        names = list((axes or {}).get(base.name) or _plain_axes(fwd, base))
        parts = [indexed_gradient(base, seed * summand, out_limits + limits, names)
                 for summand, limits in fwd.terms() if summand.has(base)]
        gradients[base.name] = (parts[0][0], sp.Add(*[value for _, value in parts]))
    return gradients


def contraction_backward_formulas(fwd: Contraction) -> list[Contraction]:
    """One kernel per input array of a user's contraction, ``<name>_grad_<array>``:
    its gradient, by ``contraction_gradients``, itself a contraction (a linear layer's
    dW[o, i] = Sum(dy[n, o]*x[n, i], n), dx and dbias), taking the arrays it reads
    and the incoming gradient ``d<output>``."""
    ranged = {str(j.label): j for j in fwd.expr.atoms(sp.Idx) | set(fwd.output.indices)}
    seed = "d" + fwd.output.base.name
    out = []
    for base, (target, value) in contraction_gradients(fwd).items():
        # The gradient's indices come back as plain symbols: give them the forward's
        # ranges again, which tie the kernel's array shapes together.
        plain = {s: ranged[s.name] for s in value.atoms(sp.Symbol) | target.atoms(sp.Symbol)
                 if s.name in ranged and not isinstance(s, sp.Idx)}
        value = value.xreplace(plain).replace(
            lambda t: isinstance(t, sp.Sum),
            lambda t: sp.Sum(t.function, *[lim[0] if isinstance(lim[0], sp.Idx) else lim
                                           for lim in t.limits]))
        reads = [a for a in fwd.arg_order if value.has(sp.IndexedBase(a))]
        out.append(Contraction(
            name=f"{fwd.name}_grad_{base}",
            section=fwd.section,
            title=f"{fwd.title}: gradient of {base}",
            doc=f"Gradient of sum({seed} * {fwd.output.base.name}) with respect to {base}, "
                f"derived by SymPy in index notation.",
            output=target.xreplace(plain),
            expr=value,
            arg_order=(*reads, seed),
            derived_from=fwd.name,
        ))
    return out


def correlation_backward_formula(fwd: Correlation) -> CorrelationGradient:
    """Gradients of a correlation layer with respect to x, w and the bias
    (``contraction_gradients``), the gradients' indices named as the forward's
    (dx[n, c, h, v])."""
    axes = {fwd.input: ["n", "c", "h", "v"], fwd.weight: ["o", "c", "a", "b"], fwd.bias: ["o"]}
    derived = contraction_gradients(fwd, axes)
    return CorrelationGradient(
        name=backward_name(fwd.name),
        section=fwd.section,
        title=f"{fwd.title}: backward",
        doc=f"Gradients of {fwd.name} with respect to {fwd.input}, {fwd.weight} and the "
            "bias, derived by SymPy in index notation.",
        forward=fwd,
        gradients={name: derived[name] for name in (fwd.input, fwd.weight, fwd.bias)},
        derived_from=fwd.name,
    )


def expand_formulas(formulas: list) -> list:
    """The formulas of a module plus every formula derived from them, in order."""
    out = []
    for f in formulas:
        out.append(f)
        if isinstance(f, Elementwise):
            if f.backward:
                out.append(backward_formula(f))
            if f.param_gradients:
                out.append(param_gradient_formula(f))
        elif isinstance(f, Batch) and f.backward:
            out.append(batch_backward_formula(f))
        elif isinstance(f, MaskedElementwise) and f.mask is not None:
            out.append(inference_formula(f))
        elif isinstance(f, BatchReduction) and f.gradient:
            out.append(gradient_formula(f))
        elif isinstance(f, Network):
            out.append(network_backward_formula(f))
        elif isinstance(f, Correlation) and f.backward:
            out.append(correlation_backward_formula(f))
        elif isinstance(f, Contraction) and f.backward:
            out += contraction_backward_formulas(f)
        elif isinstance(f, Window) and f.backward:
            out.append(window_backward_formula(f))
        elif isinstance(f, AxisReduction) and f.backward:
            from .derive_axis import axis_backward_formula

            out.append(axis_backward_formula(f))
    return out


#: The bounds of an input domain, where an expression may meet a zero denominator.
DOMAIN_BOUNDS = {"probability": (0, 1)}


def signed_zero_safe(expr: sp.Expr, x: sp.Symbol, domain: str | None) -> sp.Expr:
    """expr with each linear denominator factor that is <= 0 on x's domain negated
    (and the sign taken out): SymPy writes 1/(d - 1) for -1/(1 - d), but in IEEE
    arithmetic 1.0 - 1.0 is +0, so at the domain's edge d = 1 the first gives +inf
    where the limit from inside the domain is -inf."""
    if domain not in DOMAIN_BOUNDS:
        return expr
    lo, hi = DOMAIN_BOUNDS[domain]

    def fix(node: sp.Expr) -> sp.Expr:
        if not (node.is_Pow and node.exp.is_Integer and node.exp < 0 and node.exp % 2):
            return node
        sign, factors = 1, []
        for factor in sp.Mul.make_args(node.base):
            linear = factor.is_polynomial(x) and sp.degree(factor, x) == 1
            if linear and factor.subs(x, lo) <= 0 and factor.subs(x, hi) <= 0:
                sign, factor = -sign, sp.expand(-factor)
            factors.append(factor)
        return sign * sp.Pow(sp.Mul(*factors), node.exp) if sign < 0 else node

    return expr.replace(lambda n: n.is_Pow, fix)


def gradient_formula(f: BatchReduction) -> BatchMap:
    """The gradient kernel's formula: d output / d x_i for every input x of every batch.

    The output J is a function of the sums S_k = sum_i t_k(x_i), so by the chain rule
    dJ/dx_i = sum_k dJ/dS_k * dt_k/dx (x_i): SymPy takes both derivatives. dJ/dS_k
    must depend on the batch counts only (true of means and plain sums); a J that
    depends on its sums nonlinearly would need a second pass and is refused.
    """
    ((jname, J),) = f.outputs.items()
    outputs, of = {}, {}
    for batch in f.batches:
        for x in batch.inputs:
            grad = sp.S.Zero
            for (k, term), s in zip(f.sums.items(), f.sum_symbols(), strict=True):
                outer = sp.diff(J, s)
                if outer.free_symbols & set(f.sum_symbols()):
                    raise DerivationError(f"{f.name}: d{jname}/d{k} depends on the sums; "
                                          "only costs linear in their sums have a "
                                          "one-pass gradient kernel")
                if outer != 0 and x in term.free_symbols:
                    local = sp.simplify(sp.diff(term, x))
                    grad += outer * signed_zero_safe(local, x, f.domains.get(x.name))
            outputs[f"grad_{x.name}"] = grad
            of[f"grad_{x.name}"] = x.name
    return BatchMap(
        name=f"{f.name}_grad",
        section=f.section,
        title=f"{f.title}: gradient",
        doc=f"Gradient of {f.name}: d{jname}/dx_i for each element of each input.",
        batches=f.batches,
        outputs=outputs,
        of=of,
        domains=dict(f.domains),
        derived_from=f.name,
    )


def hadamard_form(expr: sp.Expr, y: sp.Symbol, A: sp.MatrixExpr) -> sp.MatrixExpr:
    """A scalar expression in y, applied to each element of the column A, as a matrix
    expression: y (1 - y) -> A o (1 - A), 1 - y**2 -> 1 - A^(o2) (o: elementwise)."""
    one = sp.OneMatrix(*A.shape)
    if expr == y:
        return A
    if expr.is_Number:
        return one if expr == 1 else expr * one
    if expr.is_Add:  # constants first, as the scalar sheet prints them: 1 - A
        terms = sorted(expr.args, key=lambda t: (not t.is_Number, sp.default_sort_key(t)))
        return sp.MatAdd(*[hadamard_form(t, y, A) for t in terms], evaluate=False)
    if expr.is_Mul:
        coeff, factors = expr.as_coeff_mul()
        lifted = [hadamard_form(f, y, A) for f in factors]
        prod = lifted[0] if len(lifted) == 1 else sp.HadamardProduct(*lifted)
        return prod if coeff == 1 else coeff * prod
    if expr.is_Pow and expr.base == y and expr.exp.is_Integer and expr.exp > 0:
        return sp.HadamardPower(A, expr.exp)
    raise DerivationError(f"cannot write {expr} elementwise in {A}")


def activation_local(expr: sp.Expr, x: sp.Symbol, y: sp.Symbol) -> tuple[bool, sp.Expr]:
    """A network activation's derivative (``local_derivative``: relu'(0) = 0): (True,
    it in terms of the output y) where ``in_terms_of_output`` proves that form within
    its time budget (sigmoid: y (1 - y), tanh: 1 - y**2), else (False, it in terms of
    the input x) (ReLU, GELU): the backward then needs the pre-activation."""
    return _activation_local(expr, x, y)


@functools.lru_cache(maxsize=64)
def _activation_local(expr: sp.Expr, x: sp.Symbol, y: sp.Symbol) -> tuple[bool, sp.Expr]:
    # (Cached: the forward kernel's plan asks too, to know what to keep for the backward.)
    d = local_derivative(expr, x)
    try:
        with within(OUTPUT_REWRITE_SECONDS):
            return True, in_terms_of_output(d, x, expr, y)
    except (DerivationError, TimeUp, NotImplementedError):
        return False, d


def network_backward_formula(fwd: Network) -> NetworkGradient:
    """Reverse mode through a ``Network``, every derivative taken by SymPy.

    Per sample, with L = df * f: SymPy's matrix calculus differentiates the readout
    and each linear layer (d tr(delta^T (W a + b)) / dW = delta a^T, / da = W^T delta,
    / db = delta). Each activation's derivative is differentiated from its scalar
    formula (``activation_local``) and applied elementwise: delta_l = G_l o act'(A_l)
    in terms of the output where proven, else delta_l = G_l o act'(Z_l), where
    G_l = dL/dA_l.
    """
    s = fwd.symbols()
    df = sp.Symbol("df", real=True)
    depth = len(fwd.layers)
    loss = sp.Trace(df * fwd.steps()[fwd.output])
    steps: dict[str, sp.MatrixExpr] = {}
    local: dict[str, sp.Expr] = {}
    n = fwd.widths()
    steps[f"G{depth}"] = loss.diff(s[f"A{depth}"])
    steps["d" + fwd.readout] = loss.diff(s[fwd.readout])
    for k in range(depth, 0, -1):
        layer = fwd.layers[k - 1]
        (x,) = layer.activation.inputs
        ((yname, expr),) = layer.activation.outputs.items()
        output_form, d = activation_local(expr, x, sp.Symbol(yname, real=True))
        G = sp.MatrixSymbol(f"G{k}", n[k], 1)
        if output_form:
            a = sp.Symbol(f"A{k}", real=True)
            local[f"A{k}"] = d.subs(sp.Symbol(yname, real=True), a)
            try:
                act = hadamard_form(local[f"A{k}"], a, s[f"A{k}"])
            except DerivationError:  # (not a polynomial in A: applied element by element)
                act = s[f"A{k}"].applyfunc(sp.Lambda(a, local[f"A{k}"]))
        else:
            z = sp.Symbol(f"Z{k}", real=True)
            local[f"Z{k}"] = d.subs(x, z)
            act = s[f"Z{k}"].applyfunc(sp.Lambda(z, local[f"Z{k}"]))
        factors = act.args if isinstance(act, sp.HadamardProduct) else (act,)
        steps[f"delta{k}"] = sp.HadamardProduct(G, *factors)
        delta = sp.MatrixSymbol(f"delta{k}", n[k], 1)
        prev = s[f"A{k - 1}"] if k > 1 else s[fwd.sample]
        z_value = s[layer.weight] * prev
        if layer.bias is not None:
            z_value = z_value + s[layer.bias]
        linear = sp.Trace(delta.T * z_value)
        steps["d" + layer.weight] = linear.diff(s[layer.weight])
        if layer.bias is not None:
            steps["d" + layer.bias] = linear.diff(s[layer.bias])
        steps[f"G{k - 1}" if k > 1 else "d" + fwd.input] = linear.diff(prev)
    params = [n_ for ly in fwd.layers for n_ in (ly.weight, ly.bias) if n_ is not None]
    return NetworkGradient(
        name=backward_name(fwd.name),
        section=fwd.section,
        title=f"{fwd.title}: backward",
        doc=f"Gradients of sum(df * {fwd.output}) over the batch with respect to the input, "
            + ("the weights, the biases" if len(params) > depth else "the weights")
            + " and the readout, derived by SymPy (reverse mode).",
        network=fwd,
        steps=steps,
        local=local,
        shared=tuple("d" + n_ for n_ in [*params, fwd.readout]),
        results=("d" + fwd.input, *("d" + n_ for n_ in params), "d" + fwd.readout),
        derived_from=fwd.name,
    )
