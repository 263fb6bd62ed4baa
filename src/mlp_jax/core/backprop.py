"""The hand-written backward pass: the chain rule, layer by layer, on the forward pass's cache.

For layer l with input ``a_{l}`` (B, d_l), pre-activation ``z_l = a_l @ W_l + b_l`` (B, d_{l+1}) and
``delta_l = dL/dz_l``::

    delta_{L-1} = dL/dlogits                          (the loss's hand-written gradient)
    dW_l        = a_l.T @ delta_l                     (d_l, d_{l+1})
    db_l        = sum_batch delta_l                   (d_{l+1},)
    delta_{l-1} = (delta_l @ W_l.T) * phi'(z_{l-1})   (B, d_l)

In the ``"feature"`` layout (`mlp_jax.core.matmul`) every activation and delta is stored transposed,
(d, B), and the same equations read ``z_l = W_l.T @ a_l + b_l``, ``dW_l = a_l @ delta_l.T``,
``delta_{l-1} = (W_l @ delta_l) * phi'(z_{l-1})``; the gradients are the same pytree either way.

With dropout (`mlp_jax.core.dropout`) hidden layer l's output is ``a_{l+1} = phi(z_l) * m_l`` and the cache
keeps those masked inputs and the masks ``m_l`` (0 or 1/keep), so the backward step reads
``delta_{l-1} = ((delta_l @ W_l.T) * m_{l-1}) * phi'(z_{l-1})``.

No jax.grad, jax.vjp, jax.jvp or jax.linearize is used here; tests compare it against them.
"""

from __future__ import annotations

import functools
import itertools
import operator
from typing import NamedTuple

import jax
import jax.numpy as jnp

from mlp_jax.core.activations import get_activation
from mlp_jax.core.dropout import check_dropout, dropout_masks
from mlp_jax.core.losses import get_loss, reduce, scaled_grad_logits
from mlp_jax.core.matmul import batch_bounds, choose_batch_parts, choose_layout, dot, materialize
from mlp_jax.core.params import Layer, Params, layer_sizes
from mlp_jax.core.validation import check_problem

Array = jax.Array


class ForwardCache(NamedTuple):
    """What the backward pass needs from the forward pass. Activations are (B, d) in the ``"batch"``
    layout and (d, B) in the ``"feature"`` layout; the logits are (B, d_out) in both."""

    inputs: tuple[Array, ...]  # input of every layer: inputs[0] = x, inputs[l] = phi(z_{l-1}) (* masks[l-1])
    pre_activations: tuple[Array, ...]  # z of every hidden layer
    logits: Array  # (B, d_out)
    masks: tuple[Array, ...] = ()  # with dropout: every hidden layer's mask (0 or 1/keep), in the cache's layout


def _check_layout(layout: str) -> None:
    if layout not in ("batch", "feature"):
        raise ValueError(f"layout must be 'batch' or 'feature', got {layout!r}")


def forward_with_cache(
    params: Params,
    x: Array,
    activation: str,
    layout: str = "batch",
    *,
    dropout: float = 0.0,
    key: Array | None = None,
) -> ForwardCache:
    """The forward pass, keeping every layer's input and every hidden pre-activation (and, with
    ``dropout=rate`` and a `key`, the dropout masks: the same ones `mlp_jax.forward` draws from that key)."""
    masks = dropout_masks(params, x.shape[0], check_dropout(dropout, key), key)
    return _forward_parts(params, (x,), activation, layout, (masks,) if masks else ())[0]


def _forward_parts(
    params: Params,
    xs: tuple[Array, ...],
    activation: str,
    layout: str,
    part_masks: tuple[tuple[Array, ...], ...] = (),
) -> list[ForwardCache]:
    """`forward_with_cache` of each batch part in `xs`, one independent chain each; in the feature
    layout the weights are transposed once for all of them. `part_masks`: with dropout, each part's masks
    (B_part, d) in the batch layout; empty without."""
    _check_layout(layout)
    phi = get_activation(activation).fn
    if layout == "batch":
        inputs, weights = xs, tuple(layer.w for layer in params)
        affine = lambda a, w, b: dot(a, w, 1, 0) + b[None, :]  # (B, d_out)
    else:
        inputs, weights = materialize((tuple(x.T for x in xs), tuple(layer.w.T for layer in params)))
        affine = lambda a, w_t, b: dot(w_t, a, 1, 0) + b[:, None]  # (d_out, B); a (d_0, B), w_t (d_out, d_in)
        part_masks = tuple(tuple(m.T for m in masks) for masks in part_masks)
    caches = []
    for i, a in enumerate(inputs):
        masks = part_masks[i] if part_masks else ()
        layer_inputs, pre_activations = [a], []
        for l, (layer, w) in enumerate(zip(params[:-1], weights[:-1])):
            z = affine(layer_inputs[-1], w, layer.b)
            pre_activations.append(z)
            layer_inputs.append(phi(z) * masks[l] if masks else phi(z))
        logits = affine(layer_inputs[-1], weights[-1], params[-1].b)
        caches.append(
            ForwardCache(tuple(layer_inputs), tuple(pre_activations), logits if layout == "batch" else logits.T, masks)
        )
    return caches


