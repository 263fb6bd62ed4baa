"""`check_gradients`: the hand-written backprop against `jax.grad`, central finite differences and, for
float32 and bfloat16 nets, a float64 run of the same net; and the ``mlp-jax gradcheck`` command.

Each comparison is of one leaf ``g`` (a layer's ``w`` or ``b``) against a reference ``r`` of it. The report
gives ``max|g - r|``, ``max|g - r| / max|r|``, the cosine similarity, the norms, and the error in units of
eps, which is what the tolerance applies to.

Tolerance rule. Rounding in a sum of K terms ``t_i`` is at most about ``K * eps * sum_i |t_i|``. So a
leaf's error is measured in units of eps times the size of the terms summed into it, taken from the
float64 run (``a_i``: example i's input to the layer, ``delta_i``: dL/dz of its output, by autodiff)::

    S = max_jk sum_i |a_i[j]| |delta_i[k]|  for w,   max_k sum_i |delta_i[k]|  for b
    err_eps = max|g - r| / (eps * S)

and a check passes when ``err_eps <= K_l``, where for layer ``l`` of a net with sizes ``d_0 .. d_L`` and
batch ``B``::

    K_l = (d_0 + ... + d_{L-1})      forward: the matmuls from the input to the logits
        + (d_{l+2} + ... + d_L)      backward: the ``delta @ W.T`` from the output down to layer l
        + B                          the sum over the batch in ``dW_l`` and ``db_l``
        + 16                         elementwise work (activation, loss, softmax), as a constant

(eps: 2.2e-16 float64, 1.2e-7 float32, 7.8e-3 bfloat16). Manual vs autodiff, two runs that both round,
may differ by ``2 * K_l``. Unlike an error relative to the gradient itself, ``err_eps`` does not blow up
where the sum over the batch cancels. Where the forward pass's rounding is amplified instead (near a
minimum, the loss gradient is a difference of nearly equal numbers), no gradient in the dtype meets the
rule; so against the float64 run and against finite differences, manual and autodiff each also pass
when no further from the reference than twice the other. The planted error of a wrong derivative is
then still caught, and jax.grad sets the bar. In bfloat16 ``K_l * eps`` is of the order of the gradient
itself: there the check catches only gross mistakes.

Finite differences are always evaluated in float64, on a float64 copy of the net, with the step for that
dtype, ``h = eps ** (1/3) * max(1, |theta|)`` (6e-6 * max(1, |theta|): it balances the ``h^2`` truncation
against the ``eps / h`` rounding). Comparisons with them are allowed, on top of the rule, their own error:
``64 * eps * |loss| / h`` for rounding, and 4 times the Richardson estimate of the truncation error,
``|D(2h) - D(h)| / 3``, from a second difference with step 2h (large where a probe straddles a kink).
A leaf with at most `fd_entries` entries is probed at every entry; a bigger one at `fd_entries` entries
drawn at random (``fd_mode="entries"``) or along `fd_entries` random unit directions
(``fd_mode="directions"``), seeded by `seed`; the report says which.

Requires JAX's 64-bit mode (``jax.config.update("jax_enable_x64", True)``, or a block in
``mlp_jax.core.x64.x64_mode(True)`` as the ``mlp-jax gradcheck`` command runs it).
"""

from __future__ import annotations

import functools
import itertools
import math
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mlp_jax.core.activations import get_activation
from mlp_jax.core.backprop import ManualPass, manual_pass
from mlp_jax.core.losses import get_loss, reduce, target_kind
from mlp_jax.core.model import loss as loss_fn
from mlp_jax.core.params import Layer, Params, layer_sizes
from mlp_jax.core.validation import check_problem
from mlp_jax.tools.finite_differences import FiniteDifferences, central_differences, fd_step, project
from mlp_jax.tools.gradcheck_report import LeafReport, NonFinite, Report, compare, either, ratio

Array = jax.Array

ELEMENTWISE_TERMS = 16  # the constant in K_l for the activation, loss and softmax
FD_ROUNDING = 64  # finite differences' rounding allowance: FD_ROUNDING * eps64 * |loss| / h
FD_SAFETY = 4  # finite differences' truncation allowance: FD_SAFETY * its Richardson estimate |D(2h) - D(h)| / 3
FD_MODES = ("entries", "directions")
DTYPES = {"float32": jnp.float32, "float64": jnp.float64, "bfloat16": jnp.bfloat16}
X64_MESSAGE = (
    "check_gradients evaluates finite differences and the reference in float64: call "
    'jax.config.update("jax_enable_x64", True) first'
)


