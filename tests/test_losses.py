"""Loss values against hand-computed closed forms on tiny examples."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mlp_jax as mj

# One linear layer with w = I, b = 0: the logits are x itself.
PARAMS = (mj.Layer(w=jnp.eye(2, dtype=jnp.float64), b=jnp.zeros(2, jnp.float64)),)
X = jnp.array([[1.0, 2.0], [0.0, -1.0]], jnp.float64)


def test_mse_closed_form():
    y = jnp.array([[0.0, 0.0], [1.0, 1.0]])
    # ((1)^2 + (2)^2 + (-1)^2 + (-2)^2) / 4
    assert float(mj.loss(PARAMS, X, y, loss="mse")) == pytest.approx(10 / 4, rel=1e-15)


def test_softmax_cross_entropy_closed_form():
    labels = jnp.array([1, 0])
    # -log softmax: example 0 -> log(e + e^2) - 2; example 1 -> log(1 + e^-1) - 0
    expected = ((np.log(np.e + np.e**2) - 2) + np.log(1 + np.exp(-1))) / 2
    assert float(mj.loss(PARAMS, X, labels, loss="softmax_cross_entropy")) == pytest.approx(expected, rel=1e-14)
    probs = jnp.array([[0.0, 1.0], [1.0, 0.0]])
    assert float(mj.loss(PARAMS, X, probs, loss="softmax_cross_entropy")) == pytest.approx(expected, rel=1e-14)
    soft = np.array([[0.25, 0.75], [0.5, 0.5]])
    ls0 = np.array([1, 2]) - np.log(np.e + np.e**2)
    ls1 = np.array([0, -1]) - np.log(1 + np.exp(-1))
    expected_soft = -(soft[0] @ ls0 + soft[1] @ ls1) / 2
    assert float(mj.loss(PARAMS, X, jnp.asarray(soft), loss="softmax_cross_entropy")) == pytest.approx(
        expected_soft, rel=1e-14
    )


def test_sigmoid_bce_closed_form_and_stability():
    y = jnp.array([[1.0, 0.0], [0.5, 1.0]])
    sig = lambda t: 1 / (1 + np.exp(-t))
    terms = [-np.log(sig(1)), -np.log(1 - sig(2)), -(0.5 * np.log(0.5) + 0.5 * np.log(0.5)), -np.log(sig(-1))]
    assert float(mj.loss(PARAMS, X, y, loss="sigmoid_binary_cross_entropy")) == pytest.approx(np.mean(terms), rel=1e-14)
    big = jnp.array([[1000.0, -1000.0]], jnp.float64)
    value, grads = mj.backprop(PARAMS, big, jnp.array([[0.0, 1.0]]), "relu", "sigmoid_binary_cross_entropy")
    assert float(value) == pytest.approx(1000.0)
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))


def test_sample_weight_is_weighted_mean():
    y = jnp.array([[0.0, 0.0], [1.0, 1.0]])
    per_example = np.array([2.5, 2.5])
    w = jnp.array([3.0, 1.0])
    assert float(mj.loss(PARAMS, X, y, loss="mse", sample_weight=w)) == pytest.approx(per_example @ [3, 1] / 4)
    y2 = jnp.array([[1.0, 2.0], [1.0, 1.0]])  # example 0 has zero loss
    assert float(mj.loss(PARAMS, X, y2, loss="mse", sample_weight=jnp.array([1.0, 0.0]))) == 0.0
    assert float(mj.loss(PARAMS, X, y2, loss="mse", sample_weight=jnp.array([0.0, 2.0]))) == pytest.approx(2.5)


def test_unknown_loss_lists_known():
    with pytest.raises(ValueError, match=r"unknown loss 'hinge'.*'mse'"):
        mj.loss(PARAMS, X, jnp.zeros((2, 2)), loss="hinge")


@pytest.mark.parametrize("labels", ["integer", "one_hot"])
def test_softmax_gradient_shares_the_values_exp(labels):
    """The hand-written softmax CE head reuses the optax value's exp(logits - max): one exp in the
    compiled backprop, as in autodiff's (a second one cost 1-2 % of a small adam step)."""
    params = mj.init_params(jax.random.key(0), [6, 5, 4])
    x = jax.random.normal(jax.random.key(1), (8, 6), jnp.float32)
    y = jax.random.randint(jax.random.key(2), (8,), 0, 4)
    if labels == "one_hot":
        y = jax.nn.one_hot(y, 4, dtype=jnp.float32)
    hlo = jax.jit(lambda p: mj.backprop(p, x, y, "relu", "softmax_cross_entropy")).lower(params).compile().as_text()
    assert hlo.count(" exponential(") == 1
