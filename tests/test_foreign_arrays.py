"""The NumPy kernels and arrays of other libraries or half dtypes: a TypeError that
names the argument and says what to do (never the library's own error, never a
silent float32 result)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("tensor", [
    torch.zeros(3), torch.zeros(3, requires_grad=True), torch.zeros(3, dtype=torch.bfloat16)])
def test_torch_tensor_to_a_numpy_kernel_says_what_to_do(kernels, tensor):
    with pytest.raises(TypeError, match=r"sigmoid\(\): argument 'x' is a torch Tensor; .*"
                                        r"x\.detach\(\)\.cpu\(\)\.numpy\(\).*symdl\.torch"):
        kernels.sigmoid(tensor)


def test_torch_parameter_to_an_update_kernel_says_what_to_do(kernels):
    p = torch.nn.Parameter(torch.zeros(4))
    z = np.zeros(4, dtype=np.float32)
    with pytest.raises(TypeError, match=r"adam_step\(\): argument 'theta' is a torch "
                                        r"Parameter; .*theta\.detach\(\).*symdl\.torch\.optim"):
        kernels.adam_step(p, z, z.copy(), z.copy(), 1)
    with pytest.raises(TypeError, match=r"argument 'out' is a torch Tensor"):
        kernels.tanh(np.zeros(4), out=torch.zeros(4))


def test_jax_array_to_a_numpy_kernel_says_what_to_do(kernels):
    jnp = pytest.importorskip("jax.numpy")
    with pytest.raises(TypeError, match=r"argument 'l_fake' is a jaxlib .*symdl\.jax"):
        kernels.gan_g_loss_saturating_logits(jnp.zeros(3))


def test_float16_is_refused_rather_than_widened(kernels):
    with pytest.raises(TypeError, match=r"tanh\(\): argument 'x' is float16.*"
                                        r"x\.astype\(np\.float32\)"):
        kernels.tanh(np.zeros(3, dtype=np.float16))