def backward(
    params: Params, cache: ForwardCache, dlogits: Array, activation: str, layout: str = "batch"
) -> tuple[Params, tuple[Array, ...]]:
    """Gradients of every layer and the deltas ``dL/dz_l`` (in the cache's layout) from ``dL/dlogits``
    (B, d_out)."""
    _check_layout(layout)
    dphi = get_activation(activation).derivative
    feature = layout == "feature"
    batch_axis = 1 if feature else 0
    grads: list[Layer] = []
    deltas: list[Array] = []
    delta = dlogits.T if feature else dlogits  # (d_out, B) or (B, d_out)
    for l in reversed(range(len(params))):
        a_prev = cache.inputs[l]
        deltas.append(delta)
        w_grad = dot(a_prev, delta, batch_axis, batch_axis)  # (d_in, d_out)
        grads.append(Layer(w=w_grad, b=jnp.sum(delta, axis=batch_axis)))
        if l > 0:
            w = params[l].w
            back = dot(w, delta, 1, 0) if feature else dot(delta, w, 1, 1)
            if cache.masks:  # the dropped units pass nothing back; the kept ones their 1/keep scale
                back = back * cache.masks[l - 1]
            delta = back * dphi(cache.pre_activations[l - 1])
    return tuple(reversed(grads)), tuple(reversed(deltas))


class ManualForward(NamedTuple):
    """The first half of the manual pass: the forward pass of each batch part and the loss on top."""

    caches: tuple[ForwardCache, ...]  # one per batch part, in batch order
    logits: Array  # (B, d_out): the parts' logits joined
    per_example: Array  # (B,): each example's own loss term
    value: Array  # (): their (weighted) mean, the loss


class ManualPass(NamedTuple):
    """Everything the hand-written pass computes, forward and backward. The activations and deltas are in
    the layout the pass ran in (see `forward_with_cache`), one entry per batch part."""

    caches: tuple[ForwardCache, ...]  # one per batch part, in batch order
    per_example: Array  # (B,): each example's own loss term
    value: Array  # (): their (weighted) mean, the loss
    dlogits: Array  # (B, d_out): the cotangent the backward pass started from
    grads: Params  # params' structure: of `value` (scaled dlogits) or of sum_i per_example[i] (unscaled)
    part_deltas: tuple[tuple[Array, ...], ...]  # per batch part: dL/dz_l of every layer
    sample_weight: Array | None  # the validated (B,) weights the loss used, or None

    @property
    def cache(self) -> ForwardCache:
        """The forward cache of a pass run in one batch part."""
        return self.caches[_single_part(len(self.caches))]

    @property
    def deltas(self) -> tuple[Array, ...]:
        """The deltas of every layer of a pass run in one batch part."""
        return self.part_deltas[_single_part(len(self.part_deltas))]


def _single_part(parts: int) -> int:
    if parts != 1:
        raise ValueError(f"this pass ran in {parts} batch parts: read caches[i] and part_deltas[i] instead")
    return 0


def manual_forward(
    params: Params,
    x: Array,
    y: Array,
    activation: str,
    loss: str,
    sample_weight: Array | None = None,
    *,
    layout: str = "batch",
    batch_parts: int = 1,
    dropout: float = 0.0,
    key: Array | None = None,
) -> ManualForward:
    """The forward pass of `batch_parts` independent chains in `layout` (``"batch"`` or ``"feature"``),
    the logits joined and the loss on top. Takes inputs `check_problem` has validated. With
    ``dropout=rate`` and a `key`, the whole batch's masks are drawn as `mlp_jax.forward` draws them and cut
    into the parts with the rows."""
    bounds = batch_bounds(x.shape[0], batch_parts)
    masks = dropout_masks(params, x.shape[0], check_dropout(dropout, key), key)
    part_masks = tuple(zip(*(_cut(m, bounds) for m in masks))) if masks else ()
    caches = tuple(_forward_parts(params, _cut(x, bounds), activation, layout, part_masks))
    logits = _join([c.logits for c in caches])  # (B, d_out)
    per_example = get_loss(loss).per_example(logits, y)
    return ManualForward(caches, logits, per_example, reduce(per_example, sample_weight))


