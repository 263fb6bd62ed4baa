"""The matmul peaks the bench measures its steps against: a jitted ``jnp.dot``'s best FLOP/s over a few
shapes (`jnp_dot_peak`), and the large config's step timed side by side with ``jnp.dot`` and with its own
matmuls alone (`side_by_side_peak`, using `step_matmuls` to find them)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from mlp_jax.bench.configs import Config, copy_tree, make_problem, matmul_flops, x64_for
from mlp_jax.bench.timing import INSTANCES, Case, calibrate, compare, sample

PEAK_SHAPES = ((1024, 1024, 1024), (2048, 2048, 2048), (4096, 1024, 1024))  # (m, k, n); the last is `large`'s
ACCELERATOR_PEAK_SHAPES = ((8192, 8192, 8192),)  # a GPU needs this much work per matmul to near its peak


def peak_shapes_for(platform: str, quick: bool = False) -> tuple[tuple[int, int, int], ...]:
    """The matmul shapes whose best FLOP/s is the peak on `platform` (``jax.default_backend()``)."""
    shapes = PEAK_SHAPES[::2] if quick else PEAK_SHAPES
    return shapes if platform == "cpu" else shapes + ACCELERATOR_PEAK_SHAPES


def _dot_operands(m: int, k: int, n: int, dtype):
    """Random (m, k) and (k, n) matrices of `dtype`, the same in every measurement of that shape."""
    import jax
    import jax.numpy as jnp

    return (
        jax.random.normal(jax.random.key(1), (m, k), jnp.float32).astype(dtype),
        jax.random.normal(jax.random.key(2), (k, n), jnp.float32).astype(dtype),
    )


def jnp_dot_peak(
    dtypes: Sequence[str], *, min_sample: float, repeats: int, shapes: Sequence[tuple[int, int, int]] = PEAK_SHAPES
) -> dict[str, Any]:
    """The best FLOP/s of a jitted ``jnp.dot`` over a few square and MLP-shaped matmuls, per dtype."""
    import jax
    import jax.numpy as jnp

    out = {}
    for name in dtypes:
        best, per_shape = 0.0, {}
        with x64_for(name):
            dtype = jnp.dtype(name)
            for m, k, n in shapes:
                case = Case(jax.jit(jnp.dot), _dot_operands(m, k, n, dtype))
                case.first()
                inner = calibrate(case.call, min_sample)
                seconds = min(sample(case.call, inner) for _ in range(repeats))
                per_shape[f"{m}x{k}x{n}"] = 2 * m * k * n / seconds / 1e9
                best = max(best, per_shape[f"{m}x{k}x{n}"])
        out[name] = {"gflops_per_s": best, "per_shape": per_shape}
    return out


class Matmul(NamedTuple):
    """One ``dot_general`` of a traced function: its operands' shapes and dtypes, how it contracts, and
    its precision and output type."""

    lhs: Any  # jax.ShapeDtypeStruct
    rhs: Any
    dimension_numbers: Any
    precision: Any
    preferred_element_type: Any
    flops: int


def _matmul_of(eqn) -> Matmul:
    """The `Matmul` of one ``dot_general`` equation of a jaxpr."""
    import jax

    lhs, rhs = (jax.ShapeDtypeStruct(v.aval.shape, v.aval.dtype) for v in eqn.invars)
    (contract, _), _ = eqn.params["dimension_numbers"]
    k = math.prod(lhs.shape[d] for d in contract)
    return Matmul(
        lhs,
        rhs,
        eqn.params["dimension_numbers"],
        eqn.params.get("precision"),
        eqn.params.get("preferred_element_type"),
        2 * k * math.prod(eqn.outvars[0].aval.shape),
    )


def step_matmuls(fn: Callable, *args) -> list[Matmul]:
    """Every ``dot_general`` in the jaxpr of ``fn(*args)``, nested jaxprs included, in order. Each appears
    once as written: a loop body's once, whatever its trip count, and every branch of a ``cond``."""
    import jax

    found: list[Matmul] = []

    def walk(jaxpr) -> None:
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "dot_general":
                found.append(_matmul_of(eqn))
            for value in eqn.params.values():
                for sub in value if isinstance(value, (tuple, list)) else (value,):
                    inner = getattr(sub, "jaxpr", sub)  # a ClosedJaxpr holds a Jaxpr
                    if hasattr(inner, "eqns"):
                        walk(inner)

    walk(jax.make_jaxpr(fn)(*args).jaxpr)
    return found


