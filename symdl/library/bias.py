"""The bias and variance recipe: avoidable bias and variance, and what to do next.

The two differences are SymPy expressions like every formula; the recipe's decisions
are SymPy conditions on them, printed into the function and drawn as a flowchart.
"""

import sympy as sp

from symdl.formula import Arg, Branch, ScalarFunction

SECTION = "Bias and variance"

e_train = sp.Symbol("e_train", real=True, nonnegative=True)
e_dev = sp.Symbol("e_dev", real=True, nonnegative=True)
e_base = sp.Symbol("e_base", real=True, nonnegative=True)
# The output symbols, as ScalarFunction.output_symbols() names them.
bias = sp.Symbol("avoidable_bias", real=True)
variance = sp.Symbol("variance", real=True)

ANOTHER_ARCHITECTURE = "try another network architecture"

bias_variance = ScalarFunction(
    "bias_variance",
    SECTION,
    "Bias and variance recipe",
    "Compare the training error with the base error (human-level or Bayes error, "
    "0 by default) and the dev error with the training error; work on the larger gap "
    "first, then check again.",
    args=[Arg("train_error", e_train, check="finite_nonnegative", doc="training set error"),
          Arg("dev_error", e_dev, check="finite_nonnegative", doc="dev set error"),
          Arg("base_error", e_base, default=0.0, check="finite_nonnegative",
              doc="base (human-level or Bayes) error")],
    outputs={"avoidable_bias": e_train - e_base, "variance": e_dev - e_train},
    branches=(
        Branch("High bias? (training set)", sp.And(bias > 0, bias >= variance), "high bias",
               ("bigger network", "train longer", ANOTHER_ARCHITECTURE)),
        Branch("High variance? (dev set)", variance > 0, "high variance",
               ("more data", "regularization", ANOTHER_ARCHITECTURE)),
    ),
    otherwise=("done", ("neither gap is worth closing: keep this model",
                        "check again when the data or the base error changes")),
)

FORMULAS = [bias_variance]
