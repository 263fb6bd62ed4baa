"""Losses by name: each is a pair, the per-example value (from optax) and its hand-written gradient
with respect to the logits, side by side.

``per_example(logits, y) -> (batch,)`` is example i's own loss term; ``grad_logits(logits, y) ->
(batch, out)`` is its derivative with respect to ``logits[i]``. The mean over the batch (or the
weighted mean with ``sample_weight``) is applied on top by `reduce`, the same way for every loss, and
`reduce_grad` is its derivative: ``d mean / d logits = grad_logits / B`` (or ``* w_i / sum(w)``).

- ``mse``: mean over all elements of ``(logits - y) ** 2``; y of shape (batch, out).
- ``softmax_cross_entropy``: y integer labels (batch,) or probabilities (batch, out);
  ``-sum(y * log_softmax(logits))`` per example; gradient ``softmax(logits) * sum(y) - y``.
- ``sigmoid_binary_cross_entropy``: y in [0, 1] of shape (batch, out); the logistic loss, mean over
  outputs; gradient ``(sigmoid(logits) - y) / out``.

`register_loss` adds your own pair, after checking the gradient against `jax.grad`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from mlp_jax.core.verify import check_derivative, check_same_shape, verify_dtype

Array = jax.Array


class Loss(NamedTuple):
    per_example: Callable[[Array, Array], Array]  # (logits (B, out), y) -> (B,)
    grad_logits: Callable[[Array, Array], Array]  # (logits (B, out), y) -> (B, out)
    # optional: (logits, y, scale () or (B,)) -> grad_logits * scale per row, computed in one pass
    scaled_grad_logits: Callable[[Array, Array, Array], Array] | None = None
    # optional: (logits (B, out), y) -> (B, out, out), d^2 per_example[i] / d logits[i]^2 (curvature tools)
    hessian: Callable[[Array, Array], Array] | None = None


def _mse(logits: Array, y: Array) -> Array:
    return optax.losses.squared_error(logits, y).mean(axis=-1)


def _mse_grad(logits: Array, y: Array) -> Array:
    return (2.0 / logits.shape[-1]) * (logits - y)


def _softmax_ce(logits: Array, y: Array) -> Array:
    if y.ndim == 1:  # integer labels
        return optax.losses.softmax_cross_entropy_with_integer_labels(logits, y)
    return optax.losses.softmax_cross_entropy(logits, y)


def _softmax(logits: Array, y: Array) -> Array:
    """softmax(logits) (B, out) as ``exp(logits - max) / sum``, written with the same ops that the optax
    value of `_softmax_ce` uses inside its log-normalizer (`jax.nn.logsumexp` for integer labels,
    `jax.nn.log_softmax` for one-hot ones). XLA merges the two, so the value and the gradient share one
    max, one exp and one sum, as autodiff's do; ``exp(logits - logsumexp)`` would take a second exp, fused
    into the sum's kernel, which costs time on small steps."""
    if y.ndim == 1:  # as jax.nn.logsumexp(logits, axis=1)
        amax = jnp.max(logits, axis=1, initial=-jnp.inf)
        amax = lax.stop_gradient(lax.select(jnp.isfinite(amax), amax, lax.full_like(amax, 0)))
        unnormalized = jnp.exp(logits - lax.expand_dims(amax, (1,)))
    else:  # as jax.nn.log_softmax(logits, axis=-1)
        amax = jnp.max(logits, axis=-1, initial=-jnp.inf, keepdims=True)
        unnormalized = jnp.exp(logits - lax.stop_gradient(amax))
    return unnormalized / jnp.sum(unnormalized, axis=-1, keepdims=True)


def softmax(logits: Array, y: Array) -> Array:
    """softmax(logits) (B, out), computed as the softmax cross-entropy's value and gradient compute it."""
    return _softmax(logits, y)


