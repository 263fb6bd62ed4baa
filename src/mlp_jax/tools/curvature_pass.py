"""The pieces the curvature tools share: one forward pass, each example's scale in the loss, and the
hand-written backward passes of loss-Hessian factors and of whole per-example Hessians.

Notation (batch layout): layer l has input ``a_l`` (B, d_l), pre-activation ``z_l = a_l W_l + b_l``
(B, d_{l+1}), logits f = z_{L-1}. The loss is ``L = sum_n c_n l_n`` with ``c_n = 1/B`` or
``w_n / sum(w)``. A factor column u at the logits goes back as a delta does::

    Gamma_{L-1} = u                                    (B, K, d_out)
    Gamma_{l-1} = (Gamma_l @ W_l.T) * phi'(z_{l-1})    (B, K, d_l)

and ``J_n^T u`` for layer l is ``a_l outer Gamma_l`` (never formed). No autodiff is used here.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from mlp_jax.core.activations import get_activation, second_derivative
from mlp_jax.core.backprop import ForwardCache, forward_with_cache
from mlp_jax.core.losses import example_scale, get_loss, reduce
from mlp_jax.core.params import Params
from mlp_jax.core.validation import check_problem

Array = jax.Array


class CurvaturePass(NamedTuple):
    """A validated forward pass and what every curvature quantity reads from it."""

    cache: ForwardCache  # batch layout: inputs a_l (B, d_l), pre_activations z_l (B, d_{l+1}), logits (B, out)
    y: Array  # the validated targets
    per_example: Array  # (B,): l_n
    value: Array  # (): L, the (weighted) mean
    scale: Array  # (B,): c_n, d L / d l_n
    sample_weight: Array | None


def forward_pass(params: Params, x, y, activation: str, loss: str, sample_weight=None) -> CurvaturePass:
    """Validate the inputs (`check_problem`), run the forward pass in the batch layout and the loss."""
    x, y, sample_weight, dtype = check_problem(params, x, y, activation, loss, sample_weight)
    cache = forward_with_cache(params, x, activation, "batch")
    per_example = get_loss(loss).per_example(cache.logits, y)
    batch = x.shape[0]
    scale = jnp.broadcast_to(example_scale(sample_weight, batch, dtype), (batch,))
    return CurvaturePass(cache, y, per_example, reduce(per_example, sample_weight), scale, sample_weight)


def backprop_columns(params: Params, cache: ForwardCache, columns: Array, activation: str) -> list[Array]:
    """Every layer's ``Gamma_l`` (B, K, d_{l+1}) from K columns per example at the logits, `columns`
    (B, out, K). Cost: O(B K sum_l d_l d_{l+1}) time, O(B K max d) memory per layer kept."""
    dphi = get_activation(activation).derivative
    gamma = jnp.swapaxes(columns, 1, 2)  # (B, K, out)
    gammas = [gamma]
    for l in range(len(params) - 1, 0, -1):
        gamma = (gamma @ params[l].w.T) * dphi(cache.pre_activations[l - 1])[:, None, :]  # (B, K, d_l)
        gammas.append(gamma)
    return gammas[::-1]


def column_squares(gamma: Array, signs: Array | None) -> Array:
    """(B, d): ``sum_k s_k Gamma[:, k, :]^2``, each example's diagonal of ``Gamma diag(s) Gamma^T``."""
    if signs is None:
        return jnp.sum(gamma * gamma, axis=1)
    return jnp.einsum("bk,bkd->bd", signs, gamma * gamma)


def column_outer(gamma: Array, signs: Array | None) -> Array:
    """(d, d): ``sum_n Gamma_n^T diag(s_n) Gamma_n``, summed over examples and columns."""
    if signs is None:
        flat = gamma.reshape(-1, gamma.shape[-1])  # (B K, d)
        return flat.T @ flat
    return jnp.einsum("bki,bk,bkj->ij", gamma, signs, gamma)


def hessian_diagonals(
    params: Params, cache: ForwardCache, loss_hessians: Array, deltas: tuple[Array, ...], activation: str
) -> list[Array]:
    """Every layer's per-example diagonal of ``d^2 L / d z_l^2`` (B, d_{l+1}), by sending the whole
    per-example Hessian back (the exact diagonal needs its off-diagonal part too)::

        M_{L-1} = c_n H_n                                                    (B, out, out)
        M_{l-1} = phi'(z) (W_l M_l W_l^T) phi'(z) + diag(phi''(z) * (delta_l @ W_l.T))

    with `deltas` the scaled deltas ``dL/dz_l`` (B, d_{l+1}) of the ordinary backward pass.
    Cost: O(B d^2) memory and O(B sum_l d_l d_{l+1} (d_l + d_{l+1})) time."""
    dphi = get_activation(activation).derivative
    phi2 = second_derivative(activation) if len(params) > 1 else jnp.zeros_like  # no hidden layer: unused
    m = loss_hessians
    diagonals = [jnp.diagonal(m, axis1=1, axis2=2)]
    for l in range(len(params) - 1, 0, -1):
        w = params[l].w  # (d_l, d_{l+1})
        z = cache.pre_activations[l - 1]  # (B, d_l)
        d1 = dphi(z)
        back = jnp.einsum("ij,bjk,lk->bil", w, m, w)  # (B, d_l, d_l)
        residual = phi2(z) * (deltas[l] @ w.T)  # (B, d_l)
        eye = jnp.eye(w.shape[0], dtype=w.dtype)
        m = d1[:, :, None] * back * d1[:, None, :] + jnp.einsum("bi,ij->bij", residual, eye)
        diagonals.append(jnp.diagonal(m, axis1=1, axis2=2))
    return diagonals[::-1]
