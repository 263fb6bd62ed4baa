"""Training: jit-compiled optax update steps, and whole epochs fused into one compiled call.

``grad`` is the one switch between the hand-written gradient (``"manual"``, `mlp_jax.core.backprop`) and
autodiff (``"autodiff"``, ``jax.value_and_grad(mlp_jax.loss)``); the benchmarks and the CLI use it.
A callable ``grad(params, x, y, sample_weight=None, key=None) -> (loss_value, grads)`` is accepted too,
for gradient sources of your own (a differentially private one, say).

``dropout=rate`` trains the named sources with inverted dropout (`mlp_jax.core.dropout`): every update draws
its masks from the key it is given, which `make_train_epoch` and `make_fused_update` split per step from the
key they hold; evaluation (`make_evaluate`) never drops.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from mlp_jax.core.activations import get_activation
from mlp_jax.core.backprop import backprop
from mlp_jax.core.dropout import check_dropout
from mlp_jax.core.losses import get_loss
from mlp_jax.core.model import forward
from mlp_jax.core.model import loss as loss_fn
from mlp_jax.core.params import Params
from mlp_jax.second_order.kfac import requested_extras
from mlp_jax.tools.curvature import backprop_with

Array = jax.Array
GradFn = Callable[..., tuple[Array, Params]]
GRADS = ("manual", "autodiff")


class TrainState(NamedTuple):
    """Everything a run needs to continue: params, optimizer state, update count, PRNG key."""

    params: Params
    opt_state: optax.OptState
    step: Array  # int32 scalar: updates applied so far
    key: Array  # PRNG key for shuffling (and any stochastic gradient source)


def init_train_state(params: Params, optimizer: optax.GradientTransformation, key: Array) -> TrainState:
    return TrainState(params, optimizer.init(params), jnp.zeros((), jnp.int32), key)


def dropout_rate(dropout: float) -> float:
    """`dropout` checked (a number in [0, 1), ValueError or TypeError otherwise) and as a float."""
    check_dropout(dropout, None)
    return float(dropout)


def _key_for(key: Array | None, rate: float) -> Array:
    if key is None:
        raise ValueError(
            f"dropout={rate} needs a PRNG key for every update: call update(params, opt_state, x, y, key=...) "
            "(make_train_epoch and make_fused_update split one per step from the key they are given)"
        )
    return key


def gradient_fn(grad: str | GradFn, *, activation: str, loss: str, dropout: float = 0.0) -> GradFn:
    """``(params, x, y, sample_weight=None, key=None) -> (loss_value, grads)`` for the named source; with
    ``dropout=rate`` > 0 it draws its masks from `key`, which is then required."""
    get_activation(activation), get_loss(loss)  # fail early on unknown names
    rate = dropout_rate(dropout)
    if callable(grad):
        if rate:
            raise ValueError(
                f"dropout={rate} applies to grad='manual' or 'autodiff'; a callable gradient source is given each "
                "step's key and applies its own"
            )
        return grad
    if grad == "manual" and not rate:
        return lambda p, x, y, sample_weight=None, key=None: backprop(p, x, y, activation, loss, sample_weight)
    if grad == "manual":
        return lambda p, x, y, sample_weight=None, key=None: backprop(
            p, x, y, activation, loss, sample_weight, dropout=rate, key=_key_for(key, rate)
        )
    if grad == "autodiff":
        value_and_grad = jax.value_and_grad(loss_fn)
        if not rate:
            return lambda p, x, y, sample_weight=None, key=None: value_and_grad(
                p, x, y, activation, loss, sample_weight
            )
        return lambda p, x, y, sample_weight=None, key=None: value_and_grad(
            p, x, y, activation, loss, sample_weight, dropout=rate, key=_key_for(key, rate)
        )
    raise ValueError(f"unknown grad {grad!r}; expected one of {list(GRADS)} or a callable")


def needs_key(optimizer: optax.GradientTransformation, dropout: float) -> bool:
    """Whether every update needs its own PRNG key: for dropout's masks, or for an optimizer's sampled
    curvature (`mlp_jax.kfac` with method="mc")."""
    return bool(dropout) or any(name.endswith("_mc") for name in requested_extras(optimizer)[0])


def _curvature_step(
    optimizer: optax.GradientTransformation, activation: str, loss: str, grad: str | GradFn, dropout: float
) -> Callable:
    """The update of an optimizer that asks for curvature (`requested_extras`): the gradient and the
    quantities from one hand-written pass (`mlp_jax.backprop_with`), passed to its update by name."""
    extras, mc_samples = requested_extras(optimizer)
    if grad != "manual" or dropout:
        raise ValueError(
            f"the optimizer takes {extras[0]!r} from the same hand-written pass as the gradient: it needs "
            f"grad='manual' and no dropout, got grad={grad!r}, dropout={dropout}"
        )
    names = {name: name.removesuffix("_mc") for name in extras}
    sampled = needs_key(optimizer, 0.0)

    def step(params, opt_state, x, y, sample_weight=None, key=None):
        if sampled and key is None:
            raise ValueError(f"{extras[0]!r} samples labels from the model: every update needs its own key=")
        value, grads, quantities = backprop_with(
            params,
            x,
            y,
            activation=activation,
            loss=loss,
            extras=extras,
            sample_weight=sample_weight,
            key=key,
            mc_samples=mc_samples,
        )
        extra_args = {names[name]: quantities[name] for name in extras}
        updates, opt_state = optimizer.update(grads, opt_state, params, **extra_args)
        return optax.apply_updates(params, updates), opt_state, value

    return step


def make_step(
    optimizer: optax.GradientTransformation,
    *,
    activation: str = "relu",
    loss: str = "mse",
    grad: str | GradFn = "manual",
    dropout: float = 0.0,
) -> Callable:
    """The pure, un-jitted update ``(params, opt_state, x, y, sample_weight=None, key=None) ->
    (params, opt_state, loss_value)``; `make_update` jits it. With ``dropout=rate`` > 0, `key` is required.

    An optimizer that asks for curvature (`mlp_jax.kfac`) gets it from the same hand-written pass as the
    gradient, as an extra argument of its update."""
    if requested_extras(optimizer)[0]:
        get_activation(activation), get_loss(loss)
        return _curvature_step(optimizer, activation, loss, grad, dropout_rate(dropout))
    value_and_grad = gradient_fn(grad, activation=activation, loss=loss, dropout=dropout)

    def step(params, opt_state, x, y, sample_weight=None, key=None):
        value, grads = value_and_grad(params, x, y, sample_weight=sample_weight, key=key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    return step


def make_update(
    optimizer: optax.GradientTransformation,
    *,
    activation: str = "relu",
    loss: str = "mse",
    grad: str | GradFn = "manual",
    donate: bool = True,
    dropout: float = 0.0,
) -> jax.stages.Wrapped:
    """A jit-compiled ``update(params, opt_state, x, y) -> (params, opt_state, loss_value)``.

    Compiled once per input shape; params and opt_state buffers are donated (pass ``donate=False`` to
    keep the inputs alive). Optional ``sample_weight`` (batch,) and ``key`` arguments pass through to
    the gradient source. With ``dropout=rate`` > 0 every call needs its own ``key=`` (split a fresh one
    per step): the update draws its dropout masks from it.
    """
    step = make_step(optimizer, activation=activation, loss=loss, grad=grad, dropout=dropout)
    return jax.jit(step, donate_argnums=(0, 1) if donate else ())


def make_fused_update(
    optimizer: optax.GradientTransformation,
    num_steps: int,
    *,
    activation: str = "relu",
    loss: str = "mse",
    grad: str | GradFn = "manual",
    donate: bool = True,
    losses: str = "all",
    dropout: float = 0.0,
) -> jax.stages.Wrapped:
    """``num_steps`` updates on one batch inside one compiled call (a `lax.scan`):
    ``(params, opt_state, x, y, key=None) -> (params, opt_state, losses)``.

    ``losses="all"`` returns every step's loss, shape (num_steps,); ``losses="last"`` only the last
    one, shape (), carried through the loop instead of stacked: on a tiny net, writing the stacked
    losses is a visible share of a step, so "last" runs more steps per second. With ``dropout=rate``
    > 0, `key` is required and split into one key per step.
    """
    if losses not in ("all", "last"):
        raise ValueError(f"losses must be 'all' or 'last', got {losses!r}")
    rate = dropout_rate(dropout)
    step = make_step(optimizer, activation=activation, loss=loss, grad=grad, dropout=rate)

    def fused(params, opt_state, x, y, key=None):
        def body(carry, step_key):
            params, opt_state, value = step(*carry[:2], x, y, key=step_key)
            return (params, opt_state, value), (value if losses == "all" else None)

        keyed = needs_key(optimizer, rate)
        if rate:
            key = _key_for(key, rate)
        elif keyed and key is None:
            raise ValueError("the optimizer samples its curvature: the fused update needs key=")
        step_keys = jax.random.split(key, num_steps) if keyed else None
        first = jnp.zeros((), jax.tree.leaves(params)[0].dtype)
        (params, opt_state, last), values = jax.lax.scan(body, (params, opt_state, first), step_keys, length=num_steps)
        return params, opt_state, values if losses == "all" else last

    return jax.jit(fused, donate_argnums=(0, 1) if donate else ())


def num_batches(num_examples: int, batch_size: int) -> int:
    """Batches per epoch; the last one is partial when `batch_size` does not divide `num_examples`."""
    return -(-num_examples // batch_size)


def make_train_epoch(
    optimizer: optax.GradientTransformation,
    *,
    activation: str = "relu",
    loss: str = "mse",
    grad: str | GradFn = "manual",
    batch_size: int = 128,
    donate: bool = True,
    dropout: float = 0.0,
) -> jax.stages.Wrapped:
    """One epoch in one compiled call: ``train_epoch(state, x, y) -> (state, losses (num_batches,))``.

    The examples are shuffled on the device with a key split from ``state.key``, cut into
    ``ceil(n / batch_size)`` minibatches, and one update is applied per minibatch inside a `lax.scan`.
    The last, partial minibatch is used: it is padded to ``batch_size`` with repeated indices whose
    ``sample_weight`` is 0, so its update is the exact mean over its real examples. Every update gets
    its own key, split from ``state.key`` too, from which ``dropout=rate`` > 0 draws its masks.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    step = make_step(optimizer, activation=activation, loss=loss, grad=grad, dropout=dropout)

    def train_epoch(state: TrainState, x: Array, y: Array) -> tuple[TrainState, Array]:
        n = x.shape[0]
        size = min(batch_size, n)
        batches = num_batches(n, size)
        key, shuffle_key, step_key = jax.random.split(state.key, 3)
        order = jax.random.permutation(shuffle_key, n)
        pad = batches * size - n
        order = jnp.concatenate([order, order[:pad]]).reshape(batches, size)  # (batches, size)
        weight = (jnp.arange(batches * size) < n).astype(x.dtype).reshape(batches, size)
        step_keys = jax.random.split(step_key, batches)

        def body(carry, batch):
            params, opt_state = carry
            idx, w, k = batch
            sample_weight = None if pad == 0 else w
            params, opt_state, value = step(params, opt_state, x[idx], y[idx], sample_weight, k)
            return (params, opt_state), value

        (params, opt_state), losses = jax.lax.scan(body, (state.params, state.opt_state), (order, weight, step_keys))
        return TrainState(params, opt_state, state.step + batches, key), losses

    return jax.jit(train_epoch, donate_argnums=(0,) if donate else ())


