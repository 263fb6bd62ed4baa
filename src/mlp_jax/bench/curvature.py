"""The curvature stage of `mlp-jax bench`: what each of mlp-jax's curvature quantities costs, against one
plain gradient, against the best autodiff formulation of the same quantity, and against BackPACK.

Per config and quantity, in this process: the quantity (`mlp_jax`'s function, jitted), one plain manual
gradient (`mlp_jax.backprop`, jitted) and the autodiff formulation (`mlp_jax.bench.curvature_autodiff`,
jitted) timed alternately (`mlp_jax.bench.timing.compare`), so the ratios to the gradient and to autodiff
come from samples taken side by side. BackPACK runs in its own process (``workers/backpack_peer.py``) on
the same net, batch, dtype and weights (written to an .npz file for it), timing its own plain
``loss.backward()`` alongside each quantity. Two autodiff formulations are too slow to run whole and are
timed on a part and scaled (the entry says so under ``autodiff_scaled``): the Hessian diagonal, one call of
`DIAG_H_COLUMNS` basis vectors times ceil(P / columns); and on a config whose per-example gradients
exceed `AUTODIFF_PER_EXAMPLE_BYTES`, the per-example (vmap of grad) formulations on the first m examples,
times B / m.

The goals, reported and not asserted: every quantity faster than BackPACK's and not slower than
autodiff's; the first-order ones <= 1.3 gradients, the MC GGN diagonal and MC KFAC <= 2, the exact ones
<= C / 2 + 1 for C outputs (the vector products have no gradient-ratio goal).
"""

from __future__ import annotations

import importlib.util
import math
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mlp_jax.bench import curvature_autodiff as ad
from mlp_jax.bench.configs import Config, make_problem, x64_for
from mlp_jax.bench.peers import BENCH_EXTRA, run_worker
from mlp_jax.bench.timing import Case, compare

FIRST_ORDER = ("sum_grad_squared", "grad_variance", "per_example_grad_norms")
# quantity -> its goal class; in report order
QUANTITIES = {
    "sum_grad_squared": "first_order",
    "grad_variance": "first_order",
    "per_example_grad_norms": "first_order",
    "backprop_with_first_order": "first_order",
    "diag_ggn_mc": "mc",
    "kfac_mc": "mc",
    "diag_ggn_exact": "exact",
    "batch_diag_ggn_exact": "exact",
    "kfac_exact": "exact",
    "diag_hessian": "exact",
    "ggn_vector_product": "vector_product",
    "hessian_vector_product": "vector_product",
}
LARGE_QUANTITIES = (*FIRST_ORDER, "backprop_with_first_order", "diag_ggn_mc", "kfac_mc")  # on "large"
AUTODIFF_FORMULATIONS = {
    "first_order": "jax.vmap(jax.grad) of each example's loss, in chunks of examples (lax.map)",
    "ggn": "jax.vmap of jax.vjp to the pre-activations over the C unit columns of the logits, the loss "
    "Hessian (jax.hessian per example) applied, squares/outer products by einsum",
    "ggn_mc": "jax.vmap of jax.vjp to the pre-activations over the sampled loss gradients, squares/outer "
    "products by einsum",
    "diag_hessian": "jax.vmap of the Hessian-vector product (jax.jvp of jax.grad) over basis vectors",
    "ggn_vector_product": "jax.linearize of the logits, jax.jvp of jax.grad of the loss in the logits, "
    "jax.linear_transpose",
    "hessian_vector_product": "jax.jvp of jax.grad (forward over reverse)",
}
AUTODIFF_PER_EXAMPLE_BYTES = 2**33  # per-example gradients beyond this: the vmap(grad) ones run on a part


def goal_ratio(quantity: str, outputs: int) -> float | None:
    """The most gradients `quantity` may cost by the goals (None: no such goal)."""
    return {"first_order": 1.3, "mc": 2.0, "exact": outputs / 2 + 1}.get(QUANTITIES[quantity])


