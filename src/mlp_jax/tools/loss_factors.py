"""Factors of the loss Hessian with respect to the logits, exact and sampled: what the curvature tools
send back through the network in place of a gradient.

For example n with logits f_n (out,), ``H_n = d^2 l_n / d f_n^2`` (out, out). An exact factor is a
matrix ``S_n`` (out, K) with signs ``s`` (K,) such that ``S_n diag(s) S_n^T = H_n``: a closed form for
the built-in losses (all signs +1, K = out), and the eigendecomposition ``V |lambda|^(1/2)`` with
``s = sign(lambda)`` for a registered loss's hand-written Hessian. A sampled factor has `mc_samples`
columns whose outer products average to ``H_n`` (the Fisher of the loss's predictive distribution,
which equals the Hessian for these three losses): labels drawn from softmax(f) (categorical), outputs
from sigmoid(f) (Bernoulli), or standard normal noise for mse (a Gaussian around the logits).

Costs: exact factors (B, out, out); sampled ones (B, out, mc_samples). No autodiff is used here.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mlp_jax.core.losses import get_loss, is_builtin, loss_hessian, softmax

Array = jax.Array

SAMPLED_LOSSES = ("mse", "softmax_cross_entropy", "sigmoid_binary_cross_entropy")


def _label_mass(logits: Array, y: Array) -> Array:
    """(B, 1, 1): ``sum(y)`` per example for probability targets, 1 for integer labels."""
    if y.ndim == 1:
        return jnp.ones((logits.shape[0], 1, 1), logits.dtype)
    return jnp.sum(y, axis=-1)[:, None, None]


def exact_factor(loss: str, logits: Array, y: Array) -> tuple[Array, Array | None]:
    """``(S, signs)``: S (B, out, K) with ``S_n diag(signs_n) S_n^T = H_n``; signs (B, K), or None when
    all are +1 (the built-ins)."""
    batch, out = logits.shape
    eye = jnp.eye(out, dtype=logits.dtype)
    if is_builtin(loss) and loss == "mse":
        return jnp.broadcast_to(jnp.sqrt(2.0 / out).astype(logits.dtype) * eye, (batch, out, out)), None
    if is_builtin(loss) and loss == "softmax_cross_entropy":
        # diag(sqrt p) - p sqrt(p)^T: its square is diag(p) - p p^T, since sum(p) = 1
        p = softmax(logits, y)
        root = jnp.sqrt(p)
        s = root[:, :, None] * eye[None] - p[:, :, None] * root[:, None, :]
        return s * jnp.sqrt(_label_mass(logits, y)), None
    if is_builtin(loss) and loss == "sigmoid_binary_cross_entropy":
        sig = jax.nn.sigmoid(logits)
        return jnp.sqrt(sig * (1 - sig) / out)[:, :, None] * eye[None], None
    eigenvalues, vectors = jnp.linalg.eigh(loss_hessian(loss)(logits, y))  # (B, out), (B, out, out)
    return vectors * jnp.sqrt(jnp.abs(eigenvalues))[:, None, :], jnp.sign(eigenvalues)


def sampled_factor(loss: str, logits: Array, y: Array, key: Array, mc_samples: int) -> Array:
    """(B, out, mc_samples): columns drawn from the loss's predictive distribution, each divided by
    ``sqrt(mc_samples)``, so that ``E[S_n S_n^T] = H_n``. Built-in losses only."""
    get_loss(loss)
    if not (is_builtin(loss) and loss in SAMPLED_LOSSES):
        raise ValueError(
            f"method='mc' samples from a built-in loss's predictive distribution ({', '.join(SAMPLED_LOSSES)}); "
            f"loss {loss!r} has none: use method='exact'"
        )
    batch, out = logits.shape
    shape = (mc_samples, batch, out)
    if loss == "softmax_cross_entropy":
        p = softmax(logits, y)
        labels = jax.random.categorical(key, logits, axis=-1, shape=(mc_samples, batch))  # (M, B)
        columns = (p[None] - jax.nn.one_hot(labels, out, dtype=p.dtype)) * jnp.sqrt(_label_mass(logits, y)[None, :, 0])
    elif loss == "sigmoid_binary_cross_entropy":
        sig = jax.nn.sigmoid(logits)
        draws = jax.random.bernoulli(key, sig[None], shape).astype(logits.dtype)
        columns = (sig[None] - draws) / jnp.sqrt(jnp.asarray(out, logits.dtype))
    else:  # mse: H = (2 / out) I
        columns = jnp.sqrt(jnp.asarray(2.0 / out, logits.dtype)) * jax.random.normal(key, shape, logits.dtype)
    return jnp.transpose(columns, (1, 2, 0)) / jnp.sqrt(jnp.asarray(mc_samples, logits.dtype))
