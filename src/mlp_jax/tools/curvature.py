"""BackPACK's quantities from the hand-written pass: diagonal GGN and Hessian, K-FAC factors and
gradient statistics, with the gradient, from one forward pass.

L is the library's loss (the batch mean, or the weighted mean ``sum_n c_n l_n`` with
``c_n = w_n / sum(w)``), f the logits, ``J_n = d f_n / d theta``, ``H_n = d^2 l_n / d f_n^2``:

- GGN ``G = sum_n c_n J_n^T H_n J_n``. "exact" sends a factor S_n of H_n back (out columns per
  example); "mc" sends `mc_samples` columns drawn from the model's predictive distribution
  (`mlp_jax.tools.loss_factors`), an unbiased estimate, the same bits for the same key.
- Per layer, with ``Gamma_n`` the factor sent back to the layer's pre-activation (scaled by
  ``sqrt(c_n)``): ``diag G_W = sum_n a_n^2 outer sum_k Gamma_nk^2`` and ``diag G_b = sum_n sum_k
  Gamma_nk^2``; K-FAC ``a = sum_n c_n a_n a_n^T`` (the batch mean without weights) and ``g = sum_n
  Gamma_n^T Gamma_n``, so that ``G_W ~ kron(a, g)`` for W (d_in, d_out) flattened row-major (equal for
  one example), and ``G_b = g``.
- With g_n = grad l_n: ``sum_grad_squared = sum_n (c_n g_n)^2`` (BackPACK's ``(g_n / N)^2``) and
  ``grad_variance = sum_n c_n (g_n - grad L)^2`` (the mean over n without weights).

Costs beyond the forward cache: first-order quantities O(B width); exact GGN quantities O(B out
width); MC ones O(B mc_samples width); `diag_hessian` O(B width^2) (it sends whole per-example
Hessians back); `batch_diag_ggn` returns B x P numbers by definition. Nothing else forms per-example
gradients or a dense Hessian. No jax.grad / jvp / vjp / linearize / hessian is used here.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from mlp_jax.core.activations import registered
from mlp_jax.core.backprop import backward
from mlp_jax.core.losses import get_loss, loss_hessian
from mlp_jax.core.params import Layer, Params
from mlp_jax.core.validation import check_problem
from mlp_jax.tools.curvature_pass import (
    CurvaturePass,
    backprop_columns,
    column_outer,
    column_squares,
    forward_pass,
    hessian_diagonals,
)
from mlp_jax.tools.loss_factors import exact_factor, sampled_factor

Array = jax.Array

EXTRAS = (
    "diag_ggn",
    "diag_ggn_mc",
    "batch_diag_ggn",
    "batch_diag_ggn_mc",
    "diag_hessian",
    "kfac_factors",
    "kfac_factors_mc",
    "sum_grad_squared",
    "grad_variance",
    "per_example_grad_norms",
)
METHODS = ("exact", "mc")


class KFACFactors(NamedTuple):
    """One layer's Kronecker factors: ``G_W ~ kron(a, g)`` for W (d_in, d_out) flattened row-major."""

    a: Array  # (d_in, d_in): sum_n c_n a_n a_n^T over the layer's inputs
    g: Array  # (d_out, d_out): sum_n Gamma_n^T Gamma_n at the layer's pre-activation


