"""mj.laplace against laplace-torch itself (its default curvlinops backend, and BackPACK's), float64, on the
same weights and data, in laplace-torch's own process: the log marginal likelihood at several priors and
noises, the probit predictive (classification) or f_mu and f_var (regression), and the prior precision its
``optimize_prior_precision`` picks, for diag, kron and full over all layers and the last layer. Runs where
laplace-torch is installed (the bench extra: ``pip install -e ".[bench]"``), skipped otherwise."""

from __future__ import annotations

import importlib.util
import itertools

import jax.numpy as jnp
import numpy as np
import pytest

import mlp_jax as mj
from mlp_jax.bench.peers import run_worker

pytestmark = [
    pytest.mark.slow,
    pytest.mark.x64,
    pytest.mark.skipif(
        importlib.util.find_spec("laplace") is None or importlib.util.find_spec("torch") is None,
        reason='laplace-torch is not installed (pip install -e ".[bench]")',
    ),
]
CASES = list(itertools.product(["classification", "regression"], ["all", "last_layer"], ["diag", "kron", "full"]))
TOLERANCE = 1e-8


def _problem(likelihood, path):
    """The net and data as numpy float64 (written to `path` for laplace-torch) and as JAX arrays (64-bit mode
    is on in the tests, not yet in the module's fixture: the arrays are made from numpy's, never rounded)."""
    rng = np.random.default_rng(0 if likelihood == "classification" else 1)
    sizes = [4, 6, 5, 3]
    layers = [
        (rng.standard_normal((i, o)) / np.sqrt(i), 0.3 * rng.standard_normal(o)) for i, o in itertools.pairwise(sizes)
    ]
    x, x_test = rng.standard_normal((21, 4)), rng.standard_normal((7, 4))
    y = rng.integers(0, 3, 21) if likelihood == "classification" else rng.standard_normal((21, 3))
    arrays = {f"{leaf}{l}": value for l, layer in enumerate(layers) for leaf, value in zip("wb", layer)}
    np.savez(path, x=x, y=y, x_test=x_test, **arrays)
    params = tuple(mj.Layer(jnp.asarray(w), jnp.asarray(b)) for w, b in layers)
    return params, jnp.asarray(x), jnp.asarray(y), jnp.asarray(x_test)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """laplace-torch's answers for every case, with each backend, from one process per backend."""
    folder = tmp_path_factory.mktemp("laplace")
    answers = {}
    for backend in ("curvlinops", "backpack"):
        cases = []
        for likelihood, subset, structure in CASES:
            cases.append(
                dict(
                    problem=str(folder / f"{likelihood}.npz"),
                    activation="tanh",
                    likelihood=likelihood,
                    subset=subset,
                    structure=structure,
                    prior_precision=0.7,
                    sigma_noise=1.3 if likelihood == "regression" else 1.0,
                    batch_size=8,
                    backend=backend,
                    priors=[[0.25, 0.9 if likelihood == "regression" else None], [3.0, None]],
                    optimize=True,
                )
            )
        for likelihood in ("classification", "regression"):
            _problem(likelihood, folder / f"{likelihood}.npz")
        got = run_worker("laplace_peer.py", {"cases": cases}, timeout=900)
        assert "results" in got, got
        for case, result in zip(cases, got["results"]):
            answers[(backend, case["likelihood"], case["subset"], case["structure"])] = result
    return folder, answers


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


@pytest.mark.parametrize("backend", ["curvlinops", "backpack"])
@pytest.mark.parametrize(("likelihood", "subset", "structure"), CASES)
def test_equals_laplace_torch(reference, backend, likelihood, subset, structure):
    folder, answers = reference
    ref = answers[(backend, likelihood, subset, structure)]
    assert "error" not in ref, ref
    params, x, y, x_test = _problem(likelihood, folder / f"check-{likelihood}.npz")
    assert x.dtype == jnp.float64
    sigma = 1.3 if likelihood == "regression" else 1.0
    post = mj.laplace(
        params,
        x,
        y,
        activation="tanh",
        likelihood=likelihood,
        subset=subset,
        structure=structure,
        prior_precision=0.7,
        sigma_noise=sigma,
        batch_size=8,
    )
    assert float(post.log_marginal_likelihood()) == pytest.approx(ref["log_marginal_likelihood"], rel=TOLERANCE)
    regression = likelihood == "regression"
    for (prior, noise), expected in zip(
        [[0.25, 0.9 if regression else None], [3.0, None]], ref["log_marginal_likelihoods"]
    ):
        # laplace-torch keeps a noise it was given: the second call runs at 0.9 too
        kept = 0.9 if regression else None
        assert float(post.log_marginal_likelihood(prior, noise if noise is not None else kept)) == pytest.approx(
            expected, rel=TOLERANCE
        )
    if likelihood == "classification":
        assert _rel(post.predictive(x_test), ref["probit"]) <= TOLERANCE
    else:
        pred = post.predictive(x_test)
        assert _rel(pred.mean, ref["f_mu"]) <= TOLERANCE
        assert _rel(pred.function_variance, ref["f_var"]) <= TOLERANCE
    best = mj.optimize_prior_precision(post)
    assert float(best.prior_precision) == pytest.approx(ref["optimized_prior_precision"], rel=1e-6)
