"""Input validation, before any work: the activation and loss names, params with x, the targets a loss
expects and the sample weights. Each check raises a ValueError or TypeError that names what was expected
and what was given.

Shapes and dtypes are checked always: under `jax.jit` while tracing. The values are checked wherever they
are concrete (numpy arrays, lists, JAX arrays outside a trace), in every entry point: x finite; integer
labels in [0, out); for the built-in losses, dense targets finite, softmax cross-entropy's probabilities in
[0, 1] with rows summing to 1, sigmoid BCE's targets in [0, 1]; sample weights finite, non-negative and not
all zero. Traced values (inside `jax.jit`, `jax.grad`, `jax.vmap`) cannot be looked at, so they are not
checked: a label of -1 then wraps to the last class and a NaN in x gives a NaN loss. Check the data once,
concretely, before a jitted loop: `check_targets` (as ``mlp-jax train`` does), or an eager call of `loss`.
The checks run while tracing only, so a compiled step is the same program with or without them."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mlp_jax.core.activations import get_activation
from mlp_jax.core.losses import get_loss, is_builtin, registered_for_labels
from mlp_jax.core.params import Params, check_params

Array = jax.Array


def check_names(activation: str, loss: str) -> None:
    """A ValueError listing the known names unless `activation` and `loss` are registered."""
    get_loss(loss), get_activation(activation)


def check_inputs(params: Params, x) -> tuple[Array, jnp.dtype]:
    """Validate params and ``x`` (batch, d_in) together; return x as a JAX array and the params dtype."""
    dtype = check_params(params)
    x = x if isinstance(x, jax.Array) else jnp.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"x must be 2-D (batch, {params[0].w.shape[0]}), got shape {x.shape}")
    if x.shape[1] != params[0].w.shape[0]:
        raise ValueError(
            f"x has {x.shape[1]} features but the first layer expects {params[0].w.shape[0]} "
            f"(x shape {x.shape}, w shape {params[0].w.shape})"
        )
    if x.dtype != dtype:
        raise TypeError(f"x has dtype {x.dtype} but params are {dtype}; cast x with x.astype({dtype.name!r})")
    _check_finite_x(x)
    return x, dtype


def _check_finite_x(x: Array) -> None:
    """A ValueError naming the first NaN or inf of a concrete `x`, reduced on its device: one flag is copied
    to the host, and x itself only to name the first bad value."""
    if not _is_concrete(x):
        return
    with jax.ensure_compile_time_eval():  # run now, also when a concrete x meets a trace (a jit's constant)
        if bool(jnp.all(jnp.isfinite(x))):
            return
    values = np.asarray(x).astype(np.float64)
    index = tuple(int(i) for i in np.argwhere(~np.isfinite(values))[0])
    raise ValueError(f"x must be finite, got {values[index]} at index {index}")


class Checked(NamedTuple):
    """Validated inputs of a loss: x (B, d_in), y ready for the loss, weights (B,) or None."""

    x: Array
    y: Array
    sample_weight: Array | None
    dtype: jnp.dtype


def check_problem(params: Params, x, y, activation: str, loss: str, sample_weight=None) -> Checked:
    """Validate names, params, x, y and sample_weight together; raise a clear error before any work."""
    check_names(activation, loss)
    x, dtype = check_inputs(params, x)
    batch, out = x.shape[0], params[-1].w.shape[1]
    if batch == 0:
        raise ValueError(f"x must hold at least one example (the loss is a mean over the batch), got shape {x.shape}")
    y = prepare_targets(loss, y, batch, out, dtype)
    return Checked(x, y, prepare_sample_weight(sample_weight, batch, dtype), dtype)


def _is_concrete(a) -> bool:
    """Whether the values of `a` can be looked at now: not a tracer (under jit, grad or vmap), and, for an
    array sharded over several processes, all of it in this one."""
    return not isinstance(a, jax.core.Tracer) and getattr(a, "is_fully_addressable", True)


def _concrete(a) -> np.ndarray | None:
    """`a` as a numpy array when its values are known now (`_is_concrete`), else None."""
    return np.asarray(a) if _is_concrete(a) else None


def _as_numeric_array(a, what: str) -> Array:
    """`a` as a JAX array; a TypeError naming `what` if it holds anything but numbers or booleans."""
    if isinstance(a, jax.Array):
        return a
    array = np.asarray(a)
    bfloat16 = array.dtype.kind == "V" and jnp.issubdtype(array.dtype, jnp.floating)  # ml_dtypes' kind is "V"
    if not (array.dtype.kind in "biuf" or bfloat16):
        raise TypeError(f"{what} must be numeric, got dtype {array.dtype}")
    return jnp.asarray(array)


def prepare_targets(name: str, y, batch: int, out: int, dtype) -> Array:
    """Check `y` against what loss `name` expects and return it ready for use.

    Integer labels stay integer; everything else is cast to the params' `dtype`. Raises a
    ValueError or TypeError naming the expected and the given shape, dtype or value range.
    """
    y, labels = _checked_targets(name, y, batch, out)
    return y if labels else y.astype(dtype)


def check_targets(y, loss: str, num_outputs: int) -> None:
    """Check targets `y` for loss `loss` on a net of `num_outputs` outputs, as every entry point does:
    a ValueError or TypeError naming what was expected and what was given, None when they fit.

    ``y`` is integer labels (batch,) in [0, num_outputs) for softmax cross-entropy (or probabilities
    (batch, num_outputs), each row in [0, 1] summing to 1) and for a loss registered with
    ``targets="labels"``; targets (batch, num_outputs) otherwise, finite for the built-in losses and in
    [0, 1] for sigmoid_binary_cross_entropy. The values are checked when concrete; under `jax.jit` only the
    shape and dtype can be, so call it on the data before a jitted training loop (``mlp-jax train`` does).
    """
    get_loss(loss)
    if isinstance(num_outputs, bool) or not isinstance(num_outputs, (int, np.integer)) or num_outputs < 1:
        raise ValueError(f"num_outputs must be a positive integer, got {num_outputs!r}")
    y = _as_numeric_array(y, "y")
    if y.ndim == 0:
        raise ValueError(f"y must hold one row per example (at least 1-D), got shape {y.shape}")
    _checked_targets(loss, y, y.shape[0], int(num_outputs))


def _checked_targets(name: str, y, batch: int, out: int) -> tuple[Array, bool]:
    """`y` as a checked JAX array, and whether it holds integer labels (else dense targets, not yet cast)."""
    y = _as_numeric_array(y, "y")
    if (name == "softmax_cross_entropy" and y.ndim == 1) or registered_for_labels(name):
        return _check_labels(name, y, batch, out), True
    return _check_dense_targets(name, y, batch, out), False


def _check_labels(name: str, y: Array, batch: int, out: int) -> Array:
    """Integer labels (batch,) in [0, out) (the range checked where the values are concrete)."""
    if not jnp.issubdtype(y.dtype, jnp.integer):
        raise TypeError(
            f"{name} with 1-D y expects integer labels of shape ({batch},), got dtype {y.dtype}"
            if y.ndim == 1
            else f"{name} expects integer labels of shape ({batch},), got shape {y.shape} and dtype {y.dtype}"
        )
    if y.shape != (batch,):
        raise ValueError(f"integer labels must have shape ({batch},), got {y.shape}")
    values = _concrete(y)
    if values is not None and values.size and (values.min() < 0 or values.max() >= out):
        raise ValueError(
            f"integer labels must lie in [0, {out}) for {out} outputs, got values in [{values.min()}, {values.max()}]"
        )
    return y


def _check_dense_targets(name: str, y: Array, batch: int, out: int) -> Array:
    """Numeric targets (batch, out); finite for a built-in loss, in [0, 1] for the sigmoid BCE (values
    checked where concrete)."""
    if y.shape != (batch, out):
        hint = f" or integer labels of shape ({batch},)" if name == "softmax_cross_entropy" else ""
        raise ValueError(f"loss {name!r} expects y of shape ({batch}, {out}){hint}, got {y.shape}")
    if not (jnp.issubdtype(y.dtype, jnp.floating) or jnp.issubdtype(y.dtype, jnp.integer) or y.dtype == jnp.bool_):
        raise TypeError(f"y must be numeric, got dtype {y.dtype}")
    values = _concrete(y)
    if values is None or not values.size:
        return y
    # built-in losses only: a registered loss may use NaN to mark a missing target
    if is_builtin(name) and not np.isfinite(values).all():
        raise ValueError(
            f"y must be finite, got {values[~np.isfinite(values)][0]} at index "
            f"{tuple(int(i) for i in np.argwhere(~np.isfinite(values))[0])}"
        )
    if name == "sigmoid_binary_cross_entropy" and not (values.min() >= 0 and values.max() <= 1):
        raise ValueError(
            f"sigmoid_binary_cross_entropy expects y in [0, 1], got values in [{values.min()}, {values.max()}]"
        )
    if name == "softmax_cross_entropy" and is_builtin(name):
        _check_probabilities(values, y.dtype)
    return y


def _check_probabilities(values: np.ndarray, dtype) -> None:
    """Softmax cross-entropy's dense targets (batch, out): a distribution per row, each value in [0, 1] and
    each row summing to 1 within the rounding of `dtype` (``max(out, 16)`` of its eps). Anything else is no
    cross-entropy: y = [-1, 1, 1] makes a loss of either sign."""
    if not (values.min() >= 0 and values.max() <= 1):
        raise ValueError(
            f"softmax_cross_entropy with y of shape {values.shape} expects probabilities in [0, 1] "
            f"(or integer labels), got values in [{values.min()}, {values.max()}]"
        )
    eps = jnp.finfo(dtype if jnp.issubdtype(dtype, jnp.floating) else jnp.float32).eps
    tolerance = max(values.shape[1], 16) * float(eps)
    error = np.abs(values.astype(np.float64).sum(axis=1) - 1)
    worst = int(np.argmax(error))
    if error[worst] > tolerance:
        raise ValueError(
            f"softmax_cross_entropy with y of shape {values.shape} expects probabilities in rows that sum to 1 "
            f"(within {tolerance:.2g}), got row {worst} summing to {values[worst].astype(np.float64).sum():.6g}"
        )


def prepare_sample_weight(sample_weight, batch: int, dtype) -> Array | None:
    """Check a (batch,) weight vector (non-negative, not all zero when concrete) and cast it to `dtype`."""
    if sample_weight is None:
        return None
    w = _as_numeric_array(sample_weight, "sample_weight")
    if w.shape != (batch,):
        raise ValueError(f"sample_weight must have shape ({batch},), got {w.shape}")
    values = _concrete(w)
    if values is not None and (values.min() < 0 or values.sum() <= 0 or not np.isfinite(values).all()):
        raise ValueError("sample_weight must be finite, non-negative and not all zero")
    return w.astype(dtype)
