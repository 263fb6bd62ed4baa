"""Loss values against hand-computed closed forms on tiny examples; the one-pass scaled gradients;
register_loss: a correct gradient is accepted and the name works everywhere, a wrong one is refused."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mlp_jax as mj
from helpers import (
    LABEL_KINDS,
    assert_works_everywhere,
    huber,
    huber_grad,
    make_problem,
    small_problem,
    tempered_ce,
    tempered_ce_grad,
)
from mlp_jax.core import losses
from mlp_jax.core.losses import register_loss
from mlp_jax.core.verify import DerivativeError


@pytest.fixture
def identity():
    """One linear layer with w = I, b = 0, and x: the logits are x itself (float64, for the x64 tests)."""
    params = (mj.Layer(w=jnp.eye(2, dtype=jnp.float64), b=jnp.zeros(2, jnp.float64)),)
    return params, jnp.array([[1.0, 2.0], [0.0, -1.0]], jnp.float64)


@pytest.mark.x64
def test_mse_closed_form(identity):
    params, x = identity
    y = jnp.array([[0.0, 0.0], [1.0, 1.0]])
    # ((1)^2 + (2)^2 + (-1)^2 + (-2)^2) / 4
    assert float(mj.loss(params, x, y, loss="mse")) == pytest.approx(10 / 4, rel=1e-15)


@pytest.mark.x64
def test_softmax_cross_entropy_closed_form(identity):
    params, x = identity
    labels = jnp.array([1, 0])
    # -log softmax: example 0 -> log(e + e^2) - 2; example 1 -> log(1 + e^-1) - 0
    expected = ((np.log(np.e + np.e**2) - 2) + np.log(1 + np.exp(-1))) / 2
    assert float(mj.loss(params, x, labels, loss="softmax_cross_entropy")) == pytest.approx(expected, rel=1e-14)
    probs = jnp.array([[0.0, 1.0], [1.0, 0.0]])
    assert float(mj.loss(params, x, probs, loss="softmax_cross_entropy")) == pytest.approx(expected, rel=1e-14)
    soft = np.array([[0.25, 0.75], [0.5, 0.5]])
    ls0 = np.array([1, 2]) - np.log(np.e + np.e**2)
    ls1 = np.array([0, -1]) - np.log(1 + np.exp(-1))
    expected_soft = -(soft[0] @ ls0 + soft[1] @ ls1) / 2
    assert float(mj.loss(params, x, jnp.asarray(soft), loss="softmax_cross_entropy")) == pytest.approx(
        expected_soft, rel=1e-14
    )


@pytest.mark.x64
def test_sigmoid_bce_closed_form_and_stability(identity):
    params, x = identity
    y = jnp.array([[1.0, 0.0], [0.5, 1.0]])
    sig = lambda t: 1 / (1 + np.exp(-t))
    terms = [-np.log(sig(1)), -np.log(1 - sig(2)), -(0.5 * np.log(0.5) + 0.5 * np.log(0.5)), -np.log(sig(-1))]
    assert float(mj.loss(params, x, y, loss="sigmoid_binary_cross_entropy")) == pytest.approx(np.mean(terms), rel=1e-14)
    big = jnp.array([[1000.0, -1000.0]], jnp.float64)
    value, grads = mj.backprop(params, big, jnp.array([[0.0, 1.0]]), "relu", "sigmoid_binary_cross_entropy")
    assert float(value) == pytest.approx(1000.0)
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))


@pytest.mark.x64
def test_sample_weight_is_weighted_mean(identity):
    params, x = identity
    y = jnp.array([[0.0, 0.0], [1.0, 1.0]])
    per_example = np.array([2.5, 2.5])
    w = jnp.array([3.0, 1.0])
    assert float(mj.loss(params, x, y, loss="mse", sample_weight=w)) == pytest.approx(per_example @ [3, 1] / 4)
    y2 = jnp.array([[1.0, 2.0], [1.0, 1.0]])  # example 0 has zero loss
    assert float(mj.loss(params, x, y2, loss="mse", sample_weight=jnp.array([1.0, 0.0]))) == 0.0
    assert float(mj.loss(params, x, y2, loss="mse", sample_weight=jnp.array([0.0, 2.0]))) == pytest.approx(2.5)


@pytest.mark.x64
def test_unknown_loss_lists_known(identity):
    params, x = identity
    with pytest.raises(ValueError, match=r"unknown loss 'hinge'.*'mse'"):
        mj.loss(params, x, jnp.zeros((2, 2)), loss="hinge")


@pytest.mark.parametrize("labels", ["integer", "one_hot"])
def test_softmax_gradient_shares_the_values_exp(labels):
    """The hand-written softmax CE head reuses the optax value's exp(logits - max): one exp in the
    compiled backprop, as in autodiff's."""
    params = mj.init_params(jax.random.key(0), [6, 5, 4])
    x = jax.random.normal(jax.random.key(1), (8, 6), jnp.float32)
    y = jax.random.randint(jax.random.key(2), (8,), 0, 4)
    if labels == "one_hot":
        y = jax.nn.one_hot(y, 4, dtype=jnp.float32)
    hlo = jax.jit(lambda p: mj.backprop(p, x, y, "relu", "softmax_cross_entropy")).lower(params).compile().as_text()
    assert hlo.count(" exponential(") == 1