def formulation(quantity: str) -> str:
    """Which autodiff formulation the stage times for `quantity`."""
    if QUANTITIES[quantity] == "first_order":
        return AUTODIFF_FORMULATIONS["first_order"]
    if quantity in ("diag_ggn_mc", "kfac_mc"):
        return AUTODIFF_FORMULATIONS["ggn_mc"]
    if quantity in ("diag_ggn_exact", "batch_diag_ggn_exact", "kfac_exact"):
        return AUTODIFF_FORMULATIONS["ggn"]
    return AUTODIFF_FORMULATIONS[quantity]


class _Functions:
    """mlp-jax's public functions looked up by name when called, so that the stage names any that is
    missing (an older mlp-jax) in its entry instead of failing to import."""

    def __init__(self, module):
        self._module = module

    def __getattr__(self, name: str) -> Callable:
        fn = getattr(self._module, name, None)
        if fn is None:
            raise AttributeError(f"mlp_jax has no {name}")
        return fn


def _mlp_jax_fn(quantity: str, activation: str, loss: str) -> Callable:
    """``fn(params, x, y, key, v)``: mlp-jax's own function for `quantity`."""
    import mlp_jax

    mj = _Functions(mlp_jax)
    kw: dict[str, Any] = {"activation": activation, "loss": loss}
    method = {"method": "mc" if quantity.endswith("_mc") else "exact"}
    table: dict[str, Callable] = {
        "diag_ggn_exact": lambda p, x, y, k, v: mj.diag_ggn(p, x, y, **kw, **method),
        "diag_ggn_mc": lambda p, x, y, k, v: mj.diag_ggn(p, x, y, **kw, **method, key=k),
        "batch_diag_ggn_exact": lambda p, x, y, k, v: mj.batch_diag_ggn(p, x, y, **kw, **method),
        "kfac_exact": lambda p, x, y, k, v: mj.kfac_factors(p, x, y, **kw, **method),
        "kfac_mc": lambda p, x, y, k, v: mj.kfac_factors(p, x, y, **kw, **method, key=k),
        "diag_hessian": lambda p, x, y, k, v: mj.diag_hessian(p, x, y, **kw),
        "ggn_vector_product": lambda p, x, y, k, v: mj.ggn_vector_product(p, x, y, v, **kw),
        "hessian_vector_product": lambda p, x, y, k, v: mj.hessian_vector_product(p, x, y, v, **kw),
        "backprop_with_first_order": lambda p, x, y, k, v: mj.backprop_with(p, x, y, **kw, extras=FIRST_ORDER),
    }
    if quantity in FIRST_ORDER:
        return lambda p, x, y, k, v: getattr(mj, quantity)(p, x, y, **kw)
    return table[quantity]


def _autodiff_fn(quantity: str, activation: str, loss: str, part: int | None) -> Callable:
    """``fn(params, x, y, key, v)``: the autodiff formulation of `quantity`; a per-example one on the
    first `part` examples when `part` is given, the Hessian diagonal one call of its basis vectors."""
    kw: dict[str, Any] = {"activation": activation, "loss": loss}
    if QUANTITIES[quantity] == "first_order":
        fn = ad.first_order if quantity == "backprop_with_first_order" else getattr(ad, quantity)
        return lambda p, x, y, k, v: fn(p, x[:part], y[:part], **kw)
    if quantity == "diag_hessian":
        return lambda p, x, y, k, v: ad.diag_hessian_chunk(p, x, y, 0, **kw)
    if quantity in ("ggn_vector_product", "hessian_vector_product"):
        return lambda p, x, y, k, v: getattr(ad, quantity)(p, x, y, v, **kw)
    base = quantity.removesuffix("_exact").removesuffix("_mc")
    fn = {"diag_ggn": ad.diag_ggn, "batch_diag_ggn": ad.batch_diag_ggn, "kfac": ad.kfac_factors}[base]
    if quantity.endswith("_mc"):
        return lambda p, x, y, k, v: fn(p, x, y, **kw, method="mc", key=k)
    return lambda p, x, y, k, v: fn(p, x, y, **kw, method="exact")


