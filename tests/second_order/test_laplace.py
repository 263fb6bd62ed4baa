"""mj.laplace against dense autodiff references (jax.jacrev of the logits, dense precision matrices,
slogdet, J P^-1 J^T), laplace-torch's formulas written out in the test; chunking, jit, gradients, errors."""

from __future__ import annotations

import dataclasses
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from jax.flatten_util import ravel_pytree
from laplace_reference import blocks, curvature_matrix, dense, jacobian_at, log_marginal_likelihood, subset_and_inputs

import mlp_jax as mj
from mlp_jax.second_order.laplace import posterior_variance


def _problem(seed, sizes, n, likelihood, dtype=jnp.float64):
    rng = np.random.default_rng(seed)
    params = tuple(
        mj.Layer(
            jnp.asarray(rng.standard_normal((i, o)) / np.sqrt(i), dtype),
            jnp.asarray(0.2 * rng.standard_normal(o), dtype),
        )
        for i, o in itertools.pairwise(sizes)
    )
    x = jnp.asarray(rng.standard_normal((n, sizes[0])), dtype)
    x_test = jnp.asarray(rng.standard_normal((5, sizes[0])), dtype)
    if likelihood == "classification":
        y = jnp.asarray(rng.integers(0, sizes[-1], n), jnp.int32)
    else:
        y = jnp.asarray(rng.standard_normal((n, sizes[-1])), dtype)
    return params, x, y, x_test


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def _check_against_dense(params, x, y, x_test, activation, likelihood, subset, structure, delta, sigma, tol):
    post = mj.laplace(
        params,
        x,
        y,
        activation=activation,
        likelihood=likelihood,
        subset=subset,
        structure=structure,
        prior_precision=delta,
        sigma_noise=sigma,
    )
    n, out = x.shape[0], params[-1].w.shape[1]
    ref = dense(params, x, y, activation, likelihood, subset)
    net, _ = subset_and_inputs(params, x, activation, subset)
    curvature = curvature_matrix(ref, net, structure, n)
    expected = log_marginal_likelihood(ref, curvature, likelihood, n, out, delta, sigma)
    assert float(post.log_marginal_likelihood()) == pytest.approx(float(expected), rel=tol, abs=tol)
    # the predictive's covariance: J P^-1 J^T with the dense precision
    f_mu, jac = jacobian_at(params, x_test, activation, subset)
    precision = curvature / sigma**2 + delta * jnp.eye(curvature.shape[0])
    f_var = jnp.einsum("bkp,pq,bmq->bkm", jac, jnp.linalg.inv(precision), jac)
    got_mu, got_var = post.functional_variance(x_test)
    assert _rel(got_mu, f_mu) <= tol and _rel(got_var, f_var) <= tol
    variance = ravel_pytree(posterior_variance(post))[0]
    assert _rel(variance, jnp.diag(jnp.linalg.inv(precision))) <= tol
    if likelihood == "classification":
        kappa = 1 / jnp.sqrt(1 + math.pi / 8 * jnp.diagonal(f_var, axis1=1, axis2=2))
        assert _rel(post.predictive(x_test), jax.nn.softmax(kappa * f_mu)) <= tol
    else:
        pred = post.predictive(x_test)
        assert _rel(pred.function_variance, f_var) <= tol
        assert _rel(pred.variance, jnp.diagonal(f_var, axis1=1, axis2=2) + sigma**2) <= tol


@pytest.mark.slow
@pytest.mark.x64
@settings(max_examples=12, phases=[Phase.explicit, Phase.reuse, Phase.generate])  # no shrinking: slow here
@given(
    seed=st.integers(0, 2**16),
    sizes=st.lists(st.integers(1, 5), min_size=2, max_size=4),
    n=st.integers(1, 7),
    activation=st.sampled_from(["tanh", "relu", "softplus"]),
    likelihood=st.sampled_from(["classification", "regression"]),
    subset=st.sampled_from(["all", "last_layer"]),
    structure=st.sampled_from(["diag", "kron", "full"]),
)
def test_every_structure_matches_dense_references_in_float64(seed, sizes, n, activation, likelihood, subset, structure):
    if likelihood == "classification":
        sizes = [*sizes[:-1], max(sizes[-1], 2)]
    params, x, y, x_test = _problem(seed, sizes, n, likelihood)
    sigma = 0.7 if likelihood == "regression" else 1.0
    _check_against_dense(params, x, y, x_test, activation, likelihood, subset, structure, 0.5, sigma, 1e-10)