def _softmax_ce_scaled_grad(logits: Array, y: Array, scale: Array) -> Array:
    """The softmax CE gradient times `scale` (() or (B,)) per row, the scale applied before the label
    scatter: a multiply after a scatter is one more XLA kernel, which is visible on small steps."""
    row_scale = _per_row(scale)
    p = _softmax(logits, y) * row_scale
    if y.ndim == 1:  # integer labels: subtract the scale at each label (a scatter; an iota-compare one-hot
        # is slower on small XLA:CPU steps, benchmarks/experiments/softmax_head.py)
        return p.at[jnp.arange(p.shape[0]), y].add(-jnp.broadcast_to(scale, y.shape))
    return p * jnp.sum(y, axis=-1, keepdims=True) - y * row_scale


def _softmax_ce_grad(logits: Array, y: Array) -> Array:
    """``softmax(logits) * sum(y) - y`` (``softmax - one_hot(y)`` for integer labels)."""
    return _softmax_ce_scaled_grad(logits, y, jnp.ones((), logits.dtype))


def _sigmoid_bce(logits: Array, y: Array) -> Array:
    return optax.losses.sigmoid_binary_cross_entropy(logits, y).mean(axis=-1)


def _sigmoid_bce_grad(logits: Array, y: Array) -> Array:
    return (jax.nn.sigmoid(logits) - y) / logits.shape[-1]


def _mse_hessian(logits: Array, y: Array) -> Array:
    """``(2 / out) I`` for every example: (B, out, out)."""
    batch, out = logits.shape
    return jnp.broadcast_to((2.0 / out) * jnp.eye(out, dtype=logits.dtype), (batch, out, out))


def _softmax_ce_hessian(logits: Array, y: Array) -> Array:
    """``sum(y) (diag(p) - p p^T)`` with p = softmax(logits) (``sum(y) = 1`` for labels): (B, out, out)."""
    p = _softmax(logits, y)
    h = jnp.einsum("bi,ij->bij", p, jnp.eye(p.shape[1], dtype=p.dtype)) - p[:, :, None] * p[:, None, :]
    return h if y.ndim == 1 else h * jnp.sum(y, axis=-1)[:, None, None]


def _sigmoid_bce_hessian(logits: Array, y: Array) -> Array:
    """``diag(sigmoid (1 - sigmoid)) / out``: (B, out, out)."""
    s = jax.nn.sigmoid(logits)
    out = logits.shape[1]
    return jnp.einsum("bi,ij->bij", s * (1 - s) / out, jnp.eye(out, dtype=s.dtype))


BUILTIN: dict[str, Loss] = {
    "mse": Loss(_mse, _mse_grad, hessian=_mse_hessian),
    "softmax_cross_entropy": Loss(_softmax_ce, _softmax_ce_grad, _softmax_ce_scaled_grad, _softmax_ce_hessian),
    "sigmoid_binary_cross_entropy": Loss(_sigmoid_bce, _sigmoid_bce_grad, hessian=_sigmoid_bce_hessian),
}

_REGISTRY: dict[str, Loss] = dict(BUILTIN)
_LABEL_TARGETS: set[str] = set()  # registered losses whose y are integer labels (batch,)


def known_losses() -> list[str]:
    return sorted(_REGISTRY)


