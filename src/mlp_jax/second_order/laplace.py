"""The Laplace approximation of an MLP's posterior at its MAP weights, with laplace-torch's conventions.

The posterior over the weights theta of `subset` ("all" layers, or the "last_layer" alone) is the Gaussian
``N(theta_MAP, P^-1)`` with precision ``P = G / sigma_noise^2 + delta I``: G the GGN of the data's SUMMED
negative log-likelihood (`mlp_jax.second_order.glm`) in the `structure` "diag", "kron" (per layer
``G_W ~ kron(a, g)``, ``G_b = g``) or "full", and ``delta`` the prior precision of an isotropic Gaussian
prior with mean 0. As laplace-torch computes them:

- log likelihood ``= -L / sigma^2`` (classification: L the summed cross-entropy, sigma 1) and
  ``-L / sigma^2 - N out log(sigma sqrt(2 pi))`` (regression: L = 0.5 sum ||f - y||^2);
- log marginal likelihood ``= log likelihood - 0.5 (log det P - P_n log delta + delta ||theta_MAP||^2)``,
  P_n the number of weights in the subset;
- kron's log det is ``sum log(outer(eig a, eig g) / sigma^2 + delta)`` (eigenvalues clipped at 0), the
  prior added to the Kronecker product exactly, not to each factor;
- the predictive is the linearized network's (the GLM predictive): ``f ~ N(f(x), J P^-1 J^T)``; for
  classification the probit approximation ``softmax(f / sqrt(1 + pi/8 diag var))`` or the mean softmax
  of samples ("mc"); for regression the mean and variance.

Every curvature comes from the hand-written pass; each structure stores what makes a change of prior or
noise cheap (eigendecompositions), so `log_marginal_likelihood` is differentiable in both.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from mlp_jax.core.activations import get_activation
from mlp_jax.core.params import Layer, Params, layer_sizes, parameter_count
from mlp_jax.core.validation import check_inputs, prepare_targets
from mlp_jax.second_order.batching import check_batch_size, chunks
from mlp_jax.second_order.glm import (
    LIKELIHOODS,
    STRUCTURES,
    SUBSETS,
    TARGET_LOSS,
    jacobian_columns,
    output_jacobian,
    subset_net,
    summed_ggn,
)
from mlp_jax.second_order.kron import eigen_kron

Array = jax.Array

LINKS = ("probit", "mc")
_eigen_kron = jax.jit(eigen_kron)
MAX_FULL_PARAMETERS = 10_000  # a (P, P) float64 matrix of 800 MB and its eigendecomposition


class FullEigen(NamedTuple):
    """The GGN over the subset's P weights, eigendecomposed: ``G = V diag(values) V^T``."""

    values: Array  # (P,)
    vectors: Array  # (P, P)


