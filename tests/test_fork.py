"""A child started with fork after the parent ran the BLAS-parts runtime does not hang
(issue 17, item 1).

The parent runs conv2d on the im2col path (stride 2), conv2d_backward and the network
kernels on a batch large enough to cut into parts on the runtime's thread pool; a
fork child then makes the same call. Before the fix the child inherited the pool
without its threads and waited forever. Each scenario runs in a subprocess with a
timeout, so a hang fails the test instead of hanging the suite. Numba's threading
layer is workqueue there: with the OpenMP layer Numba itself ends a child forked
after a parallel kernel (see the README).
"""

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import importlib, multiprocessing, sys
    import numpy as np
    from symdl import kernels as k

    conv = importlib.import_module("symdl.kernels.conv")
    backprop = importlib.import_module("symdl.kernels.backprop")

    dtype = np.dtype(sys.argv[1])
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 66, 66)).astype(dtype)
    w = rng.standard_normal((8, 3, 3, 3)).astype(dtype)
    X = rng.standard_normal((512, 16)).astype(dtype)
    W1 = rng.standard_normal((64, 16)).astype(dtype)
    W2 = rng.standard_normal((64, 64)).astype(dtype)
    w3 = rng.standard_normal(64).astype(dtype)
    calls = {
        "conv2d": lambda: k.conv2d(x, w, stride=2),
        "conv2d_narrow": lambda: k.conv2d(x[:, :, :, :12], w),
        "conv2d_backward": lambda: k.conv2d_backward(x, w, k.conv2d(x, w, stride=2),
                                                     stride=2),
        "mlp": lambda: k.mlp_backward(X, W1, W2, w3, k.mlp_forward(X, W1, W2, w3)),
    }
    # The parallel path cuts a batch into parts on the runtime's pool; the serial one
    # runs everything on the calling thread.
    threshold = 1 if sys.argv[2] == "parallel" else 10**12
    conv.PARALLEL_THRESHOLD = backprop.PARALLEL_THRESHOLD = threshold

    def as_tuple(r):
        return r if isinstance(r, tuple) else (r,)

    def child(call, queue):
        queue.put(all(np.array_equal(a, b) for a, b in zip(as_tuple(call()), expected)))

    ctx = multiprocessing.get_context("fork")
    for name, call in calls.items():
        expected = as_tuple(call())
        queue = ctx.Queue()
        p = ctx.Process(target=child, args=(call, queue))
        p.start()
        p.join(120)
        if p.is_alive():
            p.kill()
            sys.exit(f"{name}: the fork child hangs")
        assert p.exitcode == 0, (name, p.exitcode)
        assert queue.get(timeout=5), f"{name}: the child's result differs"
    print("ok")
""")


@pytest.mark.parametrize("path", ["serial", "parallel"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fork_child_after_blas_parts_does_not_hang(dtype, path):
    env = {**os.environ, "NUMBA_THREADING_LAYER": "workqueue", "NUMBA_NUM_THREADS": "2"}
    try:
        result = subprocess.run([sys.executable, "-c", SCRIPT, dtype, path], env=env,
                                capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        pytest.fail("the parent or the fork child hangs")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("ok")
