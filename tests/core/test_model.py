"""The forward pass and the loss (mlp_jax.core.model) against a plain numpy evaluation of the same net."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mlp_jax as mj
from helpers import LABEL_KINDS, make_problem
from mlp_jax.core import losses


def numpy_forward(params, x, phi):
    a = np.asarray(x, np.float64)
    for layer in params[:-1]:
        a = phi(a @ np.asarray(layer.w, np.float64) + np.asarray(layer.b, np.float64))
    return a @ np.asarray(params[-1].w, np.float64) + np.asarray(params[-1].b, np.float64)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("sizes", [[3, 2], [3, 5, 2], [70, 90, 50, 4]], ids=["linear", "one-hidden", "wide"])
def test_forward_is_the_activation_after_every_hidden_layer_and_a_linear_output(sizes, dtype):
    params, x, _, _, _ = make_problem(0, sizes, 6, "mse", dtype)
    logits = mj.forward(params, x, "tanh")
    assert logits.shape == (6, sizes[-1]) and logits.dtype == dtype
    rtol = 1e-12 if dtype == jnp.float64 else 1e-5
    np.testing.assert_allclose(logits, numpy_forward(params, x, np.tanh), rtol=rtol, atol=rtol)


def test_forward_defaults_to_relu():
    params, x, _, _, _ = make_problem(1, [4, 8, 3], 5, "mse", jnp.float32)
    np.testing.assert_array_equal(mj.forward(params, x), mj.forward(params, x, "relu"))


@pytest.mark.x64
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("kind", LABEL_KINDS)
def test_loss_is_the_weighted_mean_of_the_per_example_terms(kind, weighted):
    params, x, y, loss, weight = make_problem(2, [4, 6, 3], 7, kind, jnp.float64, weighted)
    terms = losses.get_loss(loss).per_example(mj.forward(params, x, "gelu"), y)
    w = np.ones(7) if weight is None else np.asarray(weight)
    expected = np.sum(w * np.asarray(terms)) / np.sum(w)
    assert float(mj.loss(params, x, y, "gelu", loss, weight)) == pytest.approx(expected, rel=1e-14)


def test_loss_under_jit_equals_eager():
    params, x, y, loss, weight = make_problem(3, [4, 6, 3], 7, "softmax_int", jnp.float32, True)
    jitted = jax.jit(mj.loss, static_argnums=(3, 4))(params, x, y, "tanh", loss, weight)
    np.testing.assert_allclose(jitted, mj.loss(params, x, y, "tanh", loss, weight), rtol=1e-6)