@pytest.mark.x64
@pytest.mark.parametrize(
    ("likelihood", "subset", "structure"),
    [
        ("classification", "all", "kron"),
        ("regression", "all", "diag"),
        ("classification", "last_layer", "full"),
        ("regression", "last_layer", "kron"),
    ],
)
def test_a_fixed_net_matches_dense_references_in_float64(likelihood, subset, structure):
    """The quick loop's cases; the property test above (slow) draws nets, data, activations and every case."""
    params, x, y, x_test = _problem(10, [3, 4, 5, 3], 6, likelihood)
    sigma = 0.7 if likelihood == "regression" else 1.0
    _check_against_dense(params, x, y, x_test, "tanh", likelihood, subset, structure, 0.5, sigma, 1e-10)


@pytest.mark.x64
@pytest.mark.parametrize("structure", ["diag", "kron", "full"])
def test_kron_is_exact_for_one_example_and_diag_is_the_ggn_diagonal(structure):
    params, x, y, _ = _problem(1, [3, 4, 3], 1, "classification")
    post = mj.laplace(params, x, y, activation="tanh", structure=structure)
    ref = dense(params, x, y, "tanh", "classification", "all")
    if structure == "diag":
        assert _rel(ravel_pytree(post.curvature)[0], jnp.diag(ref.ggn)) < 1e-13
    elif structure == "full":
        c = post.curvature
        assert _rel((c.vectors * c.values[None, :]) @ c.vectors.T, ref.ggn) < 1e-13
    else:  # one example: kron(a, g) is the weight block of the GGN exactly
        for (w, _), block in zip(blocks(params), post.curvature):
            a = (block.a_vectors * block.a_values[None, :]) @ block.a_vectors.T
            g = (block.g_vectors * block.g_values[None, :]) @ block.g_vectors.T
            assert _rel(jnp.kron(a, g), ref.ggn[w, w]) < 1e-12


@pytest.mark.x64
@pytest.mark.parametrize("structure", ["diag", "kron", "full"])
def test_chunks_add_up_to_the_whole_data_set(structure):
    params, x, y, x_test = _problem(2, [3, 5, 3], 11, "classification")
    whole = mj.laplace(params, x, y, activation="relu", structure=structure)
    chunked = mj.laplace(params, x, y, activation="relu", structure=structure, batch_size=4)
    assert float(chunked.log_marginal_likelihood()) == pytest.approx(float(whole.log_marginal_likelihood()), rel=1e-12)
    assert _rel(chunked.predictive(x_test, batch_size=2), whole.predictive(x_test)) < 1e-12


@pytest.mark.x64
@pytest.mark.parametrize("likelihood", ["classification", "regression"])
def test_log_marginal_likelihood_is_differentiable_in_prior_and_noise(likelihood):
    params, x, y, _ = _problem(3, [2, 4, 2], 9, likelihood)
    post = mj.laplace(params, x, y, activation="tanh", likelihood=likelihood, structure="kron")
    f = lambda d, s: post.log_marginal_likelihood(d, s if likelihood == "regression" else None)
    d, s, h = 0.8, 1.3, 1e-6
    grad_d, grad_s = jax.grad(f, argnums=(0, 1))(d, s)
    assert float(grad_d) == pytest.approx((float(f(d + h, s)) - float(f(d - h, s))) / (2 * h), rel=1e-6)
    if likelihood == "regression":
        assert float(grad_s) == pytest.approx((float(f(d, s + h)) - float(f(d, s - h))) / (2 * h), rel=1e-6)


@pytest.mark.x64
def test_optimized_prior_is_a_stationary_point_of_the_evidence():
    params, x, y, _ = _problem(4, [3, 6, 3], 30, "classification")
    post = mj.laplace(params, x, y, activation="tanh", structure="kron")
    best = mj.optimize_prior_precision(post, num_steps=300)
    assert float(best.log_marginal_likelihood()) > float(post.log_marginal_likelihood())
    log_grad = jax.grad(lambda t: best.log_marginal_likelihood(jnp.exp(t)))(jnp.log(best.prior_precision))
    assert abs(float(log_grad)) < 1e-3
    both = mj.optimize_prior_precision(
        mj.laplace(params, x, jnp.asarray(np.eye(3)[np.asarray(y)]), activation="tanh", likelihood="regression"),
        tune_sigma_noise=True,
        num_steps=300,
    )
    assert float(both.sigma_noise) != 1.0 and float(both.prior_precision) > 0


