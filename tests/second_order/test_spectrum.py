"""The Hessian's spectrum against the dense matrix: top eigenvalues against eigvalsh, Hutchinson's trace
against the same probes' quadratic forms and jnp.trace, the SLQ density's mass and moments."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import mlp_jax as mj
from helpers import make_problem


@jax.jit(static_argnames=("activation", "loss", "matrix"))
def _dense(params, x, y, activation, loss, matrix):
    theta, unravel = ravel_pytree(params)
    if matrix == "hessian":
        return jax.hessian(lambda t: mj.loss(unravel(t), x, y, activation=activation, loss=loss))(theta)
    jac = jax.jacrev(lambda t: mj.forward(unravel(t), x, activation=activation))(theta)  # (B, out, P)
    logits = mj.forward(params, x, activation=activation)
    spec = mj.get_loss(loss)
    h = jax.vmap(jax.hessian(lambda f, t: spec.per_example(f[None], t[None])[0]))(logits, y)
    return jnp.einsum("ncp,ncd,ndq->pq", jac, h, jac) / x.shape[0]


@pytest.mark.x64
@pytest.mark.parametrize(
    ("matrix", "activation", "kind"),
    [("hessian", "tanh", "softmax_int"), ("ggn", "relu", "mse"), ("hessian", "softplus", "mse")],
)
def test_top_eigenvalues_are_the_dense_matrix_s(matrix, activation, kind):
    params, x, y, loss, _ = make_problem(0, [3, 4, 3], 10, kind, jnp.float64)
    dense = _dense(params, x, y, activation, loss, matrix)
    p = dense.shape[0]
    expected = jnp.linalg.eigvalsh(dense)[::-1][:4]
    kw = dict(activation=activation, loss=loss, matrix=matrix, key=jax.random.key(1))
    got = mj.hessian_eigenvalues(params, x, y, k=4, num_iterations=p, batch_size=3, **kw)
    assert np.allclose(got.values, expected, rtol=1e-8, atol=1e-10)
    for value, vector in zip(got.values, got.vectors):
        assert float(jnp.linalg.norm(dense @ vector - value * vector)) < 1e-8
    assert float(jnp.max(got.residuals)) < 1e-8
    few = mj.hessian_eigenvalues(params, x, y, k=1, num_iterations=min(p, 20), **kw)
    assert float(few.values[0]) == pytest.approx(float(expected[0]), rel=1e-6)


@pytest.mark.x64
def test_hutchinson_is_the_mean_of_the_probes_quadratic_forms_and_near_the_trace():
    params, x, y, loss, _ = make_problem(2, [3, 5, 3], 12, "softmax_int", jnp.float64)
    dense = _dense(params, x, y, "tanh", loss, "hessian")
    key = jax.random.key(3)
    est = mj.hessian_trace(params, x, y, activation="tanh", loss=loss, num_samples=400, key=key, batch_size=5)
    probes = jax.random.rademacher(key, (400, dense.shape[0]), jnp.float64)
    forms = jnp.einsum("sp,pq,sq->s", probes, dense, probes)
    assert float(est.value) == pytest.approx(float(jnp.mean(forms)), rel=1e-10)
    assert float(est.standard_error) == pytest.approx(float(jnp.std(forms, ddof=1) / 20), rel=1e-8)
    assert abs(float(est.value) - float(jnp.trace(dense))) < 5 * float(est.standard_error)


@pytest.mark.x64
def test_density_integrates_to_one_and_its_moments_are_the_probes():
    params, x, y, loss, _ = make_problem(4, [3, 4, 2], 8, "mse", jnp.float64)
    dense = _dense(params, x, y, "tanh", loss, "ggn")
    p = dense.shape[0]
    key = jax.random.key(5)
    d = mj.hessian_spectral_density(
        params, x, y, activation="tanh", loss=loss, matrix="ggn", key=key, num_probes=6, num_iterations=8
    )
    assert float(jnp.trapezoid(d.density, d.grid)) == pytest.approx(1.0, abs=1e-3)
    assert np.allclose(jnp.sum(d.weights, axis=1), 1.0, atol=1e-10)
    starts = jax.random.normal(key, (6, p), jnp.float64)
    starts = starts / jnp.linalg.norm(starts, axis=1, keepdims=True)
    power = jnp.eye(p)
    for order in range(1, 8):  # Gauss quadrature with 8 nodes is exact for moments up to 15
        power = power @ dense
        got = jnp.sum(d.weights * d.nodes**order, axis=1)
        assert np.allclose(got, jnp.einsum("sp,pq,sq->s", starts, power, starts), rtol=1e-7), order
    mean = float(jnp.sum(d.density * d.grid) * (d.grid[1] - d.grid[0]))
    assert mean == pytest.approx(float(jnp.mean(jnp.sum(d.weights * d.nodes, axis=1))), rel=1e-3)


def test_float32_with_64_bit_mode_off_and_errors():
    assert not jax.config.read("jax_enable_x64")
    params, x, y, loss, _ = make_problem(6, [3, 6, 3], 16, "softmax_int", jnp.float32)
    kw = dict(activation="tanh", loss=loss, key=jax.random.key(0))
    top = mj.hessian_eigenvalues(params, x, y, k=2, **kw)
    assert top.values.dtype == jnp.float32 and float(top.values[0]) >= float(top.values[1])
    assert bool(jnp.isfinite(mj.hessian_trace(params, x, y, num_samples=8, **kw).value))
    with pytest.raises(ValueError, match="matrix must be one of"):
        mj.hessian_eigenvalues(params, x, y, matrix="fisher", **kw)
    with pytest.raises(ValueError, match="k must be at most the number of parameters"):
        mj.hessian_eigenvalues(params, x, y, k=10_000, **kw)
    with pytest.raises(ValueError, match="k=5 eigenvalues need num_iterations >= k"):
        mj.hessian_eigenvalues(params, x, y, k=5, num_iterations=3, **kw)
    with pytest.raises(ValueError, match="num_samples must be an integer >= 1"):
        mj.hessian_trace(params, x, y, num_samples=0, **kw)
    with pytest.raises(ValueError, match="bandwidth must be a positive number"):
        mj.hessian_spectral_density(params, x, y, bandwidth=-1.0, **kw)
    with pytest.raises(ValueError, match="x must be finite"):
        mj.hessian_trace(params, x.at[0, 0].set(jnp.inf), y, **kw)
