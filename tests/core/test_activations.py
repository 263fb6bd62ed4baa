"""Each hand-written derivative against jax.vmap(jax.grad(fn)), on a grid with 0, kinks and |z| up to 100;
register_activation: a correct derivative is accepted and the name works everywhere, a wrong one (1 % off,
the wrong kink value, the wrong shape or dtype) is refused with where and by how much."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mlp_jax as mj
from helpers import SOFTSIGN, assert_works_everywhere, small_problem
from mlp_jax.core import activations
from mlp_jax.core.activations import register_activation
from mlp_jax.core.verify import DerivativeError

GRID = np.concatenate([np.linspace(-100, 100, 2001), [0.0, -1e-7, 1e-7, -30.0, 30.0, 88.0, -88.0]])


@pytest.mark.parametrize("name", mj.known_activations())
@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
def test_derivative_matches_autodiff(name, dtype):
    fn, derivative = mj.get_activation(name)
    z = jnp.asarray(GRID, dtype)
    expected = jax.vmap(jax.grad(fn))(z)
    got = derivative(z)
    assert got.dtype == z.dtype and got.shape == z.shape
    assert np.isfinite(np.asarray(got)).all(), name
    rtol, atol = (1e-12, 1e-14) if dtype == jnp.float64 else (2e-6, 1e-6)  # f32: |error| ~ 8 eps where 1 + tanh cancels
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol)


def test_kink_conventions_follow_jax_grad():
    d = {name: float(mj.get_activation(name).derivative(jnp.zeros(()))) for name in mj.known_activations()}
    assert d["relu"] == 0.0
    assert d["leaky_relu"] == 1.0
    assert d["elu"] == 1.0
    assert d["identity"] == 1.0


def test_activation_values():
    z = jnp.array([-2.0, 0.0, 3.0])
    np.testing.assert_allclose(mj.get_activation("leaky_relu").fn(z), [-0.02, 0.0, 3.0])
    np.testing.assert_allclose(mj.get_activation("elu").fn(z), [np.expm1(-2.0), 0.0, 3.0])
    np.testing.assert_allclose(mj.get_activation("identity").fn(z), z)


def test_unknown_activation_lists_known_names():
    with pytest.raises(ValueError, match=r"unknown activation 'relu6'.*'gelu'"):
        mj.get_activation("relu6")


# ------------------------------------------------------------------------------------------------
# register_activation (every test leaves the registry as it was)


@pytest.mark.slow
@pytest.mark.x64
def test_registered_activation_works_everywhere(capsys, restored_registries):
    register_activation("softsign", *SOFTSIGN)
    assert "softsign" in mj.known_activations()
    params, x, _ = small_problem("dense")
    z = x @ params[0].w + params[0].b[None, :]
    expected = (z / (1 + jnp.abs(z))) @ params[1].w + params[1].b[None, :]
    np.testing.assert_allclose(mj.forward(params, x, "softsign"), expected, rtol=1e-14, atol=1e-15)
    assert_works_everywhere("softsign", "mse", "dense", capsys)


@pytest.mark.x64
def test_derivative_one_percent_off_is_refused(restored_registries):
    with pytest.raises(DerivativeError) as error:
        register_activation("tanh_101", jnp.tanh, lambda z: 1.01 * (1 - jnp.tanh(z)) * (1 + jnp.tanh(z)))
    message = str(error.value)
    assert message.startswith("derivative of activation 'tanh_101' does not match jax.grad: at z = ")
    assert "(jax.grad), given 1.01" in message and "(relative difference 0.01)" in message and "float64" in message
    assert "tanh_101" not in mj.known_activations()


@pytest.mark.x64
def test_kinks_follow_jax_grad(restored_registries):
    with pytest.raises(
        DerivativeError,
        match=r"at z = 0 \(a kink: use the value jax.grad takes there\): expected 0 "
        r"\(jax.grad\), given 1,",
    ):
        register_activation("relu_ge", jax.nn.relu, lambda z: (z >= 0).astype(z.dtype))
    register_activation("relu_gt", jax.nn.relu, lambda z: (z > 0).astype(z.dtype))


@pytest.mark.x64
def test_bad_activation_registrations_are_refused(restored_registries):
    with pytest.raises(ValueError, match="activation 'tanh' is already registered; pass overwrite=True"):
        register_activation("tanh", *SOFTSIGN)
    with pytest.raises(DerivativeError, match=r"derivative returned shape \(\), expected \(3,\)"):
        register_activation("summed", jnp.tanh, lambda z: jnp.sum(1 - jnp.tanh(z) ** 2))
    with pytest.raises(DerivativeError, match="derivative returned dtype float64 for float32 input"):
        register_activation("promoting", jnp.tanh, lambda z: 1 - jnp.tanh(z).astype(jnp.float64) ** 2)
    with pytest.raises(ValueError, match="non-empty string"):
        register_activation("", *SOFTSIGN)


def test_overwrite_replaces_an_activation(restored_registries):
    register_activation("tanh", *SOFTSIGN, overwrite=True)
    assert mj.get_activation("tanh").fn is SOFTSIGN[0]


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
@pytest.mark.parametrize("name", sorted(activations.BUILTIN))
def test_second_derivative_matches_jax_grad_grad_on_the_verification_grid(name, dtype):
    from mlp_jax.core.verify import check_derivative

    act = activations.BUILTIN[name]
    z = jnp.asarray(activations.VERIFY_GRID, dtype)
    expected = jax.vmap(jax.grad(jax.grad(act.fn)))(z)
    check_derivative(
        f"phi'' of {name}", expected, activations.second_derivative(name)(z), lambda i: str(activations.VERIFY_GRID[i])
    )


def test_a_wrong_second_derivative_is_refused(restored_registries):
    with pytest.raises(mj.DerivativeError, match="second derivative of activation 'soft'"):
        mj.register_activation(
            "soft",
            jax.nn.softplus,
            jax.nn.sigmoid,
            second_derivative=lambda z: 1.01 * jax.nn.sigmoid(z) * (1 - jax.nn.sigmoid(z)),
        )
    assert "soft" not in mj.known_activations()
    with pytest.raises(TypeError, match="second_derivative must be a callable"):
        mj.register_activation("soft", jax.nn.softplus, jax.nn.sigmoid, second_derivative=3)