# ----------------------------------------------------------------------------------------------------
# The gradients: manual and autodiff in the params' dtype, autodiff and finite differences in float64


@partial(jax.jit, static_argnames=("activation", "loss"))
def _manual_and_autodiff(params, x, y, sample_weight, *, activation, loss):
    """``(manual grads, autodiff grads, non-finite flags (Q,))`` in the params' dtype."""
    result = manual_pass(params, x, y, activation, loss, sample_weight)  # as backprop runs it
    autodiff = jax.grad(loss_fn)(params, x, y, activation, loss, sample_weight)
    return result.grads, autodiff, jnp.stack(_nonfinite_flags(result))


def _nonfinite_flags(result: ManualPass) -> list[Array]:
    """Whether each quantity of the manual pass holds a NaN or inf, in the order it is computed; named by
    `_trace_names`. A quantity cut in batch parts is flagged when any part is."""

    def flag(parts) -> Array:
        return functools.reduce(jnp.logical_or, [~jnp.all(jnp.isfinite(part)) for part in parts])

    caches, num_layers = result.caches, len(result.grads)
    hidden = [flag([getattr(c, q)[i] for c in caches]) for l in range(num_layers - 1) for q, i in _hidden(l)]
    output = [flag([c.logits for c in caches]), flag([result.value])]
    back = [
        flag(quantity)
        for l in reversed(range(num_layers))
        for quantity in ([d[l] for d in result.part_deltas], [result.grads[l].w], [result.grads[l].b])
    ]
    return hidden + output + back


def _hidden(l: int) -> tuple[tuple[str, int], ...]:
    """Where hidden layer l's z and activation are in a `ForwardCache`."""
    return ("pre_activations", l), ("inputs", l + 1)


def _trace_names(num_layers: int) -> list[NonFinite]:
    hidden = [NonFinite(l, q, "forward") for l in range(num_layers - 1) for q in ("z", "activation")]
    output = [NonFinite(num_layers - 1, "z", "forward"), NonFinite(num_layers - 1, "loss", "forward")]
    back = [NonFinite(l, q, "backward") for l in reversed(range(num_layers)) for q in ("delta", "dW", "db")]
    return hidden + output + back


@partial(jax.jit, static_argnames=("activation", "loss"))
def _reference(params, x, y, sample_weight, *, activation, loss):
    """The float64 run, by autodiff only: ``(loss value, grads, S of every leaf (params' structure))``."""
    spec, phi = get_loss(loss), get_activation(activation).fn

    def value_with_offsets(offsets):  # offsets[l] is added to z_l, so d value / d offsets[l] = delta_l
        a, inputs = x, []
        for l, layer in enumerate(params):
            inputs.append(a)
            z = a @ layer.w + layer.b[None, :] + offsets[l]
            a = phi(z) if l < len(params) - 1 else z
        return reduce(spec.per_example(a, y), sample_weight), inputs

    offsets = [jnp.zeros((x.shape[0], layer.w.shape[1]), x.dtype) for layer in params]
    (value, inputs), deltas = jax.value_and_grad(value_with_offsets, has_aux=True)(offsets)
    grads = jax.grad(loss_fn)(params, x, y, activation, loss, sample_weight)
    sizes = tuple(
        Layer(w=jnp.max(jnp.abs(a).T @ jnp.abs(d)), b=jnp.max(jnp.sum(jnp.abs(d), axis=0)))
        for a, d in zip(inputs, deltas)
    )
    return value, grads, sizes


# ----------------------------------------------------------------------------------------------------
# check_gradients


def sum_length(sizes, batch: int, layer: int) -> int:
    """K_l of the tolerance rule (see the module docstring); ``sizes = [d_0, ..., d_L]``."""
    num_layers = len(sizes) - 1
    return sum(sizes[:num_layers]) + sum(sizes[layer + 2 :]) + batch + ELEMENTWISE_TERMS