def _autodiff_scale(quantity: str, config: Config, params) -> tuple[int | None, dict[str, Any] | None]:
    """(the examples a per-example formulation runs on, or None for all; how the timed part scales to
    the whole, or None when it is the whole)."""
    import jax

    size = sum(leaf.size for leaf in jax.tree.leaves(params))
    if quantity == "diag_hessian":
        calls = math.ceil(size / ad.DIAG_H_COLUMNS)
        return None, {"timed": f"{ad.DIAG_H_COLUMNS} of {size} basis vectors", "factor": calls}
    per_example = size * jax.numpy.dtype(config.dtype).itemsize
    if QUANTITIES[quantity] != "first_order" or config.batch * per_example <= AUTODIFF_PER_EXAMPLE_BYTES:
        return None, None
    part = max(1, AUTODIFF_PER_EXAMPLE_BYTES // per_example)
    part = max(d for d in range(1, part + 1) if config.batch % d == 0)
    return part, {"timed": f"{part} of {config.batch} examples", "factor": config.batch / part}


def time_quantity(
    config: Config, quantity: str, problem: tuple, *, activation: str, repeats: int, min_sample: float
) -> dict[str, Any]:
    """mlp-jax's `quantity`, one manual gradient and the autodiff formulation timed alternately on
    `problem` = (params, x, y, key, v); the two ratios of medians (autodiff scaled where it ran on a part)."""
    import jax

    import mlp_jax as mj

    params = problem[0]
    part, scaled = _autodiff_scale(quantity, config, params)
    grad = jax.jit(lambda p, x, y, k, v: mj.backprop(p, x, y, activation, config.loss))
    fns = {
        "gradient": grad,
        "mlp_jax": jax.jit(_mlp_jax_fn(quantity, activation, config.loss)),
        "autodiff": jax.jit(_autodiff_fn(quantity, activation, config.loss, part)),
    }
    timed = compare({name: [Case(fn, problem)] for name, fn in fns.items()}, repeats, min_sample)
    medians = {name: timed[name]["step_s"]["median"] for name in fns}
    autodiff_s = medians["autodiff"] * (scaled["factor"] if scaled else 1)
    entry: dict[str, Any] = {
        name: {k: timed[name][k] for k in ("step_s", "compile_s", "calls_per_sample")} for name in fns
    }
    entry.update(
        autodiff_formulation=formulation(quantity),
        autodiff_scaled=scaled,
        autodiff_s=autodiff_s,
        ratio_to_gradient=medians["mlp_jax"] / medians["gradient"],
        autodiff_ratio_to_gradient=autodiff_s / medians["gradient"],
        ratio_to_autodiff=medians["mlp_jax"] / autodiff_s,
    )
    return entry


def _problem(config: Config):
    """(params, x, y, key, v): the config's problem (`make_problem`), an MC key and a params-shaped v."""
    import jax

    params, x, y = make_problem(config)
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(7), len(leaves))
    v = jax.tree.unflatten(tree, [jax.random.normal(k, leaf.shape, leaf.dtype) for k, leaf in zip(keys, leaves)])
    return params, x, y, jax.random.key(3), v


def _write_problem(path: Path, problem: tuple) -> None:
    """The net, batch and v as .npz for the BackPACK worker (``w{l}`` (d_in, d_out), ``b{l}``, ``x``, ``y``,
    ``v{l}_w``, ``v{l}_b``)."""
    import numpy as np

    params, x, y, _, v = problem
    arrays: dict[str, Any] = {"x": np.asarray(x), "y": np.asarray(y)}
    for l, (layer, vl) in enumerate(zip(params, v)):
        arrays.update({f"w{l}": layer.w, f"b{l}": layer.b, f"v{l}_w": vl.w, f"v{l}_b": vl.b})
    with path.open("wb") as file:  # savez's own keywords would clash with ours in its signature
        np.savez(file, allow_pickle=False, **{k: np.asarray(a) for k, a in arrays.items()})


def quantities_for(config: Config) -> tuple[str, ...]:
    """The quantities timed on `config`: on "large" the first-order and MC ones, elsewhere all."""
    return LARGE_QUANTITIES if config.name == "large" else tuple(QUANTITIES)


