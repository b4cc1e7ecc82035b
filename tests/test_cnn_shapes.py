"""CNN shape formulas: exact integers, checked against PyTorch's layers and SymPy."""

import itertools

import numpy as np
import pytest
import sympy as sp

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _torch_size(op, n, f, p, s):
    """PyTorch's output size along one axis, or None where PyTorch refuses the layer
    (an empty input it refuses too, so the tests start at n = 1; SymPy checks n = 0)."""
    x = torch.zeros(1, 1, n, n)
    try:
        if op == "conv":
            return F.conv2d(x, torch.zeros(1, 1, f, f), stride=s, padding=p).shape[-1]
        return getattr(F, op)(x, f, stride=s, padding=p).shape[-1]
    except RuntimeError:
        return None


@pytest.mark.parametrize("op", ["conv", "max_pool2d", "avg_pool2d"])
def test_output_size_matches_torch(kernels, op):
    for n, f, p, s in itertools.product(range(1, 12), range(1, 6), range(0, 3), range(1, 4)):
        if op != "conv" and p > f // 2:
            continue  # PyTorch pooling allows padding up to half the window only
        want = _torch_size(op, n, f, p, s)
        if want is None or want <= 0:
            with pytest.raises(ValueError, match="output would be empty: the filter"):
                kernels.conv_output_size(n, f, p, s)
        else:
            assert kernels.conv_output_size(n, f, padding=p, stride=s) == want, (n, f, p, s)


def test_same_padding_keeps_the_size(kernels):
    for f in range(1, 12, 2):
        p = kernels.same_padding(f)
        assert isinstance(p, int)
        for n in (f, 7, 16, 31):
            assert _torch_size("conv", n, f, p, 1) == n
            assert kernels.conv_output_size(n, f, padding=p) == n
        x = torch.zeros(1, 1, 9, 9)
        assert F.conv2d(x, torch.zeros(1, 1, f, f), padding="same").shape == x.shape
    for f in (2, 4, 10):
        with pytest.raises(ValueError, match="'f'.*odd"):
            kernels.same_padding(f)


def test_param_count_matches_a_torch_layer(kernels):
    for f, n_c, n_filters in [(1, 1, 1), (3, 1, 8), (3, 16, 32), (5, 3, 7), (7, 64, 2)]:
        layer = torch.nn.Conv2d(n_c, n_filters, f)
        want = sum(p.numel() for p in layer.parameters())
        got = kernels.conv_param_count(f, n_c, n_filters)
        assert isinstance(got, int) and got == want


def test_big_integers_stay_exact(kernels):
    n = 10**30 + 7  # beyond float64's 2**53: a float division would round
    assert kernels.conv_output_size(n, 3, 1, 2) == (n - 1) // 2 + 1
    assert kernels.conv_output_size(np.int64(2**62), np.int32(3)) == 2**62 - 2


@pytest.mark.parametrize("call, arg, exc", [
    (lambda k: k.conv_output_size(-1, 3), "'n'", ValueError),
    (lambda k: k.conv_output_size(5, 0), "'f'", ValueError),
    (lambda k: k.conv_output_size(5, 3, padding=-1), "'padding'", ValueError),
    (lambda k: k.conv_output_size(5, 3, stride=0), "'stride'", ValueError),
    (lambda k: k.conv_output_size(5.5, 3), "'n'", TypeError),
    (lambda k: k.conv_output_size(5, True), "'f'", TypeError),
    (lambda k: k.conv_output_size("5", 3), "'n'", TypeError),
    (lambda k: k.same_padding(0), "'f'", ValueError),
    (lambda k: k.conv_param_count(3, 0, 4), "'n_c'", ValueError),
    (lambda k: k.conv_param_count(3, 2, 1.0), "'n_filters'", TypeError),
])
def test_bad_arguments_are_named(kernels, call, arg, exc):
    with pytest.raises(exc, match=arg):
        call(kernels)


def test_sheet_derives_valid_and_same_from_the_general_formula():
    from symdl.codegen import builtin_modules, render
    from symdl.library import cnn

    tex = render(builtin_modules())["sheet/symdl.tex"]
    assert r"n_{\mathrm{out}} = \left\lfloor{\frac{n + 2 p - f}{s}}\right\rfloor + 1" in tex
    assert r"n_{\mathrm{out}} = n + 1 - f \derived" in tex  # valid
    assert r"n_{\mathrm{out}} = n \derived" in tex  # same
    assert r"n_{\mathrm{params}} = n_{\mathrm{filters}} \left(f^{2} + 1\right) \derived" in tex
    # The same case substitutes the same_padding formula itself.
    (general,) = cnn.conv_output_size.outputs.values()
    (p_same,) = cnn.same_padding.outputs.values()
    assert sp.simplify(general.subs({cnn.p: p_same, cnn.s: 1})) == cnn.n


@pytest.mark.parametrize("name, shown", [
    ("conv_output_size", "n_out = (-f + n + 2*padding) // (stride) + 1"),
    ("bias_variance", "variance = dev_error - train_error"),
    ("dropout", "y_inverted_False = q*x"),
])
def test_cli_show_new_kinds(capsys, name, shown):
    from symdl.cli import main

    assert main(["show", name]) == 0
    assert shown in capsys.readouterr().out
