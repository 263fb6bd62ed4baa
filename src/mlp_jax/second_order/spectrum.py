"""The spectrum of the loss's Hessian (or GGN) over a data set, from the hand-written products (PyHessian's
three quantities, Yao et al. 2020): the top eigenvalues by Lanczos, the trace by Hutchinson's estimator, and
the spectral density by stochastic Lanczos quadrature (Ghorbani et al. 2019).

The matrix is that of the library's loss L, the mean over the N examples of x: ``H = d^2 L / d theta^2``
(`mlp_jax.hessian_vector_product`) or the GGN (`mlp_jax.ggn_vector_product`). A product with it is summed
over chunks of `batch_size` rows (a `lax.scan`, one compiled program), each chunk's mean weighted by its share
of the examples, so the whole data set never needs to fit in memory at once. Vectors are flat, in
`jax.flatten_util.ravel_pytree`'s order of the params.

Lanczos runs with full reorthogonalization (twice per step), so its Ritz values are those of exact
arithmetic to rounding; with as many iterations as parameters they are the eigenvalues. Like every Krylov
method it sees one copy of a repeated eigenvalue: a multiplicity shows as one value.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from mlp_jax.core.params import Params, layer_sizes, parameter_count
from mlp_jax.core.validation import check_problem
from mlp_jax.second_order.batching import Chunk, check_batch_size, stacked_chunks
from mlp_jax.tools.curvature_products import ggn_vector_product, hessian_vector_product

Array = jax.Array

MATRICES = ("hessian", "ggn")
DEFAULT_ITERATIONS = 100


class Eigenpairs(NamedTuple):
    """The top k eigenvalues (descending) of the matrix, their Ritz vectors and residuals."""

    values: Array  # (k,)
    vectors: Array  # (k, P): unit Ritz vectors, flat in ravel_pytree order (unravel each to get params' shape)
    residuals: Array  # (k,): ||M u - lambda u||, how far each pair is from converged


class TraceEstimate(NamedTuple):
    value: Array  # (): Hutchinson's estimate of tr(M), the mean of v^T M v over Rademacher v
    standard_error: Array  # (): the samples' standard deviation / sqrt(num_samples)
    num_samples: int


class SpectralDensity(NamedTuple):
    """Stochastic Lanczos quadrature: per probe, nodes and weights of a Gauss quadrature of the spectral
    measure, and their Gaussian-smoothed mixture on a grid."""

    grid: Array  # (G,): eigenvalue axis
    density: Array  # (G,): the smoothed density, integrating to 1 over the grid
    nodes: Array  # (num_probes, m): Ritz values of each probe's Lanczos run
    weights: Array  # (num_probes, m): their weights (squared first components), each row summing to 1
    bandwidth: Array  # (): the Gaussian kernel's standard deviation


def _check_args(params, x, y, activation, loss, matrix, batch_size) -> tuple[Array, Array, int]:
    if matrix not in MATRICES:
        raise ValueError(f"matrix must be one of {list(MATRICES)}, got {matrix!r}")
    x, y, _, _ = check_problem(params, x, y, activation, loss)
    return x, y, check_batch_size(batch_size, x.shape[0])


def _positive_int(name: str, value, at_most: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if at_most is not None and value > at_most:
        raise ValueError(f"{name} must be at most the number of parameters, {at_most}, got {value}")
    return value


def _iterations(num_iterations: int | None, num_parameters: int) -> int:
    if num_iterations is None:
        return min(num_parameters, DEFAULT_ITERATIONS)
    return _positive_int("num_iterations", num_iterations, num_parameters)


def make_matvec(params: Params, data: Chunk, *, activation: str, loss: str, matrix: str) -> Callable[[Array], Array]:
    """``v (P,) -> M v (P,)`` for the mean loss over every real row of the stacked chunks `data`."""
    _, unravel = ravel_pytree(params)
    product = hessian_vector_product if matrix == "hessian" else ggn_vector_product
    counts = jnp.sum(data.mask, axis=1)  # (chunks,)
    shares = counts / jnp.sum(counts)

    def matvec(v: Array) -> Array:
        direction = unravel(v)

        def body(total, chunk):
            (x, y, mask), share = chunk
            out = product(params, x, y, direction, activation=activation, loss=loss, sample_weight=mask)
            return total + share * ravel_pytree(out)[0], None

        return jax.lax.scan(body, jnp.zeros_like(v), (tuple(data), shares))[0]

    return matvec


def lanczos(matvec: Callable[[Array], Array], start: Array, num_iterations: int) -> tuple[Array, Array, Array]:
    """``(alpha (m,), beta (m,), basis (m, P))``: m steps of Lanczos from `start`, with full
    reorthogonalization; T = tridiag(beta[:-1], alpha, beta[:-1]) and ``beta[-1]`` the residual's norm. A
    breakdown (an invariant subspace) leaves the remaining basis vectors 0, which decouples T."""
    size = start.shape[0]
    basis = jnp.zeros((num_iterations + 1, size), start.dtype).at[0].set(start / jnp.linalg.norm(start))
    eps = jnp.finfo(start.dtype).eps

    def step(j, carry):
        basis, alpha, beta = carry
        v = basis[j]
        w = matvec(v)
        reference = jnp.linalg.norm(w)
        a = jnp.vdot(v, w)
        w = w - a * v - jnp.where(j > 0, beta[j - 1], 0) * basis[j - 1]
        for _ in range(2):  # full reorthogonalization against every earlier vector (later rows are 0)
            w = w - basis.T @ (basis @ w)
        b = jnp.linalg.norm(w)
        ok = b > 100 * eps * reference  # else: w is rounding noise, the Krylov space is invariant
        b = jnp.where(ok, b, 0)
        return basis.at[j + 1].set(w / jnp.where(ok, b, 1) * ok), alpha.at[j].set(a), beta.at[j].set(b)

    zeros = jnp.zeros((num_iterations,), start.dtype)
    basis, alpha, beta = jax.lax.fori_loop(0, num_iterations, step, (basis, zeros, zeros))
    return alpha, beta, basis[:num_iterations]


def _tridiagonal(alpha: Array, beta: Array) -> Array:
    off = beta[:-1]
    return jnp.diag(alpha) + jnp.diag(off, 1) + jnp.diag(off, -1)


@functools.partial(jax.jit, static_argnames=("activation", "loss", "matrix", "k", "num_iterations"))
def _top(params, data, key, *, activation, loss, matrix, k, num_iterations) -> Eigenpairs:
    matvec = make_matvec(params, data, activation=activation, loss=loss, matrix=matrix)
    theta = ravel_pytree(params)[0]
    alpha, beta, basis = lanczos(matvec, jax.random.normal(key, theta.shape, theta.dtype), num_iterations)
    values, vectors = jnp.linalg.eigh(_tridiagonal(alpha, beta))  # ascending
    order = jnp.arange(num_iterations - 1, num_iterations - 1 - k, -1)
    ritz = vectors[:, order].T @ basis  # (k, P)
    ritz = ritz / jnp.linalg.norm(ritz, axis=1, keepdims=True)
    residuals = jnp.linalg.norm(jax.vmap(matvec)(ritz) - values[order][:, None] * ritz, axis=1)
    return Eigenpairs(values[order], ritz, residuals)


def hessian_eigenvalues(
    params: Params,
    x: Array,
    y: Array,
    *,
    activation: str,
    loss: str,
    k: int = 1,
    matrix: str = "hessian",
    key: Array,
    num_iterations: int | None = None,
    batch_size: int | None = None,
) -> Eigenpairs:
    """The k largest eigenvalues (descending) of the Hessian (or GGN) of the mean loss over x, y, with Ritz
    vectors and residuals: `num_iterations` Lanczos steps (default min(P, 100)) from a normal vector drawn
    from `key`, products summed over chunks of `batch_size` rows."""
    x, y, size = _check_args(params, x, y, activation, loss, matrix, batch_size)
    num_parameters = parameter_count(layer_sizes(params))
    k = _positive_int("k", k, num_parameters)
    m = _iterations(num_iterations, num_parameters)
    if k > m:
        raise ValueError(f"k={k} eigenvalues need num_iterations >= k, got {m}")
    data = stacked_chunks(x, y, size)
    return _top(params, data, key, activation=activation, loss=loss, matrix=matrix, k=k, num_iterations=m)


@functools.partial(jax.jit, static_argnames=("activation", "loss", "matrix", "num_samples"))
def _trace(params, data, key, *, activation, loss, matrix, num_samples) -> tuple[Array, Array]:
    matvec = make_matvec(params, data, activation=activation, loss=loss, matrix=matrix)
    theta = ravel_pytree(params)[0]
    probes = jax.random.rademacher(key, (num_samples, theta.size), theta.dtype)
    samples = jax.lax.map(lambda v: jnp.vdot(v, matvec(v)), probes)
    return jnp.mean(samples), jnp.std(samples, ddof=1 if num_samples > 1 else 0) / jnp.sqrt(num_samples)


def hessian_trace(
    params: Params,
    x: Array,
    y: Array,
    *,
    activation: str,
    loss: str,
    num_samples: int = 100,
    matrix: str = "hessian",
    key: Array,
    batch_size: int | None = None,
) -> TraceEstimate:
    """Hutchinson's unbiased estimate of tr(M) from `num_samples` Rademacher vectors drawn from `key`, with
    its standard error."""
    x, y, size = _check_args(params, x, y, activation, loss, matrix, batch_size)
    n = _positive_int("num_samples", num_samples)
    data = stacked_chunks(x, y, size)
    value, error = _trace(params, data, key, activation=activation, loss=loss, matrix=matrix, num_samples=n)
    return TraceEstimate(value, error, n)


@functools.partial(
    jax.jit, static_argnames=("activation", "loss", "matrix", "num_probes", "num_iterations", "num_points")
)
def _density(params, data, key, bandwidth, *, activation, loss, matrix, num_probes, num_iterations, num_points):
    matvec = make_matvec(params, data, activation=activation, loss=loss, matrix=matrix)
    theta = ravel_pytree(params)[0]
    starts = jax.random.normal(key, (num_probes, theta.size), theta.dtype)

    def quadrature(start):
        alpha, beta, _ = lanczos(matvec, start, num_iterations)
        nodes, vectors = jnp.linalg.eigh(_tridiagonal(alpha, beta))
        return nodes, vectors[0] ** 2

    nodes, weights = jax.lax.map(quadrature, starts)  # (probes, m) each
    low, high = jnp.min(nodes), jnp.max(nodes)
    spread = jnp.maximum(high - low, 1.0)
    # PyHessian's kernel by default: variance 1e-5 max(1, range)
    sigma = jnp.where(bandwidth > 0, bandwidth, jnp.sqrt(1e-5 * spread))
    grid = jnp.linspace(low - 0.01 * spread - 6 * sigma, high + 0.01 * spread + 6 * sigma, num_points)
    kernels = jnp.exp(-0.5 * ((grid[:, None, None] - nodes[None]) / sigma) ** 2) / (sigma * jnp.sqrt(2 * jnp.pi))
    density = jnp.sum(kernels * weights[None], axis=(1, 2)) / num_probes
    return SpectralDensity(grid, density, nodes, weights, sigma)


def hessian_spectral_density(
    params: Params,
    x: Array,
    y: Array,
    *,
    activation: str,
    loss: str,
    key: Array,
    matrix: str = "hessian",
    num_probes: int = 10,
    num_iterations: int | None = None,
    num_points: int = 2000,
    bandwidth: float | None = None,
    batch_size: int | None = None,
) -> SpectralDensity:
    """The spectral density of the Hessian (or GGN) by stochastic Lanczos quadrature: `num_probes` Lanczos
    runs of `num_iterations` steps (default min(P, 100)) from normal vectors drawn from `key`, each giving
    m nodes and weights; the density is their mixture of Gaussians of standard deviation `bandwidth` (default
    PyHessian's, ``sqrt(1e-5 max(1, range))``) on `num_points` points."""
    x, y, size = _check_args(params, x, y, activation, loss, matrix, batch_size)
    num_parameters = parameter_count(layer_sizes(params))
    m = _iterations(num_iterations, num_parameters)
    probes = _positive_int("num_probes", num_probes)
    points = _positive_int("num_points", num_points)
    if bandwidth is not None and not (isinstance(bandwidth, (int, float)) and bandwidth > 0):
        raise ValueError(f"bandwidth must be a positive number or None, got {bandwidth!r}")
    data = stacked_chunks(x, y, size)
    width = jnp.asarray(bandwidth or 0.0, x.dtype)
    static = dict(activation=activation, loss=loss, matrix=matrix, num_probes=probes, num_iterations=m)
    return _density(params, data, key, width, num_points=points, **static)
