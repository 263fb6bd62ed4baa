"""`mlp-jax bench`: the hand-written backprop against autodiff, against the machine's matmul peak,
and against peer libraries.

For every config, in one process and alternating the two gradient sources sample by sample:

- ``grad``: the gradient alone (`mlp_jax.core.backprop` vs ``jax.value_and_grad``), jitted;
- ``sgd``, ``adam``: one full update step from `mlp_jax.training.steps.make_update` (donating);
- ``fused``: ``N`` sgd steps in one compiled call from `make_fused_update`, reported per step.

Compile time (trace, lower and XLA compile, timed ahead of the first call) is kept apart from run
time; every clock read follows ``block_until_ready``; each sample repeats the call until it lasts
``--min-sample`` seconds; we report the median over samples with min and max. Each function is jitted
twice (two executables, two sets of buffers) and the samples of both are pooled: one instance alone
can sit a few percent off an identical one for its whole life, and the two instances of the manual
function give an A/A ratio, the noise floor of every manual / autodiff ratio. Python's garbage
collector is paused while clocks run. FLOPs are the analytic matmul count next to XLA's
``cost_analysis()``; memory is ``memory_analysis()`` of each compiled step plus the peak RSS of a
training process with and without donation. ``jnp.dot`` is also timed side by side with the large
config's step and with that step's own matmuls alone (`side_by_side_peak`), which takes the machine's
drift out of the fraction of peak and splits the gap into slower matmul shapes and the work between them.
The matmul peaks of numpy and PyTorch, and the peer libraries, each run in their own process
(``mlp_jax/bench/workers/``), since thread pools of different libraries slow each other down when they
share one.

Outputs in ``--out DIR``: ``results.json`` (every number), ``results.md`` (tables) and PNG plots. The
timing itself lives in `mlp_jax.bench.timing`, the other processes in `mlp_jax.bench.peers`, the tables
and plots in `mlp_jax.bench.report`.
"""

from __future__ import annotations

import datetime
import itertools
import math
import os
import platform
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from mlp_jax.bench.peers import PEERS, digits_time_to_accuracy, memory_peaks, numpy_env, run_peers, run_worker
from mlp_jax.bench.report import KINDS, write_outputs
from mlp_jax.bench.timing import INSTANCES, Case, calibrate, compare, now, ratio_ci95, sample, xla_analysis
from mlp_jax.core.errors import UsageError
from mlp_jax.core.x64 import x64_mode

DTYPES = ("float32", "float64", "bfloat16")
SOURCES = ("manual", "autodiff")


class Config(NamedTuple):
    name: str
    sizes: tuple[int, ...]  # [d_in, hidden..., d_out]
    batch: int
    dtype: str = "float32"
    loss: str = "softmax_cross_entropy"
    fused_steps: int = 10  # steps per fused call


STANDARD = {
    "small": Config("small", (784, 64, 64, 10), 128, fused_steps=100),  # depth 2 x width 64 x batch 128
    "medium": Config("medium", (784, 256, 256, 256, 10), 1024, fused_steps=10),  # 3 x 256 x 1024
    "large": Config("large", (784, 1024, 1024, 1024, 1024, 10), 4096, fused_steps=2),  # 4 x 1024 x 4096
    "xor": Config("xor", (2, 8, 1), 4, loss="sigmoid_binary_cross_entropy", fused_steps=10_000),
}
GRID = {"depth": (1, 3), "width": (128, 512), "batch": (256, 2048), "dtype": DTYPES}
QUICK_GRID = ("2x64x128:float64", "2x64x128:bfloat16")
_SPEC = re.compile(r"^(\d+)x(\d+)x(\d+)(?::(\w+))?$")