def check_gradients(
    params: Params,
    x: Array,
    y: Array,
    *,
    activation: str,
    loss: str,
    sample_weight: Array | None = None,
    fd_entries: int = 64,
    fd_mode: str = "entries",
    seed: int = 0,
) -> Report:
    """Compare `mlp_jax.core.backprop`, ``jax.grad(mlp_jax.loss)`` and central finite differences (and a
    float64 run of the same net for float32/bfloat16 params) on every leaf of every layer.

    `params` (any float dtype), `x` (batch, d_in), `y` and `sample_weight` (batch,) as for
    `mlp_jax.loss`. Tolerances, the finite-difference step and the probing of big leaves (`fd_entries`,
    `fd_mode`, `seed`) follow the rules in this module's docstring. Returns a `Report`: ``report.ok``,
    ``print(report)`` for the table, ``report.to_json()``. Raises RuntimeError unless
    ``jax_enable_x64`` is on.
    """
    _check_settings(fd_entries, fd_mode)
    x, y, sample_weight, dtype = check_problem(params, x, y, activation, loss, sample_weight)
    names = dict(activation=activation, loss=loss)
    manual, autodiff, nonfinite = _in_params_dtype(params, x, y, sample_weight, names)
    run64 = _in_float64(params, x, y, sample_weight, names, fd_entries, fd_mode, seed)
    grads = _HostGrads(_host(manual), _host(autodiff), _host(run64.grads))
    leaves = _leaf_reports(grads, run64, layer_sizes(params), x.shape[0], dtype)
    first_failing_layer, first_failure = _first_failure(leaves)
    return Report(
        sizes=tuple(layer_sizes(params)),
        batch=x.shape[0],
        dtype=jnp.dtype(dtype).name,
        activation=activation,
        loss=loss,
        loss_value=run64.value,
        eps=float(jnp.finfo(dtype).eps),
        fd_step=fd_step(jnp.float64),
        leaves=tuple(leaves),
        first_failing_layer=first_failing_layer,
        first_failure=first_failure,
        nonfinite=nonfinite,
        ok=first_failure is None and nonfinite is None,
    )


def _check_settings(fd_entries: int, fd_mode: str) -> None:
    if not jax.config.read("jax_enable_x64"):
        raise RuntimeError(X64_MESSAGE)
    if fd_mode not in FD_MODES:
        raise ValueError(f"fd_mode must be one of {list(FD_MODES)}, got {fd_mode!r}")
    if not (isinstance(fd_entries, int) and fd_entries >= 1):
        raise ValueError(f"fd_entries must be a positive integer, got {fd_entries!r}")


def _in_params_dtype(params, x, y, sample_weight, names: dict) -> tuple[Params, Params, NonFinite | None]:
    """The manual and the autodiff gradients in the params' dtype, and where the manual pass first holds a
    NaN or inf (None when nowhere)."""
    manual, autodiff, flags = _manual_and_autodiff(params, x, y, sample_weight, **names)
    flags = np.asarray(flags)
    nonfinite = _trace_names(len(params))[int(np.argmax(flags))] if flags.any() else None
    return manual, autodiff, nonfinite


class _Float64Run(NamedTuple):
    """The float64 run: the loss, autodiff's gradients, each leaf's S and its finite differences."""

    value: float
    grads: Params
    term_sizes: list[float]  # S of every leaf, in jax.tree.leaves(params) order
    fd: FiniteDifferences
    fd_rounding: float  # rounding in the loss difference, with the smallest step used (max(1, |theta|) >= 1)


def _in_float64(params, x, y, sample_weight, names: dict, fd_entries: int, fd_mode: str, seed: int) -> _Float64Run:
    """The reference and the finite differences, on a float64 copy of the net."""
    params64, x64, y64, weight64 = jax.tree.map(_to_float64, (params, x, y, sample_weight))
    value64, reference, term_sizes = _reference(params64, x64, y64, weight64, **names)
    fd = central_differences(params64, x64, y64, weight64, **names, fd_entries=fd_entries, fd_mode=fd_mode, seed=seed)
    return _Float64Run(
        value=float(value64),
        grads=reference,
        term_sizes=[float(s) for s in jax.tree.leaves(term_sizes)],
        fd=fd,
        fd_rounding=FD_ROUNDING * np.finfo(np.float64).eps * abs(float(value64)) / fd_step(jnp.float64),
    )


