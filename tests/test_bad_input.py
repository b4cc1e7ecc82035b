"""Bad input gets a clear error that names the argument; nothing crashes."""

import numpy as np
import pytest


def test_mismatched_shapes(kernels):
    with pytest.raises(ValueError, match="'dy'"):
        kernels.sigmoid_backward(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="'x'"):
        kernels.matvec(np.ones((3, 4)), np.ones(5))
    with pytest.raises(ValueError, match="'A'"):
        kernels.matvec(np.ones(4), np.ones(4))
    with pytest.raises(ValueError, match="'y_pred'"):
        kernels.precision_recall(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="'y_true'"):
        kernels.precision_recall(np.ones((2, 2)), np.ones((2, 2)))


@pytest.mark.parametrize("bad", [np.array(["a", "b"]), np.ones(3, complex), [object()]])
def test_non_real_dtype(kernels, bad):
    with pytest.raises(TypeError, match="'x'"):
        kernels.sigmoid(bad)


def test_bad_labels(kernels):
    with pytest.raises(ValueError, match="'y_true'.*0/1"):
        kernels.precision_recall([0, 2, 1], [0, 1, 1])
    with pytest.raises(ValueError, match="'y_pred'"):
        kernels.precision_recall([0, 1, 1], [0, 0.5, 1])
    with pytest.raises(ValueError, match="'y_pred'"):
        kernels.precision_recall([0, 1, 1], [0, np.nan, 1])


def test_bad_out(kernels):
    x = np.ones(4)
    with pytest.raises(ValueError, match="'out'.*shape"):
        kernels.sigmoid(x, out=np.empty(5))
    with pytest.raises(TypeError, match="'out'.*dtype"):
        kernels.sigmoid(x, out=np.empty(4, np.float32))
    with pytest.raises(TypeError, match="'out'"):
        kernels.sigmoid(x, out=[0.0] * 4)
    ro = np.empty(4)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="'out'.*read-only"):
        kernels.sigmoid(x, out=ro)


@pytest.mark.parametrize("call, name", [
    (lambda k: k.maxpool2d(np.ones((1, 1, 4, 4)), 1, stride=2**63), "'stride'"),
    (lambda k: k.avgpool2d_backward(np.ones((1, 1, 4, 4)), np.ones((1, 1, 1, 1)), 1,
                                    stride=2**70), "'stride'"),
    (lambda k: k.bias_variance(10**400, 1.0), "'train_error'"),
    (lambda k: k.dropout(np.ones(3), 0.5, 2**64), "'seed'"),
])
def test_scalars_beyond_the_cores_range_are_named(kernels, call, name):
    # The compiled cores take int64 (seeds uint64) and float64: a larger Python number
    # is a ValueError naming the argument, not an OverflowError from inside.
    with pytest.raises(ValueError, match=name):
        call(kernels)


def _float_param_calls(n, dtype):
    """Each kernel's float parameters, given an integer beyond float's range."""
    def arrays(k):
        return [np.zeros(n, dtype) for _ in range(k)]

    big = 10**400
    batch = np.ones((n // 4 + 2, 4), dtype)
    feat = np.ones(4, dtype)
    return [
        *[(lambda k, p=p: k.adam_step(*arrays(4), 1, **{p: big}), p)
          for p in ("lr", "beta1", "beta2", "eps")],
        *[(lambda k, p=p: k.rmsprop_step(*arrays(4), **{p: big}), p)
          for p in ("lr", "alpha", "eps", "momentum")],
        (lambda k: k.batchnorm_update_running(*arrays(4), 2, momentum=big), "momentum"),
        (lambda k: k.batchnorm_forward(batch, feat, feat, eps=big), "eps"),
        (lambda k: k.batchnorm_inference(batch, feat, feat, feat, feat, eps=big), "eps"),
        (lambda k: k.dropout(np.ones(n, dtype), big, 1), "p"),
    ]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [8, 40_000])  # below and above PARALLEL_THRESHOLD
def test_float_parameters_beyond_float_range_are_named(kernels, dtype, n):
    # (issue 17, item 6: float(10**400) raised OverflowError, naming nothing)
    for call, name in _float_param_calls(n, dtype):
        with pytest.raises(ValueError, match=f"'{name}'"):
            call(kernels)