def make_evaluate(*, activation: str = "relu", loss: str = "mse", classification: bool = False) -> jax.stages.Wrapped:
    """A jitted ``evaluate(params, x, y) -> {"loss": ..., "accuracy": ...}``.

    Accuracy is the argmax match for softmax cross-entropy (integer or one-hot labels) and, with
    `classification` (y holds class labels, one-hot for a dense loss such as mse), for every loss whose
    y is labels (B,) or one-hot (B, K > 1); the sign match (logit > 0 vs target > 0.5) for sigmoid
    binary cross-entropy with one output; absent otherwise.
    """
    get_activation(activation), get_loss(loss)

    def evaluate(params: Params, x: Array, y: Array) -> dict[str, Array]:
        logits = forward(params, x, activation)
        metrics = {"loss": loss_fn(params, x, y, activation, loss)}
        if loss == "softmax_cross_entropy" or (classification and (y.ndim == 1 or y.shape[-1] > 1)):
            labels = y if y.ndim == 1 else jnp.argmax(y, axis=-1)
            metrics["accuracy"] = jnp.mean(jnp.argmax(logits, axis=-1) == labels)
        elif loss == "sigmoid_binary_cross_entropy":
            metrics["accuracy"] = jnp.mean((logits > 0) == (y > 0.5))
        return metrics

    return jax.jit(evaluate)