def manual_backward(
    params: Params,
    fwd: ManualForward,
    y: Array,
    activation: str,
    loss: str,
    sample_weight: Array | None = None,
    *,
    layout: str = "batch",
    scaled: bool = True,
) -> ManualPass:
    """The second half: dL/dlogits from the loss, sent back through every part's chain, the parts'
    gradients summed. ``scaled=True``: the gradient of the (weighted) mean, as `backprop` has it;
    ``scaled=False``: row i of dlogits is d per_example[i] / d logits[i], so every delta row belongs to
    one example's own term. `layout` is the one `manual_forward` ran in."""
    spec = get_loss(loss)
    # (B, d_out); scaled: the whole batch's scaling, applied once before the batch is cut
    dlogits = scaled_grad_logits(spec, fwd.logits, y, sample_weight) if scaled else spec.grad_logits(fwd.logits, y)
    bounds = list(itertools.pairwise(itertools.accumulate((c.logits.shape[0] for c in fwd.caches), initial=0)))
    passes = [
        backward(params, cache, part, activation, layout) for cache, part in zip(fwd.caches, _cut(dlogits, bounds))
    ]
    grads = jax.tree.map(_sum_parts, *(part_grads for part_grads, _ in passes))
    deltas = tuple(part_deltas for _, part_deltas in passes)
    return ManualPass(fwd.caches, fwd.per_example, fwd.value, dlogits, grads, deltas, sample_weight)


def manual_pass(
    params: Params,
    x: Array,
    y: Array,
    activation: str = "relu",
    loss: str = "mse",
    sample_weight: Array | None = None,
    *,
    layout: str = "auto",
    batch_parts: int | str = "auto",
    scaled: bool = True,
    dropout: float = 0.0,
    key: Array | None = None,
) -> ManualPass:
    """The whole hand-written pass on validated inputs: `check_problem`, `manual_forward`, then
    `manual_backward`. `layout` and `batch_parts` as for `backprop` (``"auto"`` resolved by
    `mlp_jax.core.matmul`), `scaled` as for `manual_backward`, `dropout` and `key` as for `manual_forward`."""
    x, y, sample_weight, _ = check_problem(params, x, y, activation, loss, sample_weight)
    layout = choose_layout(layout, layer_sizes(params), x.shape[0], x.dtype)
    parts = choose_batch_parts(batch_parts, layout, x.shape[0])
    fwd = manual_forward(
        params, x, y, activation, loss, sample_weight, layout=layout, batch_parts=parts, dropout=dropout, key=key
    )
    return manual_backward(params, fwd, y, activation, loss, sample_weight, layout=layout, scaled=scaled)


def backprop(
    params: Params,
    x: Array,
    y: Array,
    activation: str = "relu",
    loss: str = "mse",
    sample_weight: Array | None = None,
    *,
    layout: str = "auto",
    batch_parts: int | str = "auto",
    dropout: float = 0.0,
    key: Array | None = None,
) -> tuple[Array, Params]:
    """``(loss_value, grads)`` by the hand-written chain rule; grads has the structure, shapes and dtypes
    of params. Agrees with ``jax.value_and_grad(mlp_jax.loss)``. `layout` (``"auto"``, ``"batch"``,
    ``"feature"``) is how the pass lays out its activations, and `batch_parts` (``"auto"`` or an int)
    how many independent chains of dots it cuts the batch into, see `mlp_jax.core.matmul`; both change speed,
    not results (beyond float rounding). With ``dropout=rate`` in [0, 1) and a PRNG `key`, the value and
    gradient of ``mlp_jax.loss(..., dropout=rate, key=key)``: the same masks, reused by the backward pass;
    off when the rate is 0 or `key` is None."""
    result = manual_pass(
        params, x, y, activation, loss, sample_weight, layout=layout, batch_parts=batch_parts, dropout=dropout, key=key
    )
    return result.value, result.grads


def _cut(a: Array, bounds: list[tuple[int, int]]) -> tuple[Array, ...]:
    """`a`'s rows in the parts `bounds` gives; one part is `a` itself, no slice."""
    return (a,) if len(bounds) == 1 else tuple(a[start:stop] for start, stop in bounds)


def _join(parts: list[Array]) -> Array:
    """The parts' rows back in one array; one part is returned as it is."""
    return parts[0] if len(parts) == 1 else jnp.concatenate(parts)


def _sum_parts(*parts: Array) -> Array:
    """The parts' gradients summed in float32 at least, rounded to their dtype once; one part is returned
    as it is. (In bfloat16 each part's own gradient is already rounded, so many parts add rounding;
    "auto" never cuts bfloat16.)"""
    if len(parts) == 1:
        return parts[0]
    wide = jnp.promote_types(parts[0].dtype, jnp.float32)
    return functools.reduce(operator.add, [part.astype(wide) for part in parts]).astype(parts[0].dtype)