def get_loss(name: str) -> Loss:
    """The (per_example, grad_logits) pair registered under `name`; a ValueError listing the known names."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown loss {name!r}; expected one of {known_losses()}") from None


def target_kind(name: str) -> str:
    """``"labels"`` when loss `name` takes integer labels (batch,), ``"dense"`` for targets (batch, out).

    (softmax_cross_entropy takes both; ``"labels"`` is its usual form.)"""
    get_loss(name)
    return "labels" if name == "softmax_cross_entropy" or name in _LABEL_TARGETS else "dense"


def registered_for_labels(name: str) -> bool:
    """Whether loss `name` was registered with ``targets="labels"`` (integer labels only)."""
    return name in _LABEL_TARGETS


def is_builtin(name: str) -> bool:
    """Whether loss `name` still has its built-in definition (not replaced with ``overwrite=True``)."""
    return get_loss(name) is BUILTIN.get(name)


def reduce(per_example: Array, sample_weight: Array | None) -> Array:
    """The batch mean of per-example losses, or their weighted mean ``sum(w * l) / sum(w)``."""
    if sample_weight is None:
        return jnp.mean(per_example)
    return jnp.sum(sample_weight * per_example) / jnp.sum(sample_weight)


def example_scale(sample_weight: Array | None, batch: int, dtype) -> Array:
    """d reduce / d (example i's loss): ``1 / B`` as a scalar, or ``w_i / sum(w)`` of shape (B,)."""
    if sample_weight is None:
        return jnp.asarray(1.0 / batch, dtype)
    return sample_weight / jnp.sum(sample_weight)


def _per_row(scale: Array) -> Array:
    """A scale of shape () or (B,) shaped to multiply (B, out) rows."""
    return scale[:, None] if scale.ndim else scale


def reduce_grad(grad_logits: Array, sample_weight: Array | None) -> Array:
    """The derivative of `reduce` with respect to the logits (B, out), from each example's own gradient
    ``grad_logits`` (B, out): times ``1 / B``, or ``w_i / sum(w)`` with weights."""
    return grad_logits * _per_row(example_scale(sample_weight, grad_logits.shape[0], grad_logits.dtype))


def scaled_grad_logits(spec: Loss, logits: Array, y: Array, sample_weight: Array | None) -> Array:
    """``reduce_grad(spec.grad_logits(logits, y), sample_weight)`` (B, out), in one pass where the loss
    has a `Loss.scaled_grad_logits`."""
    if spec.scaled_grad_logits is None:
        return reduce_grad(spec.grad_logits(logits, y), sample_weight)
    return spec.scaled_grad_logits(logits, y, example_scale(sample_weight, logits.shape[0], logits.dtype))


def register_loss(
    name: str,
    value: Callable[[Array, Array], Array],
    grad_logits: Callable[[Array, Array], Array],
    *,
    targets: str = "dense",
    hessian: Callable[[Array, Array], Array] | None = None,
    verify: bool = True,
    overwrite: bool = False,
) -> None:
    """Make `name` usable everywhere a loss name is (loss, backprop, make_update, gradcheck, the CLI).

    ``value(logits (B, out), y) -> (B,)`` is each example's own loss term and ``grad_logits(logits, y) ->
    (B, out)`` its derivative with respect to ``logits[i]``; the batch (weighted) mean is applied on
    top, as for the built-ins. ``targets="dense"``: y of shape (batch, out), cast to the params' dtype;
    ``targets="labels"``: integer labels (batch,) in [0, out).

    With ``verify=True`` the gradient is compared with ``jax.grad`` of each example's term on a grid of
    logits with zeros, +-1e-7, and values up to +-100 (targets: uniform in [0, 1], or labels
    ``i % out``), under the rule of `mlp_jax.core.verify`; a wrong one raises `DerivativeError` naming the
    worst logits, target and output, both values and their relative difference. ``overwrite=True`` is
    needed to replace a registered name (built-ins included); functions already jitted with the name
    keep the old definition.

    ``hessian(logits, y) -> (B, out, out)`` (optional) is each example's second derivative with respect
    to its logits, what the curvature tools (`diag_ggn`, `kfac_factors`, the Hessian and GGN products)
    need; verified against ``jax.hessian`` of each example's term on the same grid. Without it those
    tools raise a ValueError naming the loss.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"loss name must be a non-empty string, got {name!r}")
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"loss {name!r} is already registered; pass overwrite=True to replace it")
    if targets not in ("dense", "labels"):
        raise ValueError(f"targets must be 'dense' or 'labels', got {targets!r}")
    if not (callable(value) and callable(grad_logits)):
        raise TypeError("register_loss needs callables value(logits, y) and grad_logits(logits, y)")
    if hessian is not None and not callable(hessian):
        raise TypeError(f"hessian must be a callable hessian(logits, y) or None, got {hessian!r}")
    if verify:
        _verify_loss(name, value, grad_logits, targets, hessian)
    _REGISTRY[name] = Loss(value, grad_logits, hessian=hessian)
    _LABEL_TARGETS.discard(name)
    if targets == "labels":
        _LABEL_TARGETS.add(name)


# Logits where registration checks a loss gradient (out = 3): zeros, tiny, moderate and +-30, +-100.
VERIFY_LOGITS = np.array(
    [
        [0.0, 0.0, 0.0],
        [1e-7, -1e-7, 0.0],
        [1.0, -1.0, 0.5],
        [-2.0, 0.25, 3.0],
        [30.0, -30.0, 0.0],
        [-30.0, 1.0, 30.0],
        [100.0, -100.0, 1.0],
        [-100.0, 100.0, -1.0],
        [100.0, 100.0, -100.0],
        [0.1, -6.0, 6.0],
        [-0.7, 1.3, -2.2],
        [5.0, 4.0, -3.0],
    ]
)


def loss_hessian(name: str) -> Callable[[Array, Array], Array]:
    """The hand-written ``hessian(logits, y) -> (B, out, out)`` of loss `name`; a ValueError saying how
    to provide one when it was registered without."""
    hessian = get_loss(name).hessian
    if hessian is None:
        raise ValueError(
            f"loss {name!r} has no hand-written Hessian: register it with "
            "register_loss(..., hessian=fn, overwrite=True) to use the curvature tools"
        )
    return hessian


def _verify_loss(
    name: str, value: Callable, grad_logits: Callable, targets: str, hessian: Callable | None = None
) -> None:
    batch, out = VERIFY_LOGITS.shape
    rng = np.random.default_rng(0)
    y_np = np.arange(batch) % out if targets == "labels" else rng.uniform(0.0, 1.0, (batch, out))
    for dtype in (jnp.float32, verify_dtype()):
        logits_spec = jax.ShapeDtypeStruct((batch, out), dtype)
        y_spec = jax.ShapeDtypeStruct(y_np.shape, jnp.int32 if targets == "labels" else dtype)
        check_same_shape(f"loss {name!r}: value", jax.eval_shape(value, logits_spec, y_spec), (batch,), dtype)
        returned = jax.eval_shape(grad_logits, logits_spec, y_spec)
        check_same_shape(f"loss {name!r}: grad_logits", returned, (batch, out), dtype)
    dtype = verify_dtype()
    logits = jnp.asarray(VERIFY_LOGITS, dtype)
    y = jnp.asarray(y_np, jnp.int32 if targets == "labels" else dtype)
    # d(example i's own term)/d(logits[i]), one example at a time
    expected = jax.vmap(jax.grad(lambda l, t: value(l[None, :], t[None])[0]))(logits, y)  # (batch, out)

    def where(i: int) -> str:
        row, col = divmod(i, out)
        target = np.round(y_np[row], 4).tolist()
        return f"logits[{row}] = {VERIFY_LOGITS[row].tolist()}, y[{row}] = {target}, output {col}"

    check_derivative(f"grad_logits of loss {name!r}", expected, grad_logits(logits, y), where)
    if hessian is None:
        return
    check_same_shape(f"loss {name!r}: hessian", jax.eval_shape(hessian, logits, y), (batch, out, out), dtype)
    # d^2(example i's own term)/d(logits[i])^2, flattened row-major over (out, out)
    expected_h = jax.vmap(jax.hessian(lambda l, t: value(l[None, :], t[None])[0]))(logits, y)

    def where_h(i: int) -> str:
        row, rest = divmod(i, out * out)
        return f"logits[{row}] = {VERIFY_LOGITS[row].tolist()}, entry {divmod(rest, out)}"

    check_derivative(f"hessian of loss {name!r}", expected_h, hessian(logits, y), where_h)