@pytest.mark.x64
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("kind", LABEL_KINDS)
def test_one_pass_scaled_gradient_equals_reduce_grad(kind, weighted):
    """A loss's optional scaled_grad_logits is reduce_grad(grad_logits) computed in one pass."""
    _, _, y, loss, weight = make_problem(2, [3, 4, 6], 9, kind, jnp.float64, weighted)
    logits = jnp.asarray(np.random.default_rng(0).standard_normal((9, 6)))
    spec = losses.get_loss(loss)
    expected = losses.reduce_grad(spec.grad_logits(logits, y), weight)
    np.testing.assert_allclose(losses.scaled_grad_logits(spec, logits, y, weight), expected, rtol=1e-14, atol=1e-16)


def test_target_kinds_and_builtins(restored_registries):
    assert [losses.target_kind(n) for n in ("mse", "softmax_cross_entropy", "sigmoid_binary_cross_entropy")] == [
        "dense",
        "labels",
        "dense",
    ]
    assert all(losses.is_builtin(name) for name in losses.BUILTIN)
    assert not any(losses.registered_for_labels(name) for name in losses.BUILTIN)
    register_loss("mse", huber, huber_grad, overwrite=True, verify=False)
    assert not losses.is_builtin("mse")


# ------------------------------------------------------------------------------------------------
# register_loss (every test leaves the registry as it was)


@pytest.mark.x64
@pytest.mark.parametrize(
    "name,value,grad,targets",
    [
        pytest.param("huber", huber, huber_grad, "dense", id="dense", marks=pytest.mark.slow),
        pytest.param("tempered_ce", tempered_ce, tempered_ce_grad, "labels", id="labels", marks=pytest.mark.slow),
    ],
)
def test_registered_loss_works_everywhere(name, value, grad, targets, capsys, restored_registries):
    register_loss(name, value, grad, targets=targets)
    assert name in mj.known_losses() and losses.target_kind(name) == targets
    assert losses.registered_for_labels(name) == (targets == "labels")
    params, x, y = small_problem(targets)
    expected = np.mean(value(mj.forward(params, x, "tanh"), y))
    assert float(mj.loss(params, x, y, "tanh", name)) == pytest.approx(float(expected), rel=1e-14)
    assert_works_everywhere("tanh", name, targets, capsys)


@pytest.mark.x64
def test_loss_gradient_one_percent_off_is_refused(restored_registries):
    message = r"grad_logits of loss 'huber' does not match jax.grad: at logits\[\d+\] = .*relative difference 0.01\)"
    with pytest.raises(DerivativeError, match=message):
        register_loss("huber", huber, lambda logits, y: 1.01 * huber_grad(logits, y))
    assert "huber" not in mj.known_losses()


@pytest.mark.x64
def test_bad_loss_registrations_are_refused(restored_registries):
    with pytest.raises(ValueError, match="loss 'mse' is already registered"):
        register_loss("mse", huber, huber_grad)
    with pytest.raises(DerivativeError, match=r"loss 'mean': value returned shape \(\), expected \(12,\)"):
        register_loss("mean", lambda logits, y: huber(logits, y).mean(), huber_grad)
    with pytest.raises(ValueError, match="targets must be 'dense' or 'labels'"):
        register_loss("huber", huber, huber_grad, targets="probabilities")


def test_overwrite_replaces_a_loss(restored_registries):
    register_loss("mse", huber, huber_grad, overwrite=True)
    assert mj.get_loss("mse").per_example is huber


@pytest.mark.x64
@pytest.mark.parametrize(
    "name, labels",
    [
        ("mse", False),
        ("softmax_cross_entropy", True),
        ("softmax_cross_entropy", False),
        ("sigmoid_binary_cross_entropy", False),
    ],
)
def test_builtin_hessians_match_jax_hessian(name, labels):
    spec = losses.BUILTIN[name]
    logits = jnp.asarray(losses.VERIFY_LOGITS)
    rng = np.random.default_rng(0)
    y = jnp.arange(12) % 3 if labels else jnp.asarray(rng.uniform(0, 1, (12, 3)))
    expected = jax.vmap(jax.hessian(lambda f, t: spec.per_example(f[None], t[None])[0]))(logits, y)
    np.testing.assert_allclose(spec.hessian(logits, y), expected, rtol=1e-12, atol=1e-15)


@pytest.mark.x64
def test_a_wrong_loss_hessian_is_refused(restored_registries):
    def hessian(logits, y):
        return 1.01 * jnp.broadcast_to(jnp.eye(3) * (2.0 / 3), (logits.shape[0], 3, 3))

    with pytest.raises(mj.DerivativeError, match="hessian of loss 'sq'"):
        mj.register_loss("sq", losses._mse, losses._mse_grad, hessian=hessian)
    mj.register_loss("sq", losses._mse, losses._mse_grad, hessian=lambda l, y: hessian(l, y) / 1.01)
