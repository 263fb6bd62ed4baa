"""The loss-Hessian factors: S diag(s) S^T = jax.hessian of each example's loss in its logits."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mlp_jax as mj
from helpers import make_problem
from mlp_jax.tools.loss_factors import exact_factor, sampled_factor


def _loss_hessians(loss, logits, y):
    spec = mj.get_loss(loss)
    return jax.vmap(jax.hessian(lambda f, t: spec.per_example(f[None], t[None])[0]))(logits, y)


@pytest.mark.x64
@pytest.mark.parametrize("kind", ["softmax_int", "softmax_prob", "mse", "sigmoid_bce"])
def test_exact_factor_squares_to_the_loss_hessian(kind):
    _, _, y, loss, _ = make_problem(0, [2, 4], 6, kind, jnp.float64)
    logits = jnp.asarray(np.random.default_rng(1).standard_normal((6, 4)) * 3)
    s, signs = exact_factor(loss, logits, y)
    assert signs is None and s.shape == (6, 4, 4)
    np.testing.assert_allclose(s @ jnp.swapaxes(s, 1, 2), _loss_hessians(loss, logits, y), rtol=1e-12, atol=1e-15)


@pytest.mark.x64
def test_a_registered_hessian_is_factored_with_its_signs(restored_registries):
    value = lambda f, y: jnp.mean(jnp.sin(f) - y * f, axis=-1)
    grad = lambda f, y: (jnp.cos(f) - y) / f.shape[-1]
    hess = lambda f, y: jnp.einsum("bi,ij->bij", -jnp.sin(f) / f.shape[-1], jnp.eye(f.shape[-1], dtype=f.dtype))
    mj.register_loss("sine", value, grad, hessian=hess)
    logits = jnp.asarray(np.random.default_rng(1).standard_normal((5, 3)) * 2)
    y = jnp.zeros((5, 3))
    s, signs = exact_factor("sine", logits, y)
    assert signs is not None and bool(jnp.any(signs < 0)) and bool(jnp.any(signs > 0))
    rebuilt = jnp.einsum("bik,bk,bjk->bij", s, signs, s)
    np.testing.assert_allclose(rebuilt, _loss_hessians("sine", logits, y), rtol=1e-10, atol=1e-14)


@pytest.mark.x64
@pytest.mark.parametrize(
    "kind", ["softmax_int", "mse", *(pytest.param(k, marks=pytest.mark.slow) for k in ("softmax_prob", "sigmoid_bce"))]
)
def test_sampled_factor_averages_to_the_loss_hessian(kind):
    """Each entry of the mean of S S^T over M samples lies within 5 standard errors of H."""
    _, _, y, loss, _ = make_problem(0, [2, 3], 4, kind, jnp.float64)
    logits = jnp.asarray(np.random.default_rng(2).standard_normal((4, 3)))
    m = 20000
    s = sampled_factor(loss, logits, y, jax.random.key(0), m) * np.sqrt(m)  # (B, out, M), unit columns
    outer = jnp.einsum("bim,bjm->mbij", s, s)
    mean, se = jnp.mean(outer, axis=0), jnp.std(outer, axis=0, ddof=1) / np.sqrt(m)
    h = _loss_hessians(loss, logits, y)
    assert bool(jnp.all(jnp.abs(mean - h) <= 5 * se + 1e-12))
