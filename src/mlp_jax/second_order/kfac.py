"""K-FAC (Martens and Grosse, 2015) as an optax transformation, on the factors of the hand-written pass.

For layer l with gradient ``dW`` (d_in, d_out), ``db`` (d_out,) and Kronecker factors ``a`` (d_in, d_in),
``g`` (d_out, d_out) of the loss's GGN (`mlp_jax.kfac_factors`: ``G_W ~ kron(a, g)`` for W flattened
row-major, ``G_b = g``), the step is the damped natural-gradient step, per layer::

    vec(dW) <- (kron(a, g) + damping I)^-1 vec(dW)      = Qa [(Qa^T dW Qg) / (outer(la, lg) + damping)] Qg^T
    db      <- (g + damping I)^-1 db                    = Qg [(Qg^T db) / (lg + damping)]
    update  = -learning_rate * that

with ``a = Qa diag(la) Qa^T`` and ``g = Qg diag(lg) Qg^T``. The damping is added to the Kronecker product
itself (exact Tikhonov damping), not to each factor. With `kl_clip` (Ba, Grosse and Martens, 2017) the
update is scaled by ``min(1, sqrt(kl_clip / (learning_rate^2 <step, grad>)))``, which bounds the change the
quadratic model predicts: the step stays finite where the factors have near-zero eigenvalues (dead ReLU
units) and the damping is small. The factors are averaged over steps,
``avg <- decay avg + (1 - decay) new`` (the first step's factors as they are), and the eigendecompositions
are refreshed from the average every `update_every` steps (the first step included); in between the last
ones are used.

The transformation takes the factors as an extra argument of its update, ``update(grads, state, params,
kfac_factors=...)``: `mlp_jax.make_update`, `make_fused_update` and `make_train_epoch` compute them in the
same pass as the gradient (`mlp_jax.backprop_with`) when the optimizer asks for them (`extras`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from mlp_jax.core.params import Layer, Params
from mlp_jax.second_order.kron import KronEigen, eigen_kron
from mlp_jax.tools.curvature import METHODS, KFACFactors

Array = jax.Array


class KFACState(NamedTuple):
    step: Array  # int32 (): updates applied so far
    factors: tuple[KFACFactors, ...]  # per layer: the moving averages of a (d_in, d_in) and g (d_out, d_out)
    eigen: tuple[KronEigen, ...]  # per layer: the averages' eigendecompositions at the last refresh


class KFACTransformation(optax.GradientTransformationExtraArgs):
    """What `kfac` returns: an ``optax.GradientTransformationExtraArgs`` whose `extras` names the quantity of
    `mlp_jax.backprop_with` the training steps compute and pass to its update as ``kfac_factors=``."""

    extras: tuple[str, ...]
    mc_samples: int

    def __new__(cls, init: Callable, update: Callable, extras: tuple[str, ...], mc_samples: int = 1):
        self = super().__new__(cls, init, update)
        self.extras, self.mc_samples = extras, mc_samples
        return self


def requested_extras(optimizer: Any) -> tuple[tuple[str, ...], int]:
    """``(extras, mc_samples)`` an optimizer asks the training step for: a `kfac` transformation's, else none."""
    if isinstance(optimizer, KFACTransformation):
        return optimizer.extras, optimizer.mc_samples
    return (), 1


def precondition(grads: Params, eigen: tuple[KronEigen, ...], damping: Array | float) -> Params:
    """Each layer's ``(kron(a, g) + damping I)^-1 dW`` and ``(g + damping I)^-1 db``, from the factors'
    eigendecompositions."""
    out = []
    for layer, e in zip(grads, eigen):
        rotated = e.a_vectors.T @ layer.w @ e.g_vectors  # (d_in, d_out)
        w = e.a_vectors @ (rotated / (jnp.outer(e.a_values, e.g_values) + damping)) @ e.g_vectors.T
        b = e.g_vectors @ ((e.g_vectors.T @ layer.b) / (e.g_values + damping))
        out.append(Layer(w=w, b=b))
    return tuple(out)