def _matmuls_alone(matmuls: Sequence[Matmul]) -> tuple[Callable, tuple]:
    """A jitted function doing just `matmuls` (nothing between them), and random operands for it. The
    matmuls do not depend on each other, so XLA may run two at once, as it does in the step where they
    are independent (a weight gradient beside the next delta, one batch part beside another)."""
    import jax
    from jax import lax

    keys = iter(jax.random.split(jax.random.key(3), 2 * len(matmuls)))
    operands = tuple(
        (
            jax.random.normal(next(keys), m.lhs.shape, "float32").astype(m.lhs.dtype),
            jax.random.normal(next(keys), m.rhs.shape, "float32").astype(m.rhs.dtype),
        )
        for m in matmuls
    )

    def run(operands):
        return [
            lax.dot_general(a, b, m.dimension_numbers, m.precision, preferred_element_type=m.preferred_element_type)
            for m, (a, b) in zip(matmuls, operands)
        ]

    return jax.jit(run), (operands,)


def side_by_side_peak(
    config: Config, *, repeats: int, min_sample: float, shapes: Sequence[tuple[int, int, int]] = PEAK_SHAPES
) -> dict[str, Any]:
    """The manual sgd step of `config`, the step's own matmuls alone (the same shapes and contractions,
    nothing between them) and a jitted ``jnp.dot`` on each of `shapes`, timed alternately (`compare`,
    two instances each): the step's FLOP/s over the best dot's, all medians of samples taken side by
    side. The run's peak (`jnp_dot_peak`) is the fastest sample at the start or the end of the run,
    minutes away from the step, and on a shared machine the peak moves over minutes. The matmuls alone
    split the gap: how fast the step's matmul shapes can go, and what the rest of the step costs."""
    import jax
    import jax.numpy as jnp
    import optax

    from mlp_jax.training.steps import make_update

    params, x, y = make_problem(config)
    dtype = jnp.dtype(config.dtype)
    optimizer = optax.sgd(0.01)
    updates = [make_update(optimizer, grad="manual", activation="relu", loss=config.loss) for _ in range(INSTANCES)]
    matmuls = step_matmuls(updates[0], params, optimizer.init(params), x, y)  # the very step timed
    cases = {
        "step": [
            Case(update, (p, optimizer.init(p), x, y), carry=2)
            for update, p in zip(updates, (copy_tree(params) for _ in updates))
        ],
        "matmuls": [Case(*_matmuls_alone(matmuls)) for _ in range(INSTANCES)],
    }
    dot_flops = {f"{m}x{k}x{n}": 2 * m * k * n for m, k, n in shapes}
    for (m, k, n), name in zip(shapes, dot_flops):
        cases[name] = [Case(jax.jit(jnp.dot), _dot_operands(m, k, n, dtype)) for _ in range(INSTANCES)]
    timed = compare(cases, repeats, min_sample)
    median = {name: timed[name]["step_s"]["median"] for name in cases}
    step = matmul_flops(config.sizes, config.batch)["step"] / median["step"] / 1e9
    dots = {name: flops / median[name] / 1e9 for name, flops in dot_flops.items()}
    alone = sum(m.flops for m in matmuls) / median["matmuls"] / 1e9
    return {
        "config": config.name,
        "dtype": config.dtype,
        "step_gflops_per_s": step,
        "jnp_dot_gflops_per_s": dots,
        "fraction_of_jnp_dot": step / max(dots.values()),
        "step_s": median["step"],
        "matmuls_alone_s": median["matmuls"],
        "matmul_count": len(matmuls),
        "matmuls_alone_gflops_per_s": alone,
        "matmuls_alone_fraction_of_jnp_dot": alone / max(dots.values()),
        "step_over_matmuls_alone": median["step"] / median["matmuls"],
    }