class RegressionPredictive(NamedTuple):
    """The GLM predictive of a regression posterior at B inputs."""

    mean: Array  # (B, out): f(x) at the MAP weights
    function_variance: Array  # (B, out, out): J P^-1 J^T, laplace-torch's f_var
    variance: Array  # (B, out): the predictive variance of y, diag(function_variance) + sigma_noise^2


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["params", "curvature", "data_loss", "prior_precision", "sigma_noise"],
    meta_fields=["n_data", "n_outputs", "activation", "likelihood", "subset", "structure"],
)
@dataclasses.dataclass(frozen=True)
class Posterior:
    """A Laplace posterior (`laplace` makes one). A pytree: it passes through `jax.jit`, and
    `dataclasses.replace` gives the same posterior under another prior precision or noise."""

    params: Params  # the MAP network, every layer (the posterior is over the `subset` of them)
    curvature: Any  # the summed GGN at sigma_noise 1: a params-shaped diagonal, KronEigen per layer, or FullEigen
    data_loss: Array  # (): sum_n -log p(y_n | f_n) without the Gaussian's constant: the cross-entropy or 0.5 SSE
    prior_precision: Array  # (): delta
    sigma_noise: Array  # (): the Gaussian likelihood's standard deviation (1 for classification)
    n_data: int
    n_outputs: int
    activation: str
    likelihood: str
    subset: str
    structure: str

    @property
    def mean(self) -> Params:
        """The MAP weights of the subset the posterior is over."""
        return self.params[-1:] if self.subset == "last_layer" else self.params

    @property
    def num_parameters(self) -> int:
        """P_n, the number of weights the posterior is over."""
        return parameter_count(layer_sizes(self.mean))

    def log_likelihood(self, sigma_noise: Array | float | None = None) -> Array:
        """(): the data's log likelihood at the MAP weights (laplace-torch's ``log_likelihood``)."""
        sigma = self.sigma_noise if sigma_noise is None else jnp.asarray(sigma_noise, self.data_loss.dtype)
        value = -self.data_loss / sigma**2
        if self.likelihood == "regression":
            value = value - self.n_data * self.n_outputs * jnp.log(sigma * math.sqrt(2 * math.pi))
        return value

    def log_det_posterior_precision(
        self, prior_precision: Array | float | None = None, sigma_noise: Array | float | None = None
    ) -> Array:
        """(): ``log det P`` with P = G / sigma^2 + delta I in the posterior's structure."""
        delta, scale = self._delta_and_scale(prior_precision, sigma_noise)
        return jnp.sum(jnp.stack([jnp.sum(jnp.log(values)) for values in _precision_eigenvalues(self, delta, scale)]))

    def log_marginal_likelihood(
        self, prior_precision: Array | float | None = None, sigma_noise: Array | float | None = None
    ) -> Array:
        """(): the Laplace approximation of the log evidence, at the stored prior precision and noise or at
        those given; differentiable in both (`jax.grad` works through it)."""
        if sigma_noise is not None and self.likelihood != "regression":
            raise ValueError("sigma_noise applies to likelihood='regression' only")
        delta, _ = self._delta_and_scale(prior_precision, sigma_noise)
        theta = jnp.concatenate([leaf.ravel() for leaf in jax.tree.leaves(self.mean)])
        scatter = delta * jnp.sum(theta * theta)
        log_det_ratio = self.log_det_posterior_precision(delta, sigma_noise) - self.num_parameters * jnp.log(delta)
        return self.log_likelihood(sigma_noise) - 0.5 * (log_det_ratio + scatter)

    def predictive(
        self,
        x: Array,
        *,
        link: str = "probit",
        num_samples: int = 100,
        key: Array | None = None,
        batch_size: int | None = None,
    ) -> Array | RegressionPredictive:
        """The GLM predictive at x (B, d_in): class probabilities (B, out) for classification (``link``
        "probit", or "mc" with `num_samples` draws of the logits from `key`), a `RegressionPredictive`
        for regression. `batch_size` bounds the memory of the Jacobians."""
        x, _ = check_inputs(self.params, x)
        if link not in LINKS:
            raise ValueError(f"link must be one of {list(LINKS)}, got {link!r}")
        if self.likelihood == "classification" and link == "mc":
            if key is None:
                raise ValueError("link='mc' samples the logits: pass key=jax.random.key(...)")
            if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 1:
                raise ValueError(f"num_samples must be an integer >= 1, got {num_samples!r}")
        size = check_batch_size(batch_size, x.shape[0])
        dummy = jnp.zeros((x.shape[0],), jnp.int32)
        keys = jax.random.split(key, -(-x.shape[0] // size)) if key is not None else None
        outputs = []
        for i, chunk in enumerate(chunks(x, dummy, size)):
            k = keys[i] if keys is not None else None
            outputs.append(_predict_chunk(self, chunk.x, k, link=link, num_samples=num_samples))
        n = x.shape[0]
        joined = jax.tree.map(lambda *parts: jnp.concatenate(parts)[:n], *outputs)
        if self.likelihood == "classification":
            return joined
        mean, f_var = joined
        variance = jnp.diagonal(f_var, axis1=1, axis2=2) + self.sigma_noise**2
        return RegressionPredictive(mean, f_var, variance)

    def functional_variance(self, x: Array) -> tuple[Array, Array]:
        """``(f(x) (B, out), J P^-1 J^T (B, out, out))``: the linearized network's mean and covariance."""
        x, _ = check_inputs(self.params, x)
        return _functional(self, x)

    def _delta_and_scale(self, prior_precision, sigma_noise) -> tuple[Array, Array]:
        dtype = self.data_loss.dtype
        delta = self.prior_precision if prior_precision is None else jnp.asarray(prior_precision, dtype)
        sigma = self.sigma_noise if sigma_noise is None else jnp.asarray(sigma_noise, dtype)
        return delta, 1 / sigma**2


def _precision_eigenvalues(posterior: Posterior, delta: Array, scale: Array) -> list[Array]:
    """The eigenvalues of P = scale G + delta I, block by block."""
    c = posterior.curvature
    if posterior.structure == "diag":
        return [scale * leaf + delta for leaf in jax.tree.leaves(c)]
    if posterior.structure == "kron":
        out = []
        for block in c:
            out.append(scale * jnp.outer(block.a_values, block.g_values) + delta)  # the weight block
            out.append(scale * block.g_values + delta)  # the bias block: g
        return out
    return [scale * c.values + delta]


def _functional(posterior: Posterior, x: Array) -> tuple[Array, Array]:
    """f(x) and ``J P^-1 J^T`` (B, out, out), from the factored Jacobian."""
    net, inputs = subset_net(posterior.params, x, posterior.activation, posterior.subset)
    logits, cache, gammas = output_jacobian(net, inputs, posterior.activation)
    delta, scale = posterior._delta_and_scale(None, None)
    c = posterior.curvature
    if posterior.structure == "full":
        jv = jacobian_columns(cache, gammas) @ c.vectors  # (B, out, P)
        return logits, jnp.einsum("bkp,p,bmp->bkm", jv, 1 / (scale * c.values + delta), jv)
    f_var = jnp.zeros(logits.shape + logits.shape[-1:], logits.dtype)
    for l, (a, gamma) in enumerate(zip(cache.inputs, gammas)):
        if posterior.structure == "diag":
            v_w, v_b = 1 / (scale * c[l].w + delta), 1 / (scale * c[l].b + delta)
        else:  # kron: in the factors' eigenbases the precision of the block is diagonal
            block = c[l]
            a, gamma = a @ block.a_vectors, gamma @ block.g_vectors
            v_w = 1 / (scale * jnp.outer(block.a_values, block.g_values) + delta)
            v_b = 1 / (scale * block.g_values + delta)
        weighted = (a * a) @ v_w + v_b[None, :]  # (B, d_out): the W and b blocks' sum_i a_i^2 v_ij + v_j
        f_var = f_var + jnp.einsum("bkj,bj,bmj->bkm", gamma, weighted, gamma)
    return logits, f_var


@functools.partial(jax.jit, static_argnames=("link", "num_samples"))
def _predict_chunk(posterior: Posterior, x: Array, key: Array | None, *, link: str, num_samples: int) -> Any:
    f_mu, f_var = _functional(posterior, x)
    if posterior.likelihood == "regression":
        return f_mu, f_var
    if link == "probit":
        kappa = 1 / jnp.sqrt(1 + math.pi / 8 * jnp.diagonal(f_var, axis1=1, axis2=2))
        return jax.nn.softmax(kappa * f_mu, axis=-1)
    values, vectors = jnp.linalg.eigh(f_var)  # a square root of each (out, out) covariance
    root = vectors * jnp.sqrt(jnp.maximum(values, 0))[:, None, :]
    assert key is not None  # predictive checks it for link='mc'
    noise = jax.random.normal(key, (num_samples, *f_mu.shape), f_mu.dtype)
    samples = f_mu[None] + jnp.einsum("bij,sbj->sbi", root, noise)
    return jnp.mean(jax.nn.softmax(samples, axis=-1), axis=0)


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")


def _positive(name: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a positive number, got {value!r}") from None
    if not (number > 0 and math.isfinite(number)):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return number


@functools.partial(jax.jit, static_argnames=("activation", "likelihood", "subset", "structure", "n_data"))
def _chunk_ggn(params, x, y, mask, *, activation, likelihood, subset, structure, n_data):
    net, inputs = subset_net(params, x, activation, subset)
    return summed_ggn(
        net, inputs, y, mask, activation=activation, likelihood=likelihood, structure=structure, n_data=n_data
    )


def laplace(
    params: Params,
    x: Array,
    y: Array,
    *,
    activation: str,
    likelihood: str = "classification",
    subset: str = "all",
    structure: str = "diag",
    prior_precision: float = 1.0,
    sigma_noise: float = 1.0,
    batch_size: int | None = None,
) -> Posterior:
    """The Laplace posterior at the MAP weights `params`, fitted on the training data x (N, d_in) and y
    (integer labels (N,) for classification, targets (N, out) for regression).

    The GGN is summed over the data in chunks of `batch_size` rows (all at once when None), so a data set
    larger than memory works; "kron" sums its factors chunk by chunk as laplace-torch does over a loader.
    "full" needs the subset's P weights to be at most `MAX_FULL_PARAMETERS`."""
    _check_choice("likelihood", likelihood, LIKELIHOODS)
    _check_choice("subset", subset, SUBSETS)
    _check_choice("structure", structure, STRUCTURES)
    get_activation(activation)
    x, dtype = check_inputs(params, x)  # params too
    n, out = x.shape[0], params[-1].w.shape[1]
    if n == 0:
        raise ValueError(f"x must hold at least one example, got shape {x.shape}")
    if likelihood == "classification" and np.ndim(y) != 1:
        raise ValueError(f"likelihood='classification' expects integer labels of shape ({n},), got shape {np.shape(y)}")
    y = prepare_targets(TARGET_LOSS[likelihood], y, n, out, dtype)
    delta = _positive("prior_precision", prior_precision)
    sigma = _positive("sigma_noise", sigma_noise)
    if likelihood == "classification" and sigma != 1.0:
        raise ValueError(f"sigma_noise applies to likelihood='regression' only, got {sigma_noise!r}")
    num_parameters = parameter_count(layer_sizes(params[-1:] if subset == "last_layer" else params))
    if structure == "full" and num_parameters > MAX_FULL_PARAMETERS:
        raise ValueError(
            f"structure='full' over {num_parameters} weights needs a ({num_parameters}, {num_parameters}) matrix; "
            f"it is limited to {MAX_FULL_PARAMETERS} weights: use structure='kron' or 'diag', or subset='last_layer'"
        )
    size = check_batch_size(batch_size, n)
    static = dict(activation=activation, likelihood=likelihood, subset=subset, structure=structure, n_data=n)
    data_loss, total = None, None
    for chunk in chunks(x, y, size):
        value, curvature = _chunk_ggn(params, chunk.x, chunk.y, chunk.mask, **static)
        data_loss = value if data_loss is None else data_loss + value
        total = curvature if total is None else jax.tree.map(jnp.add, total, curvature)
    assert data_loss is not None  # n >= 1: at least one chunk
    if structure == "kron":
        total = _eigen_kron(total)
    elif structure == "full":
        total = FullEigen(*jnp.linalg.eigh(total))
    return Posterior(
        params=params,
        curvature=total,
        data_loss=data_loss,
        prior_precision=jnp.asarray(delta, dtype),
        sigma_noise=jnp.asarray(sigma, dtype),
        n_data=n,
        n_outputs=out,
        activation=activation,
        likelihood=likelihood,
        subset=subset,
        structure=structure,
    )


@functools.partial(jax.jit, static_argnames=("num_steps", "tune_sigma_noise"))
def _optimize(posterior: Posterior, log_init: Array, learning_rate: Array, num_steps: int, tune_sigma_noise: bool):
    optimizer = optax.adam(learning_rate)

    def negative(logs: Array) -> Array:
        sigma = jnp.exp(logs[1]) if tune_sigma_noise else None
        return -posterior.log_marginal_likelihood(jnp.exp(logs[0]), sigma)

    def step(carry, _):
        logs, state = carry
        value, grad = jax.value_and_grad(negative)(logs)
        updates, state = optimizer.update(grad, state)
        return (optax.apply_updates(logs, updates), state), value

    (logs, _), values = jax.lax.scan(step, (log_init, optimizer.init(log_init)), None, length=num_steps)
    return jnp.exp(logs), values


def optimize_prior_precision(
    posterior: Posterior,
    *,
    num_steps: int = 100,
    learning_rate: float = 0.1,
    init_prior_precision: float = 1.0,
    tune_sigma_noise: bool = False,
) -> Posterior:
    """The posterior with the prior precision that maximizes its log marginal likelihood: `num_steps` Adam
    steps of size `learning_rate` on ``log delta`` from `init_prior_precision` (laplace-torch's
    ``optimize_prior_precision(method="marglik")`` and its defaults). With `tune_sigma_noise` (regression)
    ``log sigma_noise`` is optimized jointly, from the posterior's current value."""
    if not isinstance(num_steps, int) or isinstance(num_steps, bool) or num_steps < 1:
        raise ValueError(f"num_steps must be an integer >= 1, got {num_steps!r}")
    lr = _positive("learning_rate", learning_rate)
    init = _positive("init_prior_precision", init_prior_precision)
    if tune_sigma_noise and posterior.likelihood != "regression":
        raise ValueError("tune_sigma_noise applies to likelihood='regression' only")
    dtype = posterior.data_loss.dtype
    log_init = jnp.log(jnp.stack([jnp.asarray(init, dtype), posterior.sigma_noise.astype(dtype)]))
    values, _ = _optimize(posterior, log_init, jnp.asarray(lr, dtype), num_steps, bool(tune_sigma_noise))
    return dataclasses.replace(
        posterior, prior_precision=values[0], sigma_noise=values[1] if tune_sigma_noise else posterior.sigma_noise
    )


def posterior_variance(posterior: Posterior) -> Params:
    """The marginal variances of the subset's weights, params-shaped: the diagonal of ``P^-1``."""
    delta, scale = posterior._delta_and_scale(None, None)
    c = posterior.curvature
    if posterior.structure == "diag":
        return jax.tree.map(lambda h: 1 / (scale * h + delta), c)
    if posterior.structure == "kron":
        out = []
        for block in c:
            v_w = 1 / (scale * jnp.outer(block.a_values, block.g_values) + delta)
            w = (block.a_vectors**2) @ v_w @ (block.g_vectors**2).T
            b = (block.g_vectors**2) @ (1 / (scale * block.g_values + delta))
            out.append(Layer(w=w, b=b))
        return tuple(out)
    diagonal = (c.vectors**2) @ (1 / (scale * c.values + delta))
    return ravel_pytree(posterior.mean)[1](diagonal)