def _to_float64(a: Array) -> Array:
    return a.astype(jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a


class _HostGrads(NamedTuple):
    """Every gradient leaf on the host in float64, in ``jax.tree.leaves(params)`` order."""

    manual: list[np.ndarray]
    autodiff: list[np.ndarray]
    float64: list[np.ndarray]


def _host(tree) -> list[np.ndarray]:
    return [np.asarray(leaf, np.float64) for leaf in jax.tree.leaves(tree)]


def _leaf_reports(grads: _HostGrads, run64: _Float64Run, sizes: list[int], batch: int, dtype) -> list[LeafReport]:
    """Every leaf's comparisons, from the output layer backwards, w then b."""
    return [
        _leaf_report(grads, run64, 2 * layer + i, layer, name, sum_length(sizes, batch, layer), dtype)
        for layer in reversed(range(len(sizes) - 1))
        for i, name in enumerate(Layer._fields)
    ]


def _first_failure(leaves: list[LeafReport]) -> tuple[int | None, str | None]:
    """The layer of the first failing leaf from the output backwards, and its first failing check."""
    first = next((leaf for leaf in leaves if not leaf.ok), None)
    if first is None:
        return None, None
    check, c = next((n, c) for n, c in first.checks.items() if not c.ok)
    return (
        first.layer,
        f"layer {first.layer} {first.leaf}: {check} error {c.eps_units:.3g} eps > tolerance {c.tolerance:.3g}",
    )


def _leaf_report(grads: _HostGrads, run64: _Float64Run, j: int, layer: int, name: str, k: int, dtype) -> LeafReport:
    """Every comparison of leaf `j` (in ``jax.tree.leaves(params)`` order) under the tolerance rule."""
    eps, tiny = float(jnp.finfo(dtype).eps), float(jnp.finfo(dtype).tiny)
    term_size = max(run64.term_sizes[j], tiny / eps)  # below tiny / eps the dtype holds no relative precision
    manual, autodiff, exact = grads.manual[j], grads.autodiff[j], grads.float64[j]
    cmp = partial(compare, eps=eps, term_size=term_size)
    checks = {"manual vs autodiff": cmp(manual, autodiff, tolerance=2 * k)}
    closer = None
    if jnp.dtype(dtype) != jnp.float64:
        pair = either(cmp(manual, exact, tolerance=k), cmp(autodiff, exact, tolerance=k))
        checks["manual vs float64"], checks["autodiff vs float64"] = pair
        errors = pair[0].max_abs, pair[1].max_abs
        closer = "tie" if errors[0] == errors[1] else "manual" if errors[0] < errors[1] else "autodiff"

    # Against finite differences. A probe is an entry, or a unit direction v with |v . err| <= |v|_1 max|err|.
    probe, (d_h, d_2h) = run64.fd.probes[j], run64.fd.values[j].T
    spread = 1.0 if probe.ndim == 1 else float(np.max(np.abs(probe).reshape(len(probe), -1).sum(axis=1)))
    fd_error = run64.fd_rounding + FD_SAFETY * float(np.max(np.abs(d_2h - d_h), initial=0.0)) / 3  # Richardson
    fd_size = term_size * spread
    cmp = partial(compare, eps=eps, term_size=fd_size, tolerance=k + ratio(fd_error, eps * fd_size))
    pair = either(cmp(project(manual, probe), d_h), cmp(project(autodiff, probe), d_h))
    checks["manual vs fd"], checks["autodiff vs fd"] = pair
    ok = all(c.ok for c in checks.values())
    return LeafReport(layer, name, tuple(manual.shape), k, run64.term_sizes[j], checks, closer, run64.fd.how[j], ok)


def random_problem(sizes: list[int], batch: int, loss: str, dtype, seed: int) -> tuple[Params, Array, Array]:
    """He-normal weights, biases ``0.1 * normal`` (so every gradient term is exercised), x normal
    (batch, d_0) and targets of the loss's kind: labels, normal (mse) or uniform in [0, 1]. Drawn with
    numpy in float64 and cast to `dtype`, so a seed gives the same net in every dtype (up to rounding)."""
    rng = np.random.default_rng(seed)
    params = tuple(
        Layer(
            w=jnp.asarray(rng.standard_normal((d_in, d_out)) * math.sqrt(2.0 / d_in), dtype),
            b=jnp.asarray(0.1 * rng.standard_normal(d_out), dtype),
        )
        for d_in, d_out in itertools.pairwise(sizes)
    )
    x = jnp.asarray(rng.standard_normal((batch, sizes[0])), dtype)
    out = sizes[-1]
    if target_kind(loss) == "labels":
        y = jnp.asarray(rng.integers(0, out, size=batch), jnp.int32)
    elif loss == "mse":
        y = jnp.asarray(rng.standard_normal((batch, out)), dtype)
    else:
        y = jnp.asarray(rng.uniform(0.0, 1.0, (batch, out)), dtype)
    return params, x, y
