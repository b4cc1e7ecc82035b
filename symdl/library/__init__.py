"""The built-in formula library: one module per section of the formula sheet.

Each module defines ``FORMULAS``, a list of formula objects (``symdl.formula``).
``symdl generate`` prints one kernel module and one sheet section per module, in
the order of ``MODULES``.
"""

MODULES = ["activations", "linalg", "metrics", "optimizers", "batchnorm", "cnn", "pooling", "conv",
           "bias", "regularization", "gan", "backprop"]