@pytest.mark.x64
def test_mc_predictive_is_reproducible_and_tends_to_the_map_as_the_prior_tightens():
    params, x, y, x_test = _problem(5, [3, 4, 3], 8, "classification")
    post = mj.laplace(params, x, y, activation="tanh", structure="full")
    key = jax.random.key(0)
    a = post.predictive(x_test, link="mc", num_samples=64, key=key)
    b = post.predictive(x_test, link="mc", num_samples=64, key=key)
    assert jnp.array_equal(a, b) and jnp.allclose(jnp.sum(a, axis=1), 1.0)
    tight = dataclasses.replace(post, prior_precision=jnp.asarray(1e12))
    map_probs = jax.nn.softmax(mj.forward(params, x_test, activation="tanh"))
    assert _rel(tight.predictive(x_test, link="mc", num_samples=8, key=key), map_probs) < 1e-5
    assert _rel(tight.predictive(x_test), map_probs) < 1e-5
    # many samples: the mc predictive and the probit approximation are close
    wide = post.predictive(x_test, link="mc", num_samples=20_000, key=key)
    assert float(jnp.max(jnp.abs(wide - post.predictive(x_test)))) < 0.05


def test_float32_with_64_bit_mode_off():
    assert not jax.config.read("jax_enable_x64")
    params, x, y, x_test = _problem(6, [3, 5, 3], 10, "classification", jnp.float32)
    for structure in ("diag", "kron", "full"):
        post = mj.laplace(params, x, y, activation="relu", structure=structure, subset="last_layer")
        value = post.log_marginal_likelihood()
        assert value.dtype == jnp.float32 and bool(jnp.isfinite(value))
        probs = post.predictive(x_test)
        assert probs.dtype == jnp.float32 and bool(jnp.allclose(jnp.sum(probs, axis=1), 1, atol=1e-5))


def test_a_posterior_passes_through_jit():
    params, x, y, _ = _problem(7, [2, 3, 2], 6, "classification", jnp.float32)
    post = mj.laplace(params, x, y, activation="tanh", structure="kron")
    value = jax.jit(lambda p, d: p.log_marginal_likelihood(d))(post, 2.0)
    assert float(value) == pytest.approx(float(post.log_marginal_likelihood(2.0)), rel=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (dict(likelihood="poisson"), ValueError, "likelihood must be one of"),
        (dict(subset="first_layer"), ValueError, "subset must be one of"),
        (dict(structure="lowrank"), ValueError, "structure must be one of"),
        (dict(prior_precision=0.0), ValueError, "prior_precision must be a positive finite number"),
        (dict(prior_precision="a"), TypeError, "prior_precision must be a positive number"),
        (dict(sigma_noise=2.0), ValueError, "sigma_noise applies to likelihood='regression' only"),
        (dict(batch_size=0), ValueError, "batch_size must be an integer >= 1"),
        (dict(activation="nope"), ValueError, "unknown activation 'nope'"),
    ],
)
def test_bad_arguments_are_refused_before_any_work(kwargs, error, message):
    params, x, y, _ = _problem(8, [2, 3, 2], 4, "classification", jnp.float32)
    with pytest.raises(error, match=message):
        mj.laplace(params, x, y, **{"activation": "tanh", **kwargs})


def test_bad_data_and_requests_are_refused():
    params, x, y, x_test = _problem(9, [2, 3, 2], 4, "classification", jnp.float32)
    with pytest.raises(ValueError, match="integer labels must lie in"):
        mj.laplace(params, x, y.at[0].set(5), activation="tanh")
    with pytest.raises(ValueError, match=r"expects integer labels of shape \(4,\)"):
        mj.laplace(params, x, jnp.ones((4, 2)) / 2, activation="tanh")
    with pytest.raises(ValueError, match="x must be finite"):
        mj.laplace(params, x.at[1, 1].set(jnp.nan), y, activation="tanh")
    with pytest.raises(ValueError, match=r"loss 'mse' expects y of shape \(4, 2\)"):
        mj.laplace(params, x, y, activation="tanh", likelihood="regression")
    big = mj.init_params(jax.random.key(0), [100, 100, 2])
    with pytest.raises(ValueError, match="structure='full' over 10302 weights"):
        mj.laplace(big, jnp.zeros((2, 100)), jnp.array([0, 1]), activation="relu", structure="full")
    post = mj.laplace(params, x, y, activation="tanh")
    with pytest.raises(ValueError, match="pass key="):
        post.predictive(x_test, link="mc")
    with pytest.raises(ValueError, match="link must be one of"):
        post.predictive(x_test, link="bridge")
    with pytest.raises(ValueError, match="sigma_noise applies to likelihood='regression' only"):
        post.log_marginal_likelihood(1.0, 2.0)
    with pytest.raises(ValueError, match="tune_sigma_noise applies"):
        mj.optimize_prior_precision(post, tune_sigma_noise=True)
