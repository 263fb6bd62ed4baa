"""Checking a hand-written derivative against `jax.grad` before it is registered.

`register_activation` and `register_loss` evaluate the given derivative and ``jax.grad`` of the given
function on a grid of points, in float64 when ``jax_enable_x64`` is on and in float32 otherwise. A point
passes when::

    |given - expected| <= sqrt(eps) * |expected| + 64 * eps * max(1, max_grid |expected|)

The relative part (1.5e-8 in float64, 3.5e-4 in float32) leaves room for a different but exact formula;
the absolute part for cancellation where the derivative is near zero (``1 - tanh(z)**2`` for large z).
A derivative 1 % off fails at every point where ``|expected| > 64 * eps / (0.01 - sqrt(eps))``
(1.4e-12 in float64, 8e-4 in float32), that is on any grid where it is not almost zero everywhere.
Where ``jax.grad`` itself is NaN the point is skipped; where it is infinite the given value must equal it.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from mlp_jax.core.errors import DerivativeError


def verify_dtype() -> jnp.dtype:
    """float64 when ``jax_enable_x64`` is on, float32 otherwise."""
    return jnp.dtype(jnp.float64 if jax.config.read("jax_enable_x64") else jnp.float32)


def tolerance(dtype) -> tuple[float, float]:
    """``(rtol, atol_factor)``: the allowed error is ``rtol * |expected| + atol_factor * max(1, max|expected|)``."""
    eps = float(jnp.finfo(dtype).eps)
    return eps**0.5, 64 * eps


def check_same_shape(what: str, returned, shape: tuple[int, ...], dtype) -> None:
    """Refuse a function that does not return `shape` in the input's `dtype` (checked by abstract evaluation)."""
    if tuple(returned.shape) != tuple(shape):
        raise DerivativeError(f"{what} returned shape {tuple(returned.shape)}, expected {tuple(shape)}")
    if jnp.dtype(returned.dtype) != jnp.dtype(dtype):
        raise DerivativeError(
            f"{what} returned dtype {returned.dtype} for {jnp.dtype(dtype)} input; keep the input's dtype"
        )


def check_derivative(what: str, expected, given, where: Callable[[int], str]) -> None:
    """Raise a `DerivativeError` unless `given` matches `expected` (same shape) within `tolerance`.

    ``where(i)`` describes flat point ``i`` (``"z = 0"``); the message names the worst point (largest
    error in units of its allowance), both values, the relative difference and how many points fail.
    """
    dtype = jnp.dtype(expected.dtype)
    expected = np.asarray(expected, np.float64).ravel()
    given = np.asarray(given, np.float64).ravel()
    rtol, atol_factor = tolerance(dtype)
    finite = np.isfinite(expected)
    scale = max(1.0, float(np.max(np.abs(expected[finite]), initial=0.0)))
    allowed = np.where(finite, rtol * np.abs(expected) + atol_factor * scale, 0.0)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.where(given == expected, 0.0, np.abs(given - expected))
    diff = np.where(np.isnan(diff), np.inf, diff)
    bad = ~np.isnan(expected) & (diff > allowed)
    if not bad.any():
        return
    with np.errstate(divide="ignore", invalid="ignore"):
        badness = np.where(bad, diff / np.maximum(allowed, np.finfo(np.float64).tiny), -1.0)
    i = int(np.argmax(badness))
    with np.errstate(invalid="ignore"):  # inf / inf where jax.grad is infinite: nan
        relative = diff[i] / abs(expected[i]) if expected[i] != 0 else np.inf
    raise DerivativeError(
        f"{what} does not match jax.grad: at {where(i)}: expected {expected[i]:.9g} (jax.grad), "
        f"given {given[i]:.9g}, off by {diff[i]:.3g} (relative difference {relative:.3g}) "
        f"(allowed {rtol:.2g} relative + {atol_factor * scale:.2g} absolute in {dtype.name}); "
        f"{int(bad.sum())} of {bad.size} points differ"
    )
