"""Metrics: precision and recall of a binary classifier."""

import sympy as sp

from symdl.formula import Reduction

SECTION = "Precision and recall"

t = sp.Symbol("y_true", real=True)
p = sp.Symbol("y_pred", real=True)
tp, n_pred, n_true = sp.symbols("tp n_selected n_relevant", real=True)

precision_recall = Reduction(
    "precision_recall",
    SECTION,
    "Precision and recall",
    "Precision: how many selected items are relevant? "
    "Recall: how many relevant items are selected?",
    inputs=[t, p],
    sums={"tp": t * p, "n_selected": p, "n_relevant": t},
    outputs={
        # An empty denominator (nothing selected, nothing relevant) gives 0.0,
        # as scikit-learn's zero_division=0 does.
        "precision": sp.Piecewise((tp / n_pred, n_pred > 0), (0, True)),
        "recall": sp.Piecewise((tp / n_true, n_true > 0), (0, True)),
    },
    domains={"y_true": "binary", "y_pred": "binary"},
)

FORMULAS = [precision_recall]
