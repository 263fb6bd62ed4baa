"""Each hand-written derivative against jax.vmap(jax.grad(fn)), on a grid with 0, kinks and |z| up to 100."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mlp_jax as mj

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