def backpack_times(
    config: Config,
    problem: tuple,
    quantities: Sequence[str],
    *,
    activation: str,
    repeats: int,
    min_sample: float,
    device: str,
) -> dict[str, Any]:
    """BackPACK's seconds per call of each quantity and of its own plain gradient on the same problem
    (``workers/backpack_peer.py`` in its own process); an ``error`` or ``skipped`` entry where it failed."""
    missing = [name for name in ("torch", "backpack") if importlib.util.find_spec(name) is None]
    if missing:
        return {"skipped": f"{' and '.join(missing)} not installed ({BENCH_EXTRA} installs backpack-for-pytorch)"}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "problem.npz"
        _write_problem(path, problem)
        request = {
            "mode": "time",
            "problem": str(path),
            "dtype": config.dtype,
            "activation": activation,
            "loss": config.loss,
            "quantities": list(quantities),
            "repeats": repeats,
            "min_sample": min_sample,
            "device": device,
        }
        return run_worker("backpack_peer.py", request, timeout=1800)


def _goals(entry: dict[str, Any], quantity: str, outputs: int) -> dict[str, Any]:
    """The three goals of one quantity on one config, each with whether it is met (None: not measured)."""
    limit = goal_ratio(quantity, outputs)
    ratio, to_backpack = entry.get("ratio_to_gradient"), entry.get("ratio_to_backpack")
    met = {
        "gradient_ratio": None if limit is None or ratio is None else ratio <= limit,
        "not_slower_than_autodiff": None if "ratio_to_autodiff" not in entry else entry["ratio_to_autodiff"] <= 1,
        "faster_than_backpack": None if to_backpack is None else to_backpack < 1,
    }
    measured = [v for v in met.values() if v is not None]
    return {"gradient_ratio_max": limit, "met": met, "all_met": all(measured) if measured else None}


def curvature_config(
    config: Config,
    *,
    activation: str,
    repeats: int,
    min_sample: float,
    backpack: bool,
    device: str,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Every quantity of `quantities_for(config)` timed here (`time_quantity`) and in BackPACK, with the
    ratios and the goals; a quantity that failed keeps its error."""
    problem = _problem(config)
    outputs = config.sizes[-1]
    result: dict[str, Any] = {"config": config._asdict(), "quantities": {}}
    for quantity in quantities_for(config):
        log(f"curvature {config.name}: {quantity}")
        try:
            entry = time_quantity(
                config, quantity, problem, activation=activation, repeats=repeats, min_sample=min_sample
            )
        except Exception as error:  # one quantity's failure (a missing function, memory) keeps the others
            entry = {"error": f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"}
        result["quantities"][quantity] = entry
    if backpack:
        log(f"curvature {config.name}: BackPACK")
        peer = backpack_times(
            config,
            problem,
            quantities_for(config),
            activation=activation,
            repeats=repeats,
            min_sample=min_sample,
            device=device,
        )
        result["backpack"] = {k: v for k, v in peer.items() if k not in ("quantities", "gradient")}
        for quantity, entry in result["quantities"].items():
            theirs = peer.get("quantities", {}).get(quantity)
            if theirs is None:
                continue
            entry["backpack_s"], entry["backpack_gradient_s"] = theirs, peer["gradient"][quantity]
            entry["backpack_ratio_to_its_gradient"] = theirs["median"] / peer["gradient"][quantity]["median"]
            if "mlp_jax" in entry:
                entry["ratio_to_backpack"] = entry["mlp_jax"]["step_s"]["median"] / theirs["median"]
    for quantity, entry in result["quantities"].items():
        entry["goals"] = _goals(entry, quantity, outputs)
    return result


def run_curvature(
    configs: Sequence[Config],
    *,
    activation: str = "tanh",
    repeats: int,
    min_sample: float,
    backpack: bool = True,
    device: str = "cpu",
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """The curvature stage on `configs` (each in the 64-bit mode its dtype needs): per config and
    quantity the times, the ratios to a gradient, to autodiff and to BackPACK, and the goals."""
    from mlp_jax.bench.environment import load_average

    out: dict[str, Any] = {
        "settings": {
            "activation": activation,
            "repeats": repeats,
            "min_sample_s": min_sample,
            "backpack": backpack,
            "autodiff_formulations": AUTODIFF_FORMULATIONS,
        },
        "configs": {},
    }
    for config in configs:
        load = load_average()
        with x64_for(config.dtype):
            entry = curvature_config(
                config,
                activation=activation,
                repeats=repeats,
                min_sample=min_sample,
                backpack=backpack,
                device=device,
                log=log,
            )
        entry["load_average"] = [load, load_average()]
        out["configs"][config.name] = entry
    return out
