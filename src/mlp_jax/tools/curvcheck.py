"""Checking the curvature quantities against autodiff: each one, per layer and leaf, in the params'
dtype, against a float64 reference built from ``jax.hessian`` of the loss, ``jax.jacrev`` of the logits
and ``jax.hessian`` of each example's loss in its logits, on a flat parameter vector.

Error unit: ``err_eps = max|q - r| / (eps * max|r|)``, eps of the params' dtype. Tolerance: a quantity
is a sum over the batch of products along the net, so rounding reaches it through about
``K = batch * (sum of the widths)`` terms; a check passes when ``err_eps <= 4 K`` (4 for the two
runs that round, and products of two rounded factors).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from mlp_jax.core.backprop import forward_with_cache
from mlp_jax.core.losses import get_loss
from mlp_jax.core.model import forward
from mlp_jax.core.model import loss as mean_loss
from mlp_jax.core.params import Layer, Params, layer_sizes
from mlp_jax.core.validation import check_problem
from mlp_jax.tools.curvature import backprop_with
from mlp_jax.tools.curvature_products import ggn_vector_product, hessian_vector_product

EXTRAS = ("diag_ggn", "batch_diag_ggn", "diag_hessian", "kfac_factors", "sum_grad_squared", "grad_variance")


@dataclass(frozen=True)
class CurvatureCheck:
    quantity: str
    layer: int
    leaf: str  # "w", "b" (or "a", "g" for kfac_factors, "norms" for per_example_grad_norms)
    shape: tuple[int, ...]
    max_rel: float  # max|q - r| / max|r|
    eps_units: float  # max|q - r| / (eps max|r|)
    tolerance: float  # on eps_units
    ok: bool


@dataclass(frozen=True)
class CurvatureReport:
    sizes: tuple[int, ...]
    batch: int
    dtype: str
    activation: str
    loss: str
    eps: float
    checks: tuple[CurvatureCheck, ...]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def table(self) -> str:
        head = (
            f"curvcheck: sizes {list(self.sizes)}, batch {self.batch}, {self.dtype}, {self.activation}, {self.loss}\n"
            f"{'quantity':<24} {'layer':>5} {'leaf':<5} {'shape':<14} {'max rel':>9} {'eps units':>10} "
            f"{'tolerance':>10}  ok"
        )
        rows = [
            f"{c.quantity:<24} {c.layer:>5} {c.leaf:<5} {c.shape!s:<14} {c.max_rel:>9.2e} {c.eps_units:>10.3g} "
            f"{c.tolerance:>10.3g}  {'yes' if c.ok else 'NO'}"
            for c in self.checks
        ]
        verdict = "all checks pass" if self.ok else f"{sum(not c.ok for c in self.checks)} checks FAIL"
        return "\n".join([head, *rows, verdict])

    def to_json(self) -> str:
        return json.dumps({**dataclasses.asdict(self), "ok": self.ok}, indent=2)


@functools.partial(jax.jit, static_argnames=("activation", "loss"))
def _references(params64: Params, x, y, activation: str, loss: str, v64) -> dict[str, Any]:
    """Float64 autodiff references of every quantity (flat over params, or per layer for K-FAC), compiled as
    one program: op by op, the references' hundreds of small kernels each took a compilation."""
    theta, unravel = ravel_pytree(params64)
    spec = get_loss(loss)
    total = lambda t: mean_loss(unravel(t), x, y, activation=activation, loss=loss)
    jac = jax.jacrev(lambda t: forward(unravel(t), x, activation=activation))(theta)  # (B, out, P)
    logits = forward(params64, x, activation=activation)
    loss_h = jax.vmap(jax.hessian(lambda f, t: spec.per_example(f[None], t[None])[0]))(logits, y)
    batch = x.shape[0]
    c = jnp.full((batch,), 1.0 / batch)
    ggn = jnp.einsum("n,ncp,ncd,ndq->pq", c, jac, loss_h, jac)
    hessian = jax.hessian(total)(theta)

    def one(xi, yi):
        grad = jax.grad(lambda t: mean_loss(unravel(t), xi[None], yi[None], activation=activation, loss=loss))
        return grad(theta)

    per = jax.vmap(one)(x, y)  # (B, P)
    grad = jnp.mean(per, axis=0)
    inputs = forward_with_cache(params64, x, activation).inputs
    starts = np.cumsum([0] + [layer.w.size + layer.b.size for layer in params64])
    bias = [slice(int(s) + layer.w.size, int(s) + layer.w.size + layer.b.size) for s, layer in zip(starts, params64)]
    return {
        "diag_ggn": unravel(jnp.diag(ggn)),
        "batch_diag_ggn": jax.vmap(unravel)(jnp.einsum("n,ncp,ncd,ndp->np", c, jac, loss_h, jac)),
        "diag_hessian": unravel(jnp.diag(hessian)),
        "kfac_factors": tuple({"a": jnp.einsum("n,ni,nj->ij", c, a, a), "g": ggn[s, s]} for a, s in zip(inputs, bias)),
        "sum_grad_squared": unravel(jnp.sum((per / batch) ** 2, axis=0)),
        "grad_variance": unravel(jnp.mean((per - grad[None, :]) ** 2, axis=0)),
        "per_example_grad_norms": jnp.linalg.norm(per, axis=1),
        "ggn_vector_product": unravel(ggn @ ravel_pytree(v64)[0]),
        "hessian_vector_product": unravel(hessian @ ravel_pytree(v64)[0]),
    }


