"""GGN- and Hessian-vector products written by hand: a forward-mode pass (Pearlmutter's R-operator)
and the manual backward pass of it.

For a direction v = (V_l, v_l) in params' structure, ``R{.}`` is the directional derivative along v::

    R{a_0}     = 0
    R{z_l}     = R{a_l} W_l + a_l V_l + v_l                    (B, d_{l+1})
    R{a_{l+1}} = phi'(z_l) * R{z_l}

G v is the ordinary backward pass started from ``c_n H_n R{f_n}`` (J^T H J v). H v is R of the whole
backward pass (``delta_l`` the scaled deltas ``dL/dz_l``)::

    R{delta_{L-1}} = c_n H_n R{f_n}
    R{dW_l}        = R{a_l}^T delta_l + a_l^T R{delta_l}
    R{db_l}        = sum_n R{delta_l}
    R{delta_{l-1}} = (R{delta_l} W_l^T + delta_l V_l^T) * phi'(z_{l-1})
                     + (delta_l W_l^T) * phi''(z_{l-1}) * R{z_{l-1}}

Both cost about two gradients (O(B width) memory). No jax.grad / jvp / vjp / linearize is used here.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from mlp_jax.core.activations import get_activation, registered, second_derivative
from mlp_jax.core.backprop import ForwardCache, backward
from mlp_jax.core.losses import get_loss, loss_hessian, scaled_grad_logits
from mlp_jax.core.params import Layer, Params
from mlp_jax.core.validation import check_problem
from mlp_jax.tools.curvature_pass import CurvaturePass, forward_pass

Array = jax.Array


def check_direction(params: Params, v) -> None:
    """A ValueError unless `v` has params' structure, shapes and dtypes."""
    params_def: Any = jax.tree.structure(params)
    v_def: Any = jax.tree.structure(v)
    if params_def != v_def:
        raise ValueError(f"v must have params' structure {params_def}, got {v_def}")
    for path, p, leaf in zip(jax.tree_util.tree_leaves_with_path(params), jax.tree.leaves(params), jax.tree.leaves(v)):
        shape, dtype = getattr(leaf, "shape", None), getattr(leaf, "dtype", None)
        if shape != p.shape or dtype != p.dtype:
            where = jax.tree_util.keystr(path[0])
            raise ValueError(f"v{where} must have shape {p.shape} and dtype {p.dtype}, got {shape} and {dtype}")


def _r_forward(params: Params, cache: ForwardCache, v: Params, activation: str) -> list[Array]:
    """``R{z_l}`` (B, d_{l+1}) of every layer, the last one ``R{f}``."""
    dphi = get_activation(activation).derivative
    r_z: list[Array] = []
    r_a = None
    for l, (layer, dv) in enumerate(zip(params, v)):
        rz = cache.inputs[l] @ dv.w + dv.b[None, :]
        if r_a is not None:
            rz = rz + r_a @ layer.w
        r_z.append(rz)
        if l < len(params) - 1:
            r_a = dphi(cache.pre_activations[l]) * rz
    return r_z


def _loss_curvature_times(p: CurvaturePass, loss: str, r_f: Array) -> Array:
    """(B, out): ``c_n H_n R{f_n}``."""
    hessians = loss_hessian(loss)(p.cache.logits, p.y)  # (B, out, out)
    return jnp.einsum("bij,bj->bi", hessians, r_f) * p.scale[:, None]


def _compile(product):
    """`product` as one compiled program (cached per shape, names and the functions they stand for), its
    inputs checked first, their values too where they are concrete."""

    @functools.partial(jax.jit, static_argnames=("activation", "loss", "functions"))
    def compiled(params, x, y, v, sample_weight, *, activation, loss, functions):
        del functions  # part of the cache key only
        return product(params, x, y, v, activation, loss, sample_weight)

    @functools.wraps(product)
    def checked(params, x, y, v, *, activation, loss, sample_weight=None):
        check_direction(params, v)
        x, y, sample_weight, _ = check_problem(params, x, y, activation, loss, sample_weight)
        functions = (registered(activation), get_loss(loss))
        return compiled(params, x, y, v, sample_weight, activation=activation, loss=loss, functions=functions)

    return checked


def _ggn_vector_product(params: Params, x: Array, y: Array, v: Params, activation: str, loss: str, sample_weight):
    p = forward_pass(params, x, y, activation, loss, sample_weight)
    r_z = _r_forward(params, p.cache, v, activation)
    grads, _ = backward(params, p.cache, _loss_curvature_times(p, loss, r_z[-1]), activation, "batch")
    return grads


def _hessian_vector_product(params: Params, x: Array, y: Array, v: Params, activation: str, loss: str, sample_weight):
    p = forward_pass(params, x, y, activation, loss, sample_weight)
    dphi = get_activation(activation).derivative
    phi2 = second_derivative(activation) if len(params) > 1 else jnp.zeros_like  # no hidden layer: unused
    dlogits = scaled_grad_logits(get_loss(loss), p.cache.logits, p.y, p.sample_weight)  # as backprop's
    _, deltas = backward(params, p.cache, dlogits, activation, "batch")
    r_z = _r_forward(params, p.cache, v, activation)
    r_delta = _loss_curvature_times(p, loss, r_z[-1])
    products: list[Layer] = []
    for l in range(len(params) - 1, -1, -1):
        a, delta = p.cache.inputs[l], deltas[l]
        r_w = a.T @ r_delta
        if l > 0:
            z = p.cache.pre_activations[l - 1]
            r_a = dphi(z) * r_z[l - 1]
            r_w = r_w + r_a.T @ delta
        products.append(Layer(w=r_w, b=jnp.sum(r_delta, axis=0)))
        if l > 0:
            w, dw = params[l].w, v[l].w
            back = delta @ w.T  # (B, d_l)
            r_delta = (r_delta @ w.T + delta @ dw.T) * dphi(z) + back * phi2(z) * r_z[l - 1]
    return tuple(reversed(products))


def ggn_vector_product(
    params: Params,
    x: Array,
    y: Array,
    v: Params,
    *,
    activation: str,
    loss: str,
    sample_weight: Array | None = None,
) -> Params:
    """G v for the GGN ``G = sum_n c_n J_n^T H_n J_n`` of the loss and a params-shaped v."""
    return _ggn(params, x, y, v, activation=activation, loss=loss, sample_weight=sample_weight)


def hessian_vector_product(
    params: Params,
    x: Array,
    y: Array,
    v: Params,
    *,
    activation: str,
    loss: str,
    sample_weight: Array | None = None,
) -> Params:
    """H v for the Hessian ``d^2 L / d theta^2`` and a params-shaped v (needs phi'' of the activation
    and the loss's Hessian)."""
    return _hessian(params, x, y, v, activation=activation, loss=loss, sample_weight=sample_weight)


_ggn = _compile(_ggn_vector_product)
_hessian = _compile(_hessian_vector_product)
