"""Activations by name: each is a pair, the function and its hand-written derivative, side by side.

Both take the pre-activation ``z`` (any shape) and work elementwise. At kinks the derivative
follows `jax.grad`'s convention (relu'(0) = 0, leaky_relu'(0) = 1, elu'(0) = 1).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array

LEAKY_SLOPE = 0.01
ELU_ALPHA = 1.0
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


class Activation(NamedTuple):
    fn: Callable[[Array], Array]
    derivative: Callable[[Array], Array]


def _gelu_tanh_derivative(z: Array) -> Array:
    inner = _SQRT_2_OVER_PI * (z + 0.044715 * z**3)
    t = jnp.tanh(inner)
    return 0.5 * (1 + t) + 0.5 * z * ((1 - t) * (1 + t)) * _SQRT_2_OVER_PI * (1 + 3 * 0.044715 * z * z)


def _tanh_derivative(z: Array) -> Array:
    t = jnp.tanh(z)
    return (1 - t) * (1 + t)  # = 1 - tanh^2, without the cancellation near |t| = 1


def _silu_derivative(z: Array) -> Array:
    s = jax.nn.sigmoid(z)
    return s * (1 + z * (1 - s))


BUILTIN: dict[str, Activation] = {
    "relu": Activation(jax.nn.relu, lambda z: (z > 0).astype(z.dtype)),
    "leaky_relu": Activation(
        lambda z: jax.nn.leaky_relu(z, LEAKY_SLOPE),
        lambda z: jnp.where(z >= 0, 1, LEAKY_SLOPE).astype(z.dtype),
    ),
    "elu": Activation(
        lambda z: jax.nn.elu(z, ELU_ALPHA),
        lambda z: jnp.where(z > 0, 1, ELU_ALPHA * jnp.exp(jnp.minimum(z, 0))).astype(z.dtype),
    ),
    "gelu": Activation(
        lambda z: jax.nn.gelu(z, approximate=False),
        # Phi(z) + z * phi(z)
        lambda z: 0.5 * (1 + jax.lax.erf(z / math.sqrt(2.0))) + z * _INV_SQRT_2PI * jnp.exp(-0.5 * z * z),
    ),
    "gelu_tanh": Activation(lambda z: jax.nn.gelu(z, approximate=True), _gelu_tanh_derivative),
    "tanh": Activation(jnp.tanh, _tanh_derivative),
    "sigmoid": Activation(jax.nn.sigmoid, lambda z: jax.nn.sigmoid(z) * (1 - jax.nn.sigmoid(z))),
    "softplus": Activation(jax.nn.softplus, jax.nn.sigmoid),
    "silu": Activation(jax.nn.silu, _silu_derivative),
    "identity": Activation(lambda z: z, jnp.ones_like),
}

_REGISTRY: dict[str, Activation] = dict(BUILTIN)


def known_activations() -> list[str]:
    return sorted(_REGISTRY)


def get_activation(name: str) -> Activation:
    """The (fn, derivative) pair registered under `name`; a ValueError listing the known names otherwise."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown activation {name!r}; expected one of {known_activations()}") from None