def _leaves(value: Any) -> list[tuple[int, str, Any]]:
    """(layer, leaf name, array) of a quantity's value."""
    if isinstance(value, jax.Array):
        return [(-1, "norms", value)]
    out: list[tuple[int, str, Any]] = []
    for layer, item in enumerate(value):
        pairs = item.items() if isinstance(item, dict) else item._asdict().items()
        out.extend((layer, name, leaf) for name, leaf in pairs)
    return out


@functools.partial(jax.jit, static_argnames=("activation", "loss"))
def _quantities(params: Params, x, y, v: Params, activation: str, loss: str) -> dict[str, Any]:
    """Every quantity from the hand-written passes, compiled as one program."""
    _, _, got = backprop_with(
        params, x, y, activation=activation, loss=loss, extras=(*EXTRAS, "per_example_grad_norms")
    )
    got["ggn_vector_product"] = ggn_vector_product(params, x, y, v, activation=activation, loss=loss)
    got["hessian_vector_product"] = hessian_vector_product(params, x, y, v, activation=activation, loss=loss)
    return got


def check_curvature(params: Params, x, y, *, activation: str, loss: str, seed: int = 0) -> CurvatureReport:
    """Every curvature quantity of `params` on ``(x, y)`` (no sample weights) against float64 autodiff.
    Needs JAX's 64-bit mode on (the reference is float64)."""
    if not jax.config.read("jax_enable_x64"):
        raise ValueError("check_curvature builds a float64 reference: turn on jax_enable_x64 (or use x64_mode(True))")
    dtype = jnp.dtype(params[0].w.dtype)
    rng = np.random.default_rng(seed)
    v = tuple(Layer(*(jnp.asarray(rng.standard_normal(leaf.shape), dtype) for leaf in layer)) for layer in params)
    check_problem(params, x, y, activation, loss)  # the values, before they become a jitted call's tracers
    got = _quantities(params, x, y, v, activation=activation, loss=loss)
    to64 = lambda tree: jax.tree.map(lambda a: jnp.asarray(a, jnp.float64) if a.dtype == dtype else a, tree)
    ref = _references(to64(params), to64(x), to64(y), activation, loss, to64(v))
    eps = float(jnp.finfo(dtype).eps)
    sizes = layer_sizes(params)
    tolerance = 4.0 * x.shape[0] * sum(sizes)
    checks = []
    for name, value in got.items():
        for (layer, leaf, q), (_, _, r) in zip(_leaves(value), _leaves(ref[name])):
            q64, r64 = np.asarray(q, np.float64), np.asarray(r, np.float64)
            scale = float(np.max(np.abs(r64))) if r64.size else 0.0
            err = float(np.max(np.abs(q64 - r64))) if r64.size else 0.0
            rel = err / scale if scale > 0 else err
            units = rel / eps
            checks.append(
                CurvatureCheck(name, layer, leaf, tuple(q64.shape), rel, units, tolerance, units <= tolerance)
            )
    return CurvatureReport(tuple(sizes), int(x.shape[0]), dtype.name, activation, loss, eps, tuple(checks))