def _positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")


def kfac(
    learning_rate: float | Callable[[Array], Array],
    *,
    damping: float = 1e-3,
    decay: float = 0.95,
    update_every: int = 1,
    method: str = "exact",
    mc_samples: int = 1,
    kl_clip: float | None = 1e-3,
) -> KFACTransformation:
    """K-FAC: ``-learning_rate (kron(a, g) + damping I)^-1 grad`` per layer, with the factors averaged at
    `decay` and their eigendecompositions refreshed every `update_every` steps. ``method="exact"`` takes
    the exact factors (KFLR, ``out`` columns per example); ``"mc"`` those of `mc_samples` labels sampled
    from the model (K-FAC proper), which needs a key per step. `learning_rate` may be an optax schedule.
    `kl_clip` (None: off) scales each update down so that ``learning_rate^2 <step, grad>`` stays
    at most `kl_clip`."""
    if not callable(learning_rate):
        _positive("learning_rate", learning_rate)
    _positive("damping", damping)
    if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 <= decay < 1:
        raise ValueError(f"decay must be a number in [0, 1), got {decay!r}")
    if isinstance(update_every, bool) or not isinstance(update_every, int) or update_every < 1:
        raise ValueError(f"update_every must be an integer >= 1, got {update_every!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    if isinstance(mc_samples, bool) or not isinstance(mc_samples, int) or mc_samples < 1:
        raise ValueError(f"mc_samples must be an integer >= 1, got {mc_samples!r}")
    if kl_clip is not None:
        _positive("kl_clip", kl_clip)

    def init(params: Params) -> KFACState:
        factors = tuple(
            KFACFactors(
                a=jnp.zeros((layer.w.shape[0],) * 2, layer.w.dtype), g=jnp.zeros((layer.w.shape[1],) * 2, layer.w.dtype)
            )
            for layer in params
        )
        eigen = tuple(
            KronEigen(
                jnp.zeros(f.a.shape[0], f.a.dtype),
                jnp.eye(f.a.shape[0], dtype=f.a.dtype),
                jnp.zeros(f.g.shape[0], f.g.dtype),
                jnp.eye(f.g.shape[0], dtype=f.g.dtype),
            )
            for f in factors
        )
        return KFACState(jnp.zeros((), jnp.int32), factors, eigen)

    def update(grads: Params, state: KFACState, params: Params | None = None, *, kfac_factors=None, **extra_args):
        del params, extra_args
        if kfac_factors is None:
            raise ValueError(
                "mj.kfac preconditions with the Kronecker factors of the same pass: call "
                "update(grads, state, params, kfac_factors=...) with backprop_with(..., extras=('kfac_factors',))'s "
                "(mj.make_update and mj.make_train_epoch pass them)"
            )
        first = state.step == 0
        factors = jax.tree.map(
            lambda avg, new: jnp.where(first, new, decay * avg + (1 - decay) * new), state.factors, tuple(kfac_factors)
        )
        refresh = state.step % update_every == 0
        eigen = jax.lax.cond(refresh, eigen_kron, lambda _: state.eigen, factors)
        lr = learning_rate(state.step) if callable(learning_rate) else learning_rate
        steps = precondition(grads, eigen, damping)
        if kl_clip is not None:  # lr^2 <F^-1 g, g>: the quadratic model's predicted change
            inner = sum(jnp.vdot(s, g) for s, g in zip(jax.tree.leaves(steps), jax.tree.leaves(grads)))
            quadratic = jnp.asarray(lr**2 * inner)
            lr = lr * jnp.minimum(1.0, jnp.sqrt(kl_clip / jnp.maximum(quadratic, jnp.finfo(quadratic.dtype).tiny)))
        updates = jax.tree.map(lambda s: -lr * s, steps)
        return updates, KFACState(state.step + 1, factors, eigen)

    name = "kfac_factors" if method == "exact" else "kfac_factors_mc"
    return KFACTransformation(init, update, (name,), mc_samples)
