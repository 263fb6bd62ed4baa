"""Activations by name: each is a pair, the function and its hand-written derivative, side by side.

Both take the pre-activation ``z`` (any shape) and work elementwise. At kinks the derivative
follows `jax.grad`'s convention (relu'(0) = 0, leaky_relu'(0) = 1, elu'(0) = 1).
`register_activation` adds your own pair, after checking the derivative against `jax.grad`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mlp_jax.core.verify import check_derivative, check_same_shape, verify_dtype

Array = jax.Array

LEAKY_SLOPE = 0.01
ELU_ALPHA = 1.0
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


class Activation(NamedTuple):
    fn: Callable[[Array], Array]
    derivative: Callable[[Array], Array]


class _WithSecond(NamedTuple):
    """A built-in's three functions; phi'' is kept apart (`second_derivative`), so `Activation` stays
    the (fn, derivative) pair users unpack."""

    fn: Callable[[Array], Array]
    derivative: Callable[[Array], Array]
    second: Callable[[Array], Array]


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


def _gelu_tanh_second(z: Array) -> Array:
    """phi'' of the tanh GELU, its terms grouped as ``jax.grad(jax.grad(gelu_tanh))`` groups them: in
    the saturated tails (|z| > 6) every form loses its digits to cancellation in ``1 - tanh``, and this
    order loses the same ones as the autodiff reference it is verified against."""
    c = _SQRT_2_OVER_PI
    t = jnp.tanh(c * (z + 0.044715 * z**3))
    du = c * (0.044715 * (3 * z**2) + 1)  # d/dz of tanh's argument
    v = 0.5 * z * (1 - t)
    y = c * (v + v * t)
    w = ((v * du + 0.5) - 0.5 * z * (du + du * t)) * (1 - t)
    wz = c * (w + w * t)
    return ((0.5 * ((du + du * t) * (1 - t)) + wz) + (3 * (0.044715 * y)) * (2 * z)) + (0.044715 * wz) * (3 * z**2)


def _tanh_second(z: Array) -> Array:
    t = jnp.tanh(z)
    return -2 * t * (1 - t) * (1 + t)


def _sigmoid_second(z: Array) -> Array:
    s = jax.nn.sigmoid(z)
    return s * (1 - s) * (1 - 2 * s)


def _silu_second(z: Array) -> Array:
    s = jax.nn.sigmoid(z)
    return s * (1 - s) * (2 + z * (1 - 2 * s))


_zeros = jnp.zeros_like  # phi'' of the piecewise-linear activations (0 at the kinks, as jax.grad's)

_BUILTIN_FUNCTIONS: dict[str, _WithSecond] = {
    "relu": _WithSecond(jax.nn.relu, lambda z: (z > 0).astype(z.dtype), _zeros),
    "leaky_relu": _WithSecond(
        lambda z: jax.nn.leaky_relu(z, LEAKY_SLOPE),
        lambda z: jnp.where(z >= 0, 1, LEAKY_SLOPE).astype(z.dtype),
        _zeros,
    ),
    "elu": _WithSecond(
        lambda z: jax.nn.elu(z, ELU_ALPHA),
        lambda z: jnp.where(z > 0, 1, ELU_ALPHA * jnp.exp(jnp.minimum(z, 0))).astype(z.dtype),
        lambda z: jnp.where(z > 0, 0, ELU_ALPHA * jnp.exp(jnp.minimum(z, 0))).astype(z.dtype),
    ),
    "gelu": _WithSecond(
        lambda z: jax.nn.gelu(z, approximate=False),
        # Phi(z) + z * phi(z)
        lambda z: 0.5 * (1 + jax.lax.erf(z / math.sqrt(2.0))) + z * _INV_SQRT_2PI * jnp.exp(-0.5 * z * z),
        lambda z: (2 - z * z) * _INV_SQRT_2PI * jnp.exp(-0.5 * z * z),  # phi(z) (2 - z^2)
    ),
    "gelu_tanh": _WithSecond(lambda z: jax.nn.gelu(z, approximate=True), _gelu_tanh_derivative, _gelu_tanh_second),
    "tanh": _WithSecond(jnp.tanh, _tanh_derivative, _tanh_second),
    "sigmoid": _WithSecond(jax.nn.sigmoid, lambda z: jax.nn.sigmoid(z) * (1 - jax.nn.sigmoid(z)), _sigmoid_second),
    "softplus": _WithSecond(jax.nn.softplus, jax.nn.sigmoid, lambda z: jax.nn.sigmoid(z) * (1 - jax.nn.sigmoid(z))),
    "silu": _WithSecond(jax.nn.silu, _silu_derivative, _silu_second),
    "identity": _WithSecond(lambda z: z, jnp.ones_like, _zeros),
}

BUILTIN: dict[str, Activation] = {name: Activation(f.fn, f.derivative) for name, f in _BUILTIN_FUNCTIONS.items()}

_REGISTRY: dict[str, Activation] = dict(BUILTIN)
# phi'' by name, for the curvature tools (diag_hessian, hessian_vector_product)
_SECOND: dict[str, Callable[[Array], Array]] = {name: f.second for name, f in _BUILTIN_FUNCTIONS.items()}


def known_activations() -> list[str]:
    return sorted(_REGISTRY)


def get_activation(name: str) -> Activation:
    """The (fn, derivative) pair registered under `name`; a ValueError listing the known names otherwise."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown activation {name!r}; expected one of {known_activations()}") from None