def check_mc(method: str, key: Array | None, mc_samples: int) -> None:
    """A ValueError unless `method` is known and an "mc" request has a key and ``mc_samples >= 1``."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not isinstance(mc_samples, int) or isinstance(mc_samples, bool) or mc_samples < 1:
        raise ValueError(f"mc_samples must be an integer >= 1, got {mc_samples!r}")
    if method == "mc" and key is None:
        raise ValueError("method='mc' samples labels from the model: pass key=jax.random.key(...)")


def _check_extras(extras: Any, key: Array | None, mc_samples: int) -> tuple[str, ...]:
    names = (extras,) if isinstance(extras, str) else tuple(extras)
    unknown = [name for name in names if name not in EXTRAS]
    if unknown:
        raise ValueError(f"unknown quantity {unknown[0]!r}; expected any of {list(EXTRAS)}")
    check_mc("mc" if any(name.endswith("_mc") for name in names) else "exact", key, mc_samples)
    return names


def _first_order(p: CurvaturePass, deltas: tuple[Array, ...], names: tuple[str, ...]) -> dict[str, Any]:
    """sum_grad_squared, grad_variance and per_example_grad_norms from each example's unscaled deltas
    ``dl_n/dz_l`` (B, d_{l+1}) and inputs: ``(g_n)_W^2 = a_n^2 outer delta_n^2``."""
    inputs, c = p.cache.inputs, p.scale
    squares = [(a * a, d * d) for a, d in zip(inputs, deltas)]
    out: dict[str, Any] = {}
    if "sum_grad_squared" in names:
        c2 = (c * c)[:, None]
        out["sum_grad_squared"] = tuple(Layer(w=a2.T @ (c2 * d2), b=jnp.sum(c2 * d2, axis=0)) for a2, d2 in squares)
    if "grad_variance" in names:
        out["grad_variance"] = tuple(
            Layer(
                w=jnp.maximum(a2.T @ (c[:, None] * d2) - (a.T @ (c[:, None] * d)) ** 2, 0),
                b=jnp.maximum(jnp.sum(c[:, None] * d2, axis=0) - jnp.sum(c[:, None] * d, axis=0) ** 2, 0),
            )
            for (a2, d2), a, d in zip(squares, inputs, deltas)
        )
    if "per_example_grad_norms" in names:
        out["per_example_grad_norms"] = jnp.sqrt(
            sum((jnp.sum(a2, axis=1) + 1) * jnp.sum(d2, axis=1) for a2, d2 in squares)
        )
    return out


def _ggn_family(
    params: Params, p: CurvaturePass, columns: Array, signs: Array | None, activation: str, suffix: str, names
) -> dict[str, Any]:
    """diag_ggn, batch_diag_ggn and kfac_factors (with `suffix` "" or "_mc") from one set of factor
    columns (B, out, K) at the logits, sent back once."""
    wanted = [name for name in ("diag_ggn", "batch_diag_ggn", "kfac_factors") if name + suffix in names]
    if not wanted:
        return {}
    columns = columns * jnp.sqrt(p.scale)[:, None, None]
    gammas = backprop_columns(params, p.cache, columns, activation)
    out: dict[str, Any] = {}
    if "diag_ggn" in wanted or "batch_diag_ggn" in wanted:
        squares = [column_squares(g, signs) for g in gammas]  # (B, d_{l+1}) each
        pairs = list(zip(p.cache.inputs, squares))
        if "diag_ggn" in wanted:
            out["diag_ggn" + suffix] = tuple(Layer(w=(a * a).T @ s, b=jnp.sum(s, axis=0)) for a, s in pairs)
        if "batch_diag_ggn" in wanted:
            out["batch_diag_ggn" + suffix] = tuple(Layer(w=(a * a)[:, :, None] * s[:, None, :], b=s) for a, s in pairs)
    if "kfac_factors" in wanted:
        out["kfac_factors" + suffix] = tuple(
            KFACFactors(a=(a * p.scale[:, None]).T @ a, g=column_outer(g, signs))
            for a, g in zip(p.cache.inputs, gammas)
        )
    return out


@functools.partial(jax.jit, static_argnames=("activation", "loss", "names", "mc_samples", "functions"))
def _compiled(params, x, y, sample_weight, key, *, activation, loss, names, mc_samples, functions):
    """`backprop_with`'s pass, as one program; `functions`, what the names stand for, is only part of its
    cache key."""
    del functions
    p = forward_pass(params, x, y, activation, loss, sample_weight)
    unscaled = get_loss(loss).grad_logits(p.cache.logits, p.y)  # (B, out): d l_n / d f_n
    _, deltas = backward(params, p.cache, unscaled, activation, "batch")
    c = p.scale[:, None]
    grads = tuple(Layer(w=a.T @ (c * d), b=jnp.sum(c * d, axis=0)) for a, d in zip(p.cache.inputs, deltas))
    out = _first_order(p, deltas, names)
    if any(name in names for name in ("diag_ggn", "batch_diag_ggn", "kfac_factors")):
        columns, signs = exact_factor(loss, p.cache.logits, p.y)
        out.update(_ggn_family(params, p, columns, signs, activation, "", names))
    if any(name.endswith("_mc") for name in names):
        assert key is not None  # _check_extras
        columns = sampled_factor(loss, p.cache.logits, p.y, key, mc_samples)
        out.update(_ggn_family(params, p, columns, None, activation, "_mc", names))
    if "diag_hessian" in names:
        hessians = loss_hessian(loss)(p.cache.logits, p.y) * p.scale[:, None, None]
        scaled = tuple(c * d for d in deltas)
        diagonals = hessian_diagonals(params, p.cache, hessians, scaled, activation)
        out["diag_hessian"] = tuple(
            Layer(w=(a * a).T @ m, b=jnp.sum(m, axis=0)) for a, m in zip(p.cache.inputs, diagonals)
        )
    return p.value, grads, out


def backprop_with(
    params: Params,
    x: Array,
    y: Array,
    *,
    activation: str,
    loss: str,
    extras: Any = (),
    sample_weight: Array | None = None,
    key: Array | None = None,
    mc_samples: int = 1,
) -> tuple[Array, Params, dict[str, Any]]:
    """``(loss_value, grads, quantities)``: the gradient (as `mlp_jax.backprop`) and each quantity named
    in `extras` (any of `EXTRAS`: the functions' names, "_mc" for method="mc", and
    "per_example_grad_norms"), from ONE forward pass. The gradient's backward pass gives the
    first-order statistics; one factor pass serves diag_ggn, batch_diag_ggn and kfac_factors (the "_mc"
    ones share one draw from `key`).

    The inputs are checked first, their values too where they are concrete; then the pass runs as one
    compiled program (cached per shape, names and registered functions), also when called eagerly."""
    names = _check_extras(extras, key, mc_samples)
    x, y, sample_weight, _ = check_problem(params, x, y, activation, loss, sample_weight)
    functions = (registered(activation), get_loss(loss))
    value, grads, quantities = _compiled(
        params,
        x,
        y,
        sample_weight,
        key,
        activation=activation,
        loss=loss,
        names=names,
        mc_samples=mc_samples,
        functions=functions,
    )
    return value, grads, {name: quantities[name] for name in names}  # a jit's dict comes back sorted by key


def _one(name: str, params: Params, x, y, activation: str, loss: str, sample_weight, key=None, mc_samples=1):
    return backprop_with(
        params,
        x,
        y,
        activation=activation,
        loss=loss,
        extras=(name,),
        sample_weight=sample_weight,
        key=key,
        mc_samples=mc_samples,
    )[2][name]


def diag_ggn(
    params: Params,
    x: Array,
    y: Array,
    *,
    activation: str,
    loss: str,
    sample_weight: Array | None = None,
    method: str = "exact",
    key: Array | None = None,
    mc_samples: int = 1,
) -> Params:
    """The diagonal of the GGN ``sum_n c_n J_n^T H_n J_n`` of the loss, params' structure. "exact":
    O(B out width) memory; "mc": `mc_samples` sampled columns per example (needs `key`)."""
    check_mc(method, key, mc_samples)
    name = "diag_ggn" if method == "exact" else "diag_ggn_mc"
    return _one(name, params, x, y, activation, loss, sample_weight, key, mc_samples)


def batch_diag_ggn(
    params: Params,
    x: Array,
    y: Array,
    *,
    activation: str,
    loss: str,
    sample_weight: Array | None = None,
    method: str = "exact",
    key: Array | None = None,
    mc_samples: int = 1,
) -> Params:
    """Each example's term ``c_n diag(J_n^T H_n J_n)`` of `diag_ggn`: params' structure with a leading
    batch axis (w (B, d_in, d_out), b (B, d_out)); they add up to `diag_ggn`."""
    check_mc(method, key, mc_samples)
    name = "batch_diag_ggn" if method == "exact" else "batch_diag_ggn_mc"
    return _one(name, params, x, y, activation, loss, sample_weight, key, mc_samples)


def kfac_factors(
    params: Params,
    x: Array,
    y: Array,
    *,
    activation: str,
    loss: str,
    sample_weight: Array | None = None,
    method: str = "exact",
    key: Array | None = None,
    mc_samples: int = 1,
) -> tuple[KFACFactors, ...]:
    """Per layer `KFACFactors(a, g)`: "exact" is KFLR, "mc" is KFAC. O(B out width) beyond the cache."""
    check_mc(method, key, mc_samples)
    name = "kfac_factors" if method == "exact" else "kfac_factors_mc"
    return _one(name, params, x, y, activation, loss, sample_weight, key, mc_samples)


def diag_hessian(
    params: Params, x: Array, y: Array, *, activation: str, loss: str, sample_weight: Array | None = None
) -> Params:
    """The exact diagonal of ``d^2 L / d theta^2``, with the activations' second derivatives; needs the
    loss's and activation's hand-written second derivatives. O(B width^2) memory."""
    return _one("diag_hessian", params, x, y, activation, loss, sample_weight)


def sum_grad_squared(
    params: Params, x: Array, y: Array, *, activation: str, loss: str, sample_weight: Array | None = None
) -> Params:
    """``sum_n (c_n grad l_n)^2`` elementwise (``(grad l_n / N)^2`` without weights). O(B width)."""
    return _one("sum_grad_squared", params, x, y, activation, loss, sample_weight)


def grad_variance(
    params: Params, x: Array, y: Array, *, activation: str, loss: str, sample_weight: Array | None = None
) -> Params:
    """``sum_n c_n (grad l_n - grad L)^2`` elementwise: the mean over n of the squared deviation from the
    mean gradient without weights. O(B width). Computed as ``E[g^2] - E[g]^2`` (clipped at 0), as
    BackPACK does: its rounding error is relative to ``E[g^2]``, not to the variance itself."""
    return _one("grad_variance", params, x, y, activation, loss, sample_weight)