def parse_config(spec: str) -> Config:
    """A standard config by name, or ``DEPTHxWIDTHxBATCH[:DTYPE]`` (input 784, 10 classes)."""
    if spec in STANDARD:
        return STANDARD[spec]
    match = _SPEC.match(spec)
    if not match:
        raise UsageError(f"bad config {spec!r}; expected one of {list(STANDARD)} or DEPTHxWIDTHxBATCH[:DTYPE]")
    depth, width, batch = (int(g) for g in match.groups()[:3])
    dtype = match.group(4) or "float32"
    if dtype not in DTYPES:
        raise UsageError(f"bad dtype {dtype!r} in config {spec!r}; expected one of {list(DTYPES)}")
    if min(depth, width, batch) < 1:
        raise UsageError(f"config {spec!r}: depth, width and batch must be >= 1")
    fused = max(2, min(100, int(2e8 // (2 * batch * width * (784 + depth * width)))))
    return Config(spec, (784,) + (width,) * depth + (10,), batch, dtype, fused_steps=fused)


def grid_configs() -> list[Config]:
    return [
        parse_config(f"{d}x{w}x{b}:{t}")
        for t in GRID["dtype"]
        for d in GRID["depth"]
        for w in GRID["width"]
        for b in GRID["batch"]
    ]


def matmul_flops(sizes: Sequence[int], batch: int) -> dict[str, int]:
    """The exact matmul FLOPs of one training step (2 per multiply-add).

    forward ``2 B sum(d_in d_out)``; backward ``dW`` for every layer, the same count again; the delta
    ``delta @ W.T`` for every layer but the first, ``2 B sum_{l>0}(d_in d_out)``.
    """
    per_layer = [2 * batch * d_in * d_out for d_in, d_out in itertools.pairwise(sizes)]
    forward, delta = sum(per_layer), sum(per_layer[1:])
    return {"forward": forward, "backward_dw": forward, "backward_delta": delta, "step": 2 * forward + delta}


# --- the measurements -------------------------------------------------------------------------------


def make_problem(config: Config):
    """params, x (batch, d_in) and y for `config`, from fixed keys (the xor config: the four XOR points)."""
    import jax
    import jax.numpy as jnp

    from mlp_jax.core.params import init_params

    dtype = jnp.dtype(config.dtype)
    k_params, k_x, k_y = jax.random.split(jax.random.key(0), 3)
    params = init_params(k_params, list(config.sizes), dtype=dtype)
    x = jax.random.normal(k_x, (config.batch, config.sizes[0]), jnp.float32).astype(dtype)
    if config.loss == "softmax_cross_entropy":
        y = jax.random.randint(k_y, (config.batch,), 0, config.sizes[-1], jnp.int32)
    else:
        y = jax.random.bernoulli(k_y, 0.5, (config.batch, config.sizes[-1])).astype(dtype)
    if config.name == "xor":
        x = jnp.asarray([[0, 0], [0, 1], [1, 0], [1, 1]], dtype)
        y = jnp.asarray([[0], [1], [1], [0]], dtype)
    return params, x, y


def _copy(tree):
    import jax
    import jax.numpy as jnp

    return jax.tree.map(jnp.copy, tree)


def bench_config(config: Config, *, repeats: int, min_sample: float, kinds: Sequence[str]) -> dict[str, Any]:
    """Time `kinds` (a subset of grad, sgd, adam, fused) for both gradient sources on one config."""
    import jax
    import optax

    from mlp_jax.training.steps import gradient_fn, make_fused_update, make_update

    params, x, y = make_problem(config)
    common = dict(activation="relu", loss=config.loss)
    optimizers = {"sgd": optax.sgd(0.01), "adam": optax.adam(1e-3), "fused": optax.sgd(0.01)}
    flops = matmul_flops(config.sizes, config.batch)
    result: dict[str, Any] = {"config": config._asdict(), "flops": flops}

    def args_for(kind: str) -> tuple:
        """Fresh arguments: an update donates its params and optimizer state."""
        if kind == "grad":
            return params, x, y
        p = _copy(params)
        return p, optimizers[kind].init(p), x, y

    def make(kind: str, source: str):
        """One separately jitted instance of `kind` with the gradient from `source`."""
        if kind == "grad":
            return jax.jit(gradient_fn(source, **common))
        if kind == "fused":
            return make_fused_update(optimizers[kind], config.fused_steps, grad=source, losses="last", **common)
        return make_update(optimizers[kind], grad=source, **common)

    for kind in kinds:
        carry, steps = (0, 1) if kind == "grad" else (2, config.fused_steps if kind == "fused" else 1)
        cases = {
            source: [
                Case(make(kind, source), args_for(kind), carry=carry, steps_per_call=steps) for _ in range(INSTANCES)
            ]
            for source in SOURCES
        }
        jitted = {source: cases[source][0].fn for source in SOURCES}
        timed = compare(cases, repeats, min_sample)
        # A/A: the manual function's two instances against each other, the noise floor of the ratio
        first, second = timed["manual"]["instance_medians_s"][:2]
        timed["noise_floor_ratio"] = first / second
        for source in SOURCES:
            # cost_analysis counts a scan's body once, so for "fused" it is already per step
            timed[source].update(xla_analysis(jitted[source], args_for(kind)))
            timed[source]["gflops_per_s"] = flops["step"] / timed[source]["step_s"]["median"] / 1e9
        if kind in ("sgd", "adam"):  # the same step without donation: XLA's buffer sizes only
            plain = make_update(optimizers[kind], grad="manual", donate=False, **common)
            timed["manual_no_donation"] = xla_analysis(plain, args_for(kind))
        timed["ratio_manual_over_autodiff"] = (
            timed["manual"]["step_s"]["median"] / timed["autodiff"]["step_s"]["median"]
        )
        pooled = [list(itertools.chain.from_iterable(timed[s]["instance_samples_s"])) for s in SOURCES]
        timed["ratio_ci95"] = ratio_ci95(*pooled)
        result[kind] = timed
    return result


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


def x64_for(dtype: str):
    """A context with JAX's 64-bit mode on for float64 and off otherwise: float32 and bfloat16 configs
    are timed as a user runs them (with it on, optax's adam counts in int64 and float64)."""
    return x64_mode(dtype == "float64")


class _Matmul(NamedTuple):
    """One ``dot_general`` of a traced function: its operands' shapes and dtypes, how it contracts, and
    its precision and output type."""

    lhs: Any  # jax.ShapeDtypeStruct
    rhs: Any
    dimension_numbers: Any
    precision: Any
    preferred_element_type: Any
    flops: int


def step_matmuls(fn: Callable, *args) -> list[_Matmul]:
    """Every ``dot_general`` in the jaxpr of ``fn(*args)``, nested jaxprs included, in order. Each appears
    once as written: a loop body's once, whatever its trip count, and every branch of a ``cond``."""
    import jax

    found: list[_Matmul] = []

    def walk(jaxpr) -> None:
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "dot_general":
                lhs, rhs = (jax.ShapeDtypeStruct(v.aval.shape, v.aval.dtype) for v in eqn.invars)
                (contract, _), _ = eqn.params["dimension_numbers"]
                k = math.prod(lhs.shape[d] for d in contract)
                found.append(
                    _Matmul(
                        lhs,
                        rhs,
                        eqn.params["dimension_numbers"],
                        eqn.params.get("precision"),
                        eqn.params.get("preferred_element_type"),
                        2 * k * math.prod(eqn.outvars[0].aval.shape),
                    )
                )
            for value in eqn.params.values():
                for sub in value if isinstance(value, (tuple, list)) else (value,):
                    inner = getattr(sub, "jaxpr", sub)  # a ClosedJaxpr holds a Jaxpr
                    if hasattr(inner, "eqns"):
                        walk(inner)

    walk(jax.make_jaxpr(fn)(*args).jaxpr)
    return found


def _matmuls_alone(matmuls: Sequence[_Matmul]) -> tuple[Callable, tuple]:
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
    minutes away from the step; on a shared machine that moves by 5-10 %. The matmuls alone split the
    gap: how fast the step's matmul shapes can go, and what the rest of the step costs."""
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
            for update, p in zip(updates, (_copy(params) for _ in updates))
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


# --- environment ------------------------------------------------------------------------------------


def _load_average() -> float | None:
    """The 1-minute load average (other work on the machine skews every number), None where unknown."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def environment() -> dict[str, Any]:
    import jax
    import jaxlib
    import numpy as np
    import optax

    device = jax.devices()[0]
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": {"platform": device.platform, "kind": device.device_kind, "count": jax.device_count()},
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "versions": {
            "jax": jax.__version__,
            "jaxlib": jaxlib.__version__,
            "numpy": np.__version__,
            "optax": optax.__version__,
        },
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "env": {
            k: v
            for k, v in os.environ.items()
            if k.startswith(("OPENBLAS_", "OMP_", "MKL_", "XLA_", "JAX_", "MALLOC_"))
        },
        "jax_enable_x64": bool(jax.config.jax_enable_x64),
        # None = each backend's default; on recent NVIDIA GPUs that lets float32 matmuls use TF32
        "jax_default_matmul_precision": jax.config.jax_default_matmul_precision,
        "load_average_1min": _load_average(),
    }


# --- the whole run ---------------------------------------------------------------------------------


def run(
    out: Path,
    configs: Sequence[Config],
    *,
    repeats: int = 7,
    min_sample: float = 0.05,
    kinds_for: Callable[[Config], Sequence[str]] = lambda c: KINDS,
    peaks: bool = True,
    peers: Sequence[str] = PEERS,
    peer_rounds: int = 2,
    peer_configs: Sequence[str] = ("small", "medium", "large"),
    peak_shapes: Sequence[tuple[int, int, int]] = PEAK_SHAPES,
    memory: bool = True,
    memory_config: str = "large",
    digits: bool = True,
    plots: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Measure everything for `configs` and write results.json, results.md and plots into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "environment": environment(),
        "settings": {"repeats": repeats, "min_sample_s": min_sample, "peers": list(peers), "peer_rounds": peer_rounds},
    }
    log(f"device: {results['environment']['device']}  cpu: {results['environment']['cpu']}")
    torch_device = "cpu" if results["environment"]["device"]["platform"] == "cpu" else "cuda"  # where torch has it
    started = now()
    dtypes = sorted({c.dtype for c in configs}, key=DTYPES.index)
    if peaks:
        log("matmul peaks: jnp.dot, numpy, torch")
        results["peaks"] = {"jnp_dot": jnp_dot_peak(dtypes, min_sample=min_sample, repeats=3, shapes=peak_shapes)}
        request = {"dtypes": dtypes, "min_sample": min_sample, "repeats": 3, "shapes": [list(s) for s in peak_shapes]}
        cpu_shapes = [list(s) for s in peak_shapes if s not in ACCELERATOR_PEAK_SHAPES]  # the host needs no more
        results["peaks"]["numpy"] = run_worker("numpy_peak.py", dict(request, shapes=cpu_shapes), env=numpy_env())
        results["peaks"]["torch"] = run_worker(
            "torch_peer.py", dict(request, mode="peak", device=torch_device, cpu_shapes=cpu_shapes)
        )
    results["configs"] = {}
    for config in configs:
        log(f"config {config.name}: sizes {list(config.sizes)} batch {config.batch} {config.dtype}")
        load = _load_average()
        with x64_for(config.dtype):
            results["configs"][config.name] = bench_config(
                config, repeats=repeats, min_sample=min_sample, kinds=kinds_for(config)
            )
        results["configs"][config.name]["load_average"] = [load, _load_average()]  # before, after
        results["configs"][config.name]["jax_enable_x64"] = config.dtype == "float64"
    if peaks:  # again at the end: the best of both, as other work on the machine comes and goes
        log("matmul peak of jnp.dot, again")
        again = jnp_dot_peak(dtypes, min_sample=min_sample, repeats=3, shapes=peak_shapes)
        for dtype, entry in results["peaks"]["jnp_dot"].items():
            entry["gflops_per_s_start"], entry["gflops_per_s_end"] = entry["gflops_per_s"], again[dtype]["gflops_per_s"]
            entry["gflops_per_s"] = max(entry["gflops_per_s"], again[dtype]["gflops_per_s"])
    for config in configs:
        _add_peak_fractions(results, config.name)
    large = [c for c in configs if c.name == "large"]
    if peaks and large:
        log("large sgd step and jnp.dot, side by side")
        results["peak_side_by_side"] = side_by_side_peak(
            large[0], repeats=repeats, min_sample=min_sample, shapes=peak_shapes
        )
    if memory:
        target = STANDARD[memory_config]
        log(f"memory: {target.name}, with and without donation")
        results["memory_peak"] = {"config": target.name, **memory_peaks(target)}
    standard = [STANDARD[name] for name in peer_configs]
    if peers and standard:
        log(f"peers: {', '.join(peers)} x {peer_rounds} rounds")
        load = _load_average()
        results["peers"] = run_peers(
            standard,
            peers,
            rounds=peer_rounds,
            repeats=max(3, repeats // 2),
            min_sample=min_sample,
            torch_device=torch_device,
        )
        results["peers_load_average"] = [load, _load_average()]  # before, after
    if digits:
        log(f"digits: time to 95% test accuracy, mlp-jax vs sklearn MLPClassifier x {peer_rounds} rounds")
        load = _load_average()
        results["digits"] = digits_time_to_accuracy(0.95, 100, rounds=peer_rounds)
        results["digits_load_average"] = [load, _load_average()]
    results["targets"] = check_targets(results)
    results["wall_s"] = now() - started
    write_outputs(results, out, plots=plots)
    log(f"wrote {out / 'results.json'}, {out / 'results.md'} in {results['wall_s']:.0f} s")
    return results


def _practical_peak(results: dict, dtype: str) -> tuple[float | None, float | None]:
    """(jnp.dot's peak, the best of numpy's and torch's) in GFLOP/s for `dtype`, None where unmeasured;
    on an accelerator, torch's peak only if it ran on that accelerator."""
    peaks = results.get("peaks", {})
    dot = peaks.get("jnp_dot", {}).get(dtype, {}).get("gflops_per_s")
    # on an accelerator only PyTorch's peak on that accelerator counts; numpy's is the host CPU's
    libs = (
        ("numpy", "torch")
        if results["environment"]["device"]["platform"] == "cpu"
        else (("torch",) if peaks.get("torch", {}).get("device") == "cuda" else ())
    )
    others = [peaks.get(lib, {}).get(dtype, {}).get("gflops_per_s") for lib in libs]
    others = [v for v in others if v]
    return dot, (max(others) if others else None)


def _add_peak_fractions(results: dict, name: str) -> None:
    entry = results["configs"][name]
    dot, practical = _practical_peak(results, entry["config"]["dtype"])
    for kind in KINDS:
        for source in SOURCES:
            if kind in entry:
                m = entry[kind][source]
                m["fraction_of_jnp_dot_peak"] = m["gflops_per_s"] / dot if dot else None
                m["fraction_of_practical_peak"] = m["gflops_per_s"] / practical if practical else None


def check_targets(results: dict) -> list[dict[str, Any]]:
    """The issue's performance targets, each with the measured value and whether it is met (None: it
    could not be measured in this run)."""
    targets = []
    configs = results.get("configs", {})
    for name in STANDARD:
        for kind in ("sgd", "adam"):
            if name in configs and kind in configs[name]:
                ratio = configs[name][kind]["ratio_manual_over_autodiff"]
                aa, ci = (configs[name][kind].get(k) for k in ("noise_floor_ratio", "ratio_ci95"))
                targets.append(
                    {
                        "target": f"{name} {kind}: manual / autodiff step time <= 1.00",
                        "value": round(ratio, 3),
                        "met": ratio <= 1.0,
                        **({"noise_floor": round(aa, 3)} if aa else {}),
                        **({"ci95": [round(v, 3) for v in ci]} if ci else {}),
                    }
                )
        if name in configs:
            worst = (
                max(configs[name][k][s]["compile_s"] for k in ("sgd", "adam") if k in configs[name] for s in SOURCES)
                if any(k in configs[name] for k in ("sgd", "adam"))
                else None
            )
            if worst is not None:
                targets.append(
                    {
                        "target": f"{name}: compile time of one update step <= 0.5 s",
                        "value": round(worst, 3),
                        "met": worst <= 0.5,
                    }
                )
    if "large" in configs and "sgd" in configs["large"]:
        m = configs["large"]["sgd"]["manual"]
        for key, goal in (("fraction_of_jnp_dot_peak", 0.95), ("fraction_of_practical_peak", 0.90)):
            if m.get(key) is not None:
                targets.append(
                    {"target": f"large sgd manual: {key} >= {goal}", "value": round(m[key], 3), "met": m[key] >= goal}
                )
    torch, jax_peer = (results.get("peers", {}).get(p, {}) for p in ("torch", "mlp_jax"))
    torch_large, jax_large = (p.get("configs", {}).get("large") for p in (torch, jax_peer))
    if torch_large and jax_large:
        title = "large sgd: mlp-jax step time <= PyTorch eager's (ratio <= 1)"
        devices = jax_peer.get("device"), torch.get("device")
        if devices in (("cpu", "cpu"), ("gpu", "cuda")):
            ratio = jax_large["step_s"]["median"] / torch_large["step_s"]["median"]
            targets.append({"target": title, "value": round(ratio, 3), "met": ratio <= 1.0})
        else:  # e.g. JAX on a GPU and a CPU-only PyTorch: no comparison
            targets.append(
                {
                    "target": title,
                    "met": None,
                    "value": f"not comparable: mlp-jax on {devices[0]}, PyTorch on {devices[1]}",
                }
            )
    side = results.get("peak_side_by_side")
    if side:
        fraction = side["fraction_of_jnp_dot"]
        targets.append(
            {
                "target": f"{side['config']} sgd manual: fraction of jnp.dot's FLOP/s, side by side >= 0.95",
                "value": round(fraction, 3),
                "met": fraction >= 0.95,
            }
        )
    if "xor" in configs and "fused" in configs["xor"]:
        rate = 1.0 / configs["xor"]["fused"]["manual"]["step_s"]["median"]
        targets.append({"target": "xor fused sgd: >= 1,000,000 steps/s", "value": round(rate), "met": rate >= 1e6})
    mem = results.get("memory_peak", {})
    donate, keep = mem.get("donate", {}), mem.get("no_donation", {})
    where = key = None
    if "device_peak_bytes" in donate or "device_peak_bytes" in keep:  # an accelerator: its own memory
        where, key = "device", "device_train_peak_bytes"
    elif "train_peak_bytes" in donate and "train_peak_bytes" in keep:  # the CPU: the process's RSS
        where, key = "process", "train_peak_bytes"
    if where:
        if key in donate and key in keep:
            a, b = donate[key], keep[key]
            value, met = f"{a / 2**20:.0f} MiB vs {b / 2**20:.0f} MiB", a < b
        else:  # the allocator's peak cannot be reset, and training never rose above compile's
            value, met = "not seen: the device's peak was set before training (compile)", False
        targets.append(
            {
                "target": f"{mem['config']} adam: training peak {where} memory with donation < without",
                "value": value,
                "met": met,
            }
        )
    return targets