# Where registration checks a derivative: every 0.1 in [-100, 100], and 1e-7 and 1e-4 either side of the
# usual kinks (relu at 0, hard tanh at +-1, hard sigmoid at +-3, relu6 at 6).
KINKS = (-6.0, -3.0, -1.0, 0.0, 1.0, 3.0, 6.0)
_NEAR_KINKS = [k + side * d * max(1.0, abs(k)) for k in KINKS for side in (-1, 1) for d in (1e-7, 1e-4)]
VERIFY_GRID = np.unique(np.concatenate([np.arange(-1000, 1001) / 10, KINKS, _NEAR_KINKS]))  # (2029,)


def register_activation(
    name: str,
    fn: Callable[[Array], Array],
    derivative: Callable[[Array], Array],
    *,
    second_derivative: Callable[[Array], Array] | None = None,
    verify: bool = True,
    overwrite: bool = False,
) -> None:
    """Make `name` usable everywhere an activation name is (forward, backprop, make_update, gradcheck, CLI).

    `fn` and `derivative` take the pre-activation ``z`` (any shape) elementwise and keep its shape and
    dtype. With ``verify=True`` the derivative is compared with ``jax.vmap(jax.grad(fn))`` on
    `VERIFY_GRID` (0, points 1e-7 either side of common kinks, and values up to +-100) under the rule of
    `mlp_jax.core.verify`; a wrong one raises `DerivativeError` naming the worst z, both values and their
    relative difference. At a kink, match the value `jax.grad` takes there. ``overwrite=True`` is needed
    to replace a registered name (built-ins included); functions already jitted with the name keep the
    old definition, since `jax.jit` caches by the (static) name.

    `second_derivative` (phi'', optional) is what the curvature tools that need the activations' second
    derivatives (`diag_hessian`, `hessian_vector_product`) use; it is verified the same way, against
    ``jax.grad(jax.grad(fn))``. Without it those tools raise a ValueError naming the activation.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"activation name must be a non-empty string, got {name!r}")
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"activation {name!r} is already registered; pass overwrite=True to replace it")
    if not (callable(fn) and callable(derivative)):
        raise TypeError("register_activation needs callables fn(z) and derivative(z)")
    if second_derivative is not None and not callable(second_derivative):
        raise TypeError(f"second_derivative must be a callable phi''(z) or None, got {second_derivative!r}")
    if verify:
        _verify_activation(name, fn, derivative)
        if second_derivative is not None:
            _verify_activation(name, jax.grad(fn), second_derivative, what="second derivative")
    _REGISTRY[name] = Activation(fn, derivative)
    _SECOND.pop(name, None)
    if second_derivative is not None:
        _SECOND[name] = second_derivative


def registered(name: str) -> tuple[Activation, Callable[[Array], Array] | None]:
    """What `name` stands for now: its (fn, derivative) and its second derivative or None. Part of a compiled
    program's cache key where the name is static, so that a name registered again compiles anew."""
    return get_activation(name), _SECOND.get(name)


def second_derivative(name: str) -> Callable[[Array], Array]:
    """phi'' of activation `name`; a ValueError saying how to provide it when it was registered without."""
    get_activation(name)
    phi2 = _SECOND.get(name)
    if phi2 is None:
        raise ValueError(
            f"activation {name!r} has no second derivative: register it with "
            "register_activation(..., second_derivative=fn, overwrite=True) to use the curvature tools that need it"
        )
    return phi2


def _verify_activation(
    name: str, fn: Callable[[Array], Array], derivative: Callable[[Array], Array], what: str = "derivative"
) -> None:
    """`derivative` against ``jax.vmap(jax.grad(fn))`` on `VERIFY_GRID` (``fn`` is phi' itself when
    checking a second derivative)."""
    for dtype in (jnp.float32, jnp.bfloat16, verify_dtype()):
        probe = jax.ShapeDtypeStruct((3,), dtype)
        if what == "derivative":
            check_same_shape(f"activation {name!r}: fn", jax.eval_shape(fn, probe), (3,), dtype)
        check_same_shape(f"activation {name!r}: {what}", jax.eval_shape(derivative, probe), (3,), dtype)
    z = jnp.asarray(VERIFY_GRID, verify_dtype())
    expected = jax.vmap(jax.grad(fn))(z)

    def where(i: int) -> str:
        kink = " (a kink: use the value jax.grad takes there)" if VERIFY_GRID[i] in KINKS else ""
        return f"z = {VERIFY_GRID[i]:.9g}{kink}"

    check_derivative(f"{what} of activation {name!r}", expected, derivative(z), where)
