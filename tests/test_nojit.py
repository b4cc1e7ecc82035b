"""The generated code runs as plain Python too (NUMBA_DISABLE_JIT=1): it works by
construction, not by an accident of Numba's typing, and coverage sees its lines."""

import json
import os
import subprocess
import sys

import numpy as np

CODE = """
import json, numpy as np
import symdl.kernels as k
x = np.linspace(-30, 30, 61)
y = k.sigmoid(x)
print(json.dumps({
    "sigmoid": y.tolist(),
    "sigmoid_backward": k.sigmoid_backward(y, x).tolist(),
    # Into an out array, by the streaming core (parallel; SYMDL_STREAM_BYTES below).
    "sigmoid_backward out": k.sigmoid_backward(*np.linspace((0, -3), (1, 3), 40_000).T,
                                               out=np.empty(40_000)).tolist(),
    "tanh_backward": k.tanh_backward(k.tanh(x / 10), x).tolist(),
    "matvec": k.matvec(np.outer(x, x[:7]), x[:7]).tolist(),
    "precision_recall": list(k.precision_recall(x > 0, x > 5)),
    # The hash wraps mod 2**64 in NumPy scalars as in Numba (NumPy warns; that is fine).
    "dropout": [v.astype(float).tolist() for v in k.dropout(x, 0.3, 2**64 - 5)],
    # The direct lowering (stride 1, 18 output columns: blocks of 8 float64 columns and
    # 4 channels, with tails), on small integers: every sum is exact, FMA or not.
    "conv2d": k.conv2d(np.arange(144.0).reshape(1, 2, 4, 18) % 7 - 3,
                       np.arange(90.0).reshape(5, 2, 3, 3) % 5 - 2, np.arange(5.0),
                       padding=1).tolist(),
}))
"""


def _run(disable: str) -> dict:
    env = {**os.environ, "NUMBA_DISABLE_JIT": disable, "SYMDL_STREAM_BYTES": "1"}
    r = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_pure_python_run_agrees_with_jit():
    plain, jitted = _run("1"), _run("0")
    for name in plain:
        a, b = np.array(plain[name]), np.array(jitted[name])
        # The JIT may fuse a*b+c into one FMA (fastmath "contract"): 2 ULP apart at most.
        np.testing.assert_allclose(a, b, rtol=4 * 2.0**-52, atol=0, err_msg=name)
