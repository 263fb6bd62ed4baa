"""register_activation and register_loss: a correct derivative is accepted and the name works everywhere;
a wrong one (1 % off) is refused with where and by how much, with float64 on and off."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import mlp_jax as mj
from conftest import tree_max_rel_error
from mlp_jax.cli import main as cli
from mlp_jax.core import losses
from mlp_jax.core.activations import register_activation
from mlp_jax.core.losses import register_loss
from mlp_jax.core.verify import DerivativeError
from mlp_jax.training.steps import make_update

SOFTSIGN = (lambda z: z / (1 + jnp.abs(z)), lambda z: 1 / (1 + jnp.abs(z)) ** 2)


def huber(logits, y):  # per example: mean over outputs of the Huber loss with delta 1
    r = logits - y
    return jnp.mean(jnp.where(jnp.abs(r) <= 1, 0.5 * r * r, jnp.abs(r) - 0.5), axis=-1)


def huber_grad(logits, y):
    return jnp.clip(logits - y, -1, 1) / logits.shape[-1]


def tempered_ce(logits, labels):  # softmax cross-entropy at temperature 2, integer labels
    return optax.softmax_cross_entropy_with_integer_labels(logits / 2, labels)


def tempered_ce_grad(logits, labels):
    return (jax.nn.softmax(logits / 2) - jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)) / 2


pytestmark = pytest.mark.usefixtures("restored_registries")  # every test leaves the registries as they were


def problem(kind, dtype=jnp.float64):
    rng = np.random.default_rng(0)
    params = tuple(
        mj.Layer(jnp.asarray(rng.standard_normal((i, o)), dtype), jnp.asarray(0.1 * rng.standard_normal(o), dtype))
        for i, o in ((3, 5), (5, 4))
    )
    x = jnp.asarray(rng.standard_normal((6, 3)), dtype)
    y = jnp.asarray(rng.integers(0, 4, 6)) if kind == "labels" else jnp.asarray(rng.standard_normal((6, 4)), dtype)
    return params, x, y


def assert_works_everywhere(activation, loss, kind, capsys):
    """backprop agrees with autodiff, make_update steps with the manual gradient, and `mlp-jax gradcheck`
    (check_gradients from the command line) passes."""
    params, x, y = problem(kind)
    value, grads = mj.backprop(params, x, y, activation, loss)
    value_ad, grads_ad = jax.value_and_grad(mj.loss)(params, x, y, activation, loss)
    assert value == pytest.approx(float(value_ad), rel=1e-14) and tree_max_rel_error(grads, grads_ad) < 1e-12
    opt = optax.sgd(0.5)
    new_params, _, _ = make_update(opt, activation=activation, loss=loss, donate=False)(params, opt.init(params), x, y)
    assert tree_max_rel_error(new_params, jax.tree.map(lambda p, g: p - 0.5 * g, params, grads)) < 1e-14
    code = cli.main(["gradcheck", "--sizes", "3,5,4", "--batch", "6", "--activation", activation, "--loss", loss])
    assert code == 0 and "OK: every leaf is within tolerance" in capsys.readouterr().out


def test_registered_activation_works_everywhere(capsys):
    register_activation("softsign", *SOFTSIGN)
    assert "softsign" in mj.known_activations()
    params, x, _ = problem("dense")
    z = x @ params[0].w + params[0].b[None, :]
    expected = (z / (1 + jnp.abs(z))) @ params[1].w + params[1].b[None, :]
    np.testing.assert_allclose(mj.forward(params, x, "softsign"), expected, rtol=1e-14, atol=1e-15)
    assert_works_everywhere("softsign", "mse", "dense", capsys)


@pytest.mark.parametrize(
    "name,value,grad,targets",
    [("huber", huber, huber_grad, "dense"), ("tempered_ce", tempered_ce, tempered_ce_grad, "labels")],
    ids=["dense", "labels"],
)
def test_registered_loss_works_everywhere(name, value, grad, targets, capsys):
    register_loss(name, value, grad, targets=targets)
    assert name in mj.known_losses() and losses.target_kind(name) == targets
    params, x, y = problem(targets)
    expected = np.mean(value(mj.forward(params, x, "tanh"), y))
    assert float(mj.loss(params, x, y, "tanh", name)) == pytest.approx(float(expected), rel=1e-14)
    assert_works_everywhere("tanh", name, targets, capsys)


def test_registered_loss_targets_are_checked():
    register_loss("huber", huber, huber_grad)
    register_loss("tempered_ce", tempered_ce, tempered_ce_grad, targets="labels")
    params, x, y = problem("dense")
    with pytest.raises(ValueError, match=r"loss 'huber' expects y of shape \(6, 4\), got \(6,\)"):
        mj.loss(params, x, jnp.zeros(6), "tanh", "huber")
    with pytest.raises(TypeError, match=r"tempered_ce expects integer labels of shape \(6,\), got shape \(6, 4\)"):
        mj.loss(params, x, y, "tanh", "tempered_ce")
    with pytest.raises(ValueError, match=r"integer labels must lie in \[0, 4\)"):
        mj.loss(params, x, jnp.full(6, 4), "tanh", "tempered_ce")
    y32 = y.astype(jnp.float32)  # dense targets are cast to the params' dtype
    assert mj.backprop(params, x, y32, "tanh", "huber")[1][0].w.dtype == jnp.float64


def test_derivative_one_percent_off_is_refused():
    with pytest.raises(DerivativeError) as error:
        register_activation("tanh_101", jnp.tanh, lambda z: 1.01 * (1 - jnp.tanh(z)) * (1 + jnp.tanh(z)))
    message = str(error.value)
    assert message.startswith("derivative of activation 'tanh_101' does not match jax.grad: at z = ")
    assert "(jax.grad), given 1.01" in message and "(relative difference 0.01)" in message and "float64" in message
    assert "tanh_101" not in mj.known_activations()


def test_loss_gradient_one_percent_off_is_refused():
    message = r"grad_logits of loss 'huber' does not match jax.grad: at logits\[\d+\] = .*relative difference 0.01\)"
    with pytest.raises(DerivativeError, match=message):
        register_loss("huber", huber, lambda logits, y: 1.01 * huber_grad(logits, y))
    assert "huber" not in mj.known_losses()


def test_kinks_follow_jax_grad():
    with pytest.raises(
        DerivativeError,
        match=r"at z = 0 \(a kink: use the value jax.grad takes there\): expected 0 "
        r"\(jax.grad\), given 1,",
    ):
        register_activation("relu_ge", jax.nn.relu, lambda z: (z >= 0).astype(z.dtype))
    register_activation("relu_gt", jax.nn.relu, lambda z: (z > 0).astype(z.dtype))


def test_bad_registrations_are_refused():
    with pytest.raises(ValueError, match="activation 'tanh' is already registered; pass overwrite=True"):
        register_activation("tanh", *SOFTSIGN)
    with pytest.raises(ValueError, match="loss 'mse' is already registered"):
        register_loss("mse", huber, huber_grad)
    with pytest.raises(DerivativeError, match=r"derivative returned shape \(\), expected \(3,\)"):
        register_activation("summed", jnp.tanh, lambda z: jnp.sum(1 - jnp.tanh(z) ** 2))
    with pytest.raises(DerivativeError, match="derivative returned dtype float64 for float32 input"):
        register_activation("promoting", jnp.tanh, lambda z: 1 - jnp.tanh(z).astype(jnp.float64) ** 2)
    with pytest.raises(DerivativeError, match=r"loss 'mean': value returned shape \(\), expected \(12,\)"):
        register_loss("mean", lambda logits, y: huber(logits, y).mean(), huber_grad)
    with pytest.raises(ValueError, match="targets must be 'dense' or 'labels'"):
        register_loss("huber", huber, huber_grad, targets="probabilities")
    with pytest.raises(ValueError, match="non-empty string"):
        register_activation("", *SOFTSIGN)


def test_overwrite_replaces():
    register_activation("tanh", *SOFTSIGN, overwrite=True)
    assert mj.get_activation("tanh").fn is SOFTSIGN[0]
    register_loss("mse", huber, huber_grad, overwrite=True)
    assert mj.get_loss("mse").per_example is huber


def test_one_percent_off_is_refused_without_float64_too(tmp_path):
    """With jax_enable_x64 off the check runs in float32: it still refuses 1 % and a formula that
    overflows to NaN, and still accepts a correct one computed with cancellation (1 - tanh(z)**2)."""
    script = textwrap.dedent("""
        import jax, jax.numpy as jnp, optax
        from mlp_jax.core.activations import register_activation
        from mlp_jax.core.losses import register_loss
        from mlp_jax.core.verify import DerivativeError
        assert not jax.config.read("jax_enable_x64")
        register_activation("tanh_naive", jnp.tanh, lambda z: 1 - jnp.tanh(z) ** 2)
        register_loss("ce", lambda l, y: optax.softmax_cross_entropy_with_integer_labels(l, y),
                      lambda l, y: jax.nn.softmax(l) - jax.nn.one_hot(y, l.shape[-1], dtype=l.dtype), targets="labels")
        for register, args in [
            (register_activation, ("tanh_101", jnp.tanh, lambda z: 1.01 * (1 - jnp.tanh(z) ** 2))),
            (register_loss, ("mse_101", lambda l, y: ((l - y) ** 2).mean(-1),
                             lambda l, y: 2.02 * (l - y) / l.shape[-1])),
        ]:
            try:
                register(*args)
            except DerivativeError as error:
                assert "float32" in str(error) and "relative difference 0.01" in str(error), error
            else:
                raise AssertionError(f"{args[0]} was accepted")
        try:  # exp(100) overflows in float32: inf / inf = NaN where jax.grad says 0
            register_activation("sigmoid_naive", jax.nn.sigmoid, lambda z: jnp.exp(-z) / (1 + jnp.exp(-z)) ** 2)
        except DerivativeError as error:
            assert "at z = -100: expected 0 (jax.grad), given nan" in str(error), error
        else:
            raise AssertionError("sigmoid_naive was accepted")
        print("ok")
    """)
    env = {**os.environ, "JAX_ENABLE_X64": "0"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
