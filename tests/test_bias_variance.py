"""The bias and variance recipe: exact differences and the advice of the recipe."""

import math
from fractions import Fraction

import pytest


@pytest.mark.parametrize("train, dev, base, diagnosis", [
    (0.15, 0.16, 0.0, "high bias"),        # train error far from the base error
    (0.01, 0.11, 0.0, "high variance"),    # the dev error is the problem
    (0.08, 0.10, 0.075, "high variance"),  # Ng: human level 7.5%: variance is larger
    (0.08, 0.10, 0.01, "high bias"),       # Ng: human level 1%: avoidable bias is larger
    (0.05, 0.05, 0.05, "done"),
    (0.02, 0.01, 0.02, "done"),            # dev better than train: nothing to fix
    (0.10, 0.25, 0.0, "high variance"),
    (0.0, 0.0, 0.0, "done"),
])
def test_recipe(kernels, train, dev, base, diagnosis):
    r = kernels.bias_variance(train, dev, base)
    assert r.diagnosis == diagnosis
    # Each difference is one float subtraction: the exact difference, correctly rounded.
    assert r.avoidable_bias == float(Fraction(train) - Fraction(base))
    assert r.variance == float(Fraction(dev) - Fraction(train))
    if diagnosis == "high bias":
        assert "bigger network" in r.advice and "train longer" in r.advice
    elif diagnosis == "high variance":
        assert "more data" in r.advice and "regularization" in r.advice
    else:  # "done" too tells the user what to do next (issue 17, item 7)
        assert r.advice and all(isinstance(a, str) and a for a in r.advice)
    avoidable_bias, variance, _, advice = r  # a small named tuple
    assert (avoidable_bias, variance) == (r.avoidable_bias, r.variance)


def test_tie_goes_to_bias_first(kernels):
    # Equal gaps: the recipe asks about bias first (fix the training set first).
    assert kernels.bias_variance(0.5, 0.75, 0.25).diagnosis == "high bias"
    assert kernels.bias_variance(0.1, 0.2).avoidable_bias == 0.1  # base error defaults to 0


@pytest.mark.parametrize("args, name, exc", [
    ((-0.1, 0.2), "'train_error'", ValueError),
    ((0.1, math.nan), "'dev_error'", ValueError),
    ((0.1, 0.2, math.inf), "'base_error'", ValueError),
    (("0.1", 0.2), "'train_error'", TypeError),
    ((0.1, True), "'dev_error'", TypeError),
])
def test_bad_arguments_are_named(kernels, args, name, exc):
    with pytest.raises(exc, match=name):
        kernels.bias_variance(*args)


def test_sheet_draws_the_recipe_from_the_formula():
    from symdl.codegen import builtin_modules, render
    from symdl.library.bias import bias_variance

    tex = render(builtin_modules())["sheet/symdl.tex"]
    assert r"\text{avoidable bias} = e_{\mathrm{train}} - e_{\mathrm{base}}" in tex
    assert r"\text{variance} = e_{\mathrm{dev}} - e_{\mathrm{train}}" in tex
    for branch in bias_variance.branches:
        assert branch.question in tex
        for advice in branch.advice:
            assert f"-- {advice}" in tex
    assert r"$\text{variance} > 0$" in tex
    assert r"\begin{tikzpicture}" in tex and "(q1) -- node[right] {no} (done)" in tex


def test_a_recipe_outcome_without_advice_is_refused():
    import sympy as sp

    from symdl.errors import FormulaError
    from symdl.formula import Arg, Branch, ScalarFunction

    e = sp.Symbol("e", real=True)
    for otherwise in [("done", ()), ("done", ("",))]:
        with pytest.raises(FormulaError, match="'done' needs advice"):
            ScalarFunction("recipe", "S", "Recipe", "A recipe.",
                           args=[Arg("e", e, check="finite", doc="an error")],
                           outputs={"gap": e},
                           branches=(Branch("Gap?", sp.Symbol("gap", real=True) > 0, "gap",
                                            ("close it",)),),
                           otherwise=otherwise)
