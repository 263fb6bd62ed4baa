"""manual_loss: a jax.custom_vjp whose backward rule is the hand-written backprop, usable by any JAX code."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.test_util import check_grads

import mlp_jax as mj
from conftest import tree_max_rel_error
from helpers import LABEL_KINDS, make_problem
from mlp_jax.tools.manual import manual_loss
from mlp_jax.training.steps import make_update


@pytest.mark.x64
@pytest.mark.parametrize("kind", LABEL_KINDS)
def test_grad_of_manual_loss_is_backprop_and_passes_check_grads(kind):
    params, x, y, loss, weight = make_problem(3, [3, 5, 4], 6, kind, jnp.float64, weighted=True)
    f = lambda p, x: manual_loss(p, x, y, "tanh", loss, weight)
    value, grads = jax.value_and_grad(f)(params, x)
    value_bp, grads_bp = mj.backprop(params, x, y, "tanh", loss, weight)
    assert value == value_bp and tree_max_rel_error(grads, grads_bp) <= 1e-15
    check_grads(f, (params, x), order=1, modes=["rev"])


@pytest.mark.x64
@pytest.mark.parametrize("kind", ["softmax_prob", "softmax_int"])
def test_cotangents_for_inputs_targets_and_weights_match_autodiff(kind):
    params, x, y, loss, weight = make_problem(4, [3, 5, 4], 6, kind, jnp.float64, weighted=True)
    argnums = (1, 2, 3) if kind == "softmax_prob" else (1, 3)  # integer labels have no cotangent
    manual = jax.grad(lambda p, x, y, w: manual_loss(p, x, y, "tanh", loss, w), argnums)(params, x, y, weight)
    autodiff = jax.grad(lambda p, x, y, w: mj.loss(p, x, y, "tanh", loss, w), argnums)(params, x, y, weight)
    assert tree_max_rel_error(manual, autodiff) <= 1e-13


def test_optax_training_through_manual_loss_equals_manual_training():
    params, x, y, loss, _ = make_problem(5, [3, 8, 4], 16, "softmax_int", jnp.float32)
    opt = optax.adam(1e-2)
    through_vjp = lambda p, x, y, sample_weight=None, key=None: jax.value_and_grad(manual_loss)(
        p, x, y, "tanh", loss, sample_weight
    )
    results = []
    for grad in ("manual", through_vjp):
        update = make_update(opt, activation="tanh", loss=loss, grad=grad, donate=False)
        p, state = params, opt.init(params)
        for _ in range(5):
            p, state, value = update(p, state, x, y)
        results.append((p, value))
    assert tree_max_rel_error(results[0][0], results[1][0]) <= 1e-6
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-6)


@pytest.mark.x64
def test_manual_loss_validates_like_loss():
    params, x, y, loss, _ = make_problem(0, [3, 4], 2, "mse", jnp.float64)
    assert manual_loss(params, x, y, "relu", loss) == mj.loss(params, x, y, "relu", loss)
    with pytest.raises(ValueError, match="x has 2 features but the first layer expects 3"):
        manual_loss(params, x[:, :2], y, "relu", loss)
