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

Outputs in ``--out DIR``: ``results.json`` (every number), ``results.md`` (tables) and PNG plots. This
module times the configs and runs the whole measurement; the configs and their FLOP counts live in
`mlp_jax.bench.configs`, the timing in `mlp_jax.bench.timing`, the matmul peaks in `mlp_jax.bench.peaks`,
the other processes in `mlp_jax.bench.peers`, the targets in `mlp_jax.bench.targets`, the machine's
description in `mlp_jax.bench.environment`, and the tables and plots in `mlp_jax.bench.report`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mlp_jax.bench.configs import (
    DTYPES,
    KINDS,
    SOURCES,
    STANDARD,
    Config,
    copy_tree,
    make_problem,
    matmul_flops,
    x64_for,
)
from mlp_jax.bench.curvature import run_curvature
from mlp_jax.bench.environment import environment, load_average
from mlp_jax.bench.peaks import ACCELERATOR_PEAK_SHAPES, PEAK_SHAPES, jnp_dot_peak, side_by_side_peak
from mlp_jax.bench.peers import PEERS, digits_time_to_accuracy, memory_peaks, numpy_env, run_peers, run_worker
from mlp_jax.bench.report import write_outputs
from mlp_jax.bench.targets import add_peak_fractions, check_targets
from mlp_jax.bench.timing import INSTANCES, Case, compare, now, ratio_ci95, xla_analysis


class _Steps:
    """The functions `bench_config` times on one config, and fresh arguments for them."""

    def __init__(self, config: Config):
        import optax

        self.config = config
        self.params, self.x, self.y = make_problem(config)
        self.optimizers = {"sgd": optax.sgd(0.01), "adam": optax.adam(1e-3), "fused": optax.sgd(0.01)}

    def args_for(self, kind: str) -> tuple:
        """Fresh arguments: an update donates its params and optimizer state."""
        if kind == "grad":
            return self.params, self.x, self.y
        p = copy_tree(self.params)
        return p, self.optimizers[kind].init(p), self.x, self.y

    def make(self, kind: str, source: str, *, donate: bool = True):
        """One separately jitted instance of `kind` with the gradient from `source`."""
        import jax

        from mlp_jax.training.steps import gradient_fn, make_fused_update, make_update

        loss, steps = self.config.loss, self.config.fused_steps
        if kind == "grad":
            return jax.jit(gradient_fn(source, activation="relu", loss=loss))
        if kind == "fused":
            return make_fused_update(
                self.optimizers[kind], steps, grad=source, losses="last", activation="relu", loss=loss
            )
        return make_update(self.optimizers[kind], grad=source, donate=donate, activation="relu", loss=loss)


def bench_config(config: Config, *, repeats: int, min_sample: float, kinds: Sequence[str]) -> dict[str, Any]:
    """Time `kinds` (a subset of grad, sgd, adam, fused) for both gradient sources on one config."""
    steps = _Steps(config)
    flops = matmul_flops(config.sizes, config.batch)
    result: dict[str, Any] = {"config": config._asdict(), "flops": flops}
    for kind in kinds:
        result[kind] = _time_kind(steps, kind, flops["step"], repeats=repeats, min_sample=min_sample)
    return result


def _time_kind(steps: _Steps, kind: str, step_flops: int, *, repeats: int, min_sample: float) -> dict[str, Any]:
    """Both gradient sources of one kind timed alternately (`compare`), with XLA's view of each, the A/A
    ratio, the manual / autodiff ratio of medians and its bootstrap interval."""
    carry, per_call = (0, 1) if kind == "grad" else (2, steps.config.fused_steps if kind == "fused" else 1)
    cases = {
        source: [
            Case(steps.make(kind, source), steps.args_for(kind), carry=carry, steps_per_call=per_call)
            for _ in range(INSTANCES)
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
        timed[source].update(xla_analysis(jitted[source], steps.args_for(kind)))
        timed[source]["gflops_per_s"] = step_flops / timed[source]["step_s"]["median"] / 1e9
    if kind in ("sgd", "adam"):  # the same step without donation: XLA's buffer sizes only
        timed["manual_no_donation"] = xla_analysis(steps.make(kind, "manual", donate=False), steps.args_for(kind))
    timed["ratio_manual_over_autodiff"] = timed["manual"]["step_s"]["median"] / timed["autodiff"]["step_s"]["median"]
    manual, autodiff = ([*itertools.chain.from_iterable(timed[s]["instance_samples_s"])] for s in SOURCES)
    timed["ratio_ci95"] = ratio_ci95(manual, autodiff)
    return timed


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
    curvature_configs: Sequence[Config] = (),
    curvature_backpack: bool = True,
    peak_shapes: Sequence[tuple[int, int, int]] = PEAK_SHAPES,
    memory: bool = True,
    memory_config: str = "large",
    digits: bool = True,
    plots: bool = True,
    log: Callable[[str], None] = print,
    command: str | None = None,
) -> dict[str, Any]:
    """Measure everything for `configs` and write results.json, results.md and plots into `out`: the
    matmul peaks, every config's steps, the peaks again, the side-by-side peak, the curvature stage on
    `curvature_configs` (`mlp_jax.bench.curvature`, BackPACK unless `curvature_backpack` is false), memory,
    peers, digits, then the targets. Each step is skipped where its flag says so. `command`, the command line that ran
    it, is recorded with the environment and shown in results.md."""
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "environment": {**environment(), "command": command},
        "settings": {"repeats": repeats, "min_sample_s": min_sample, "peers": list(peers), "peer_rounds": peer_rounds},
    }
    log(f"device: {results['environment']['device']}  cpu: {results['environment']['cpu']}")
    torch_device = "cpu" if results["environment"]["device"]["platform"] == "cpu" else "cuda"  # where torch has it
    started = now()
    dtypes = sorted({c.dtype for c in configs}, key=DTYPES.index)
    if peaks:
        log("matmul peaks: jnp.dot, numpy, torch")
        results["peaks"] = _matmul_peaks(dtypes, min_sample=min_sample, shapes=peak_shapes, torch_device=torch_device)
    results["configs"] = _time_configs(configs, repeats=repeats, min_sample=min_sample, kinds_for=kinds_for, log=log)
    if peaks:  # again at the end: the best of both, as other work on the machine comes and goes
        log("matmul peak of jnp.dot, again")
        again = jnp_dot_peak(dtypes, min_sample=min_sample, repeats=3, shapes=peak_shapes)
        _keep_best_peak(results["peaks"]["jnp_dot"], again)
    for config in configs:
        add_peak_fractions(results, config.name)
    large = [c for c in configs if c.name == "large"]
    if peaks and large:
        log("large sgd step and jnp.dot, side by side")
        results["peak_side_by_side"] = side_by_side_peak(
            large[0], repeats=repeats, min_sample=min_sample, shapes=peak_shapes
        )
    if curvature_configs:
        log(f"curvature: {', '.join(c.name for c in curvature_configs)}")
        results["curvature"] = run_curvature(  # as few samples as the peers: its autodiff calls take seconds
            curvature_configs,
            repeats=max(3, repeats // 2),
            min_sample=min_sample,
            backpack=curvature_backpack,
            device=torch_device,
            log=log,
        )
    if memory:
        log(f"memory: {memory_config}, with and without donation")
        results["memory_peak"] = {"config": memory_config, **memory_peaks(STANDARD[memory_config])}
    standard = [STANDARD[name] for name in peer_configs]
    if peers and standard:
        log(f"peers: {', '.join(peers)} x {peer_rounds} rounds")
        peer_repeats = max(3, repeats // 2)
        results.update(_peer_steps(standard, peers, peer_rounds, peer_repeats, min_sample, torch_device))
    if digits:
        log(f"digits: time to 95% test accuracy, mlp-jax vs sklearn MLPClassifier x {peer_rounds} rounds")
        results.update(_digits(peer_rounds))
    results["targets"] = check_targets(results)
    results["wall_s"] = now() - started
    write_outputs(results, out, plots=plots)
    log(f"wrote {out / 'results.json'}, {out / 'results.md'} in {results['wall_s']:.0f} s")
    return results


def _matmul_peaks(
    dtypes: Sequence[str], *, min_sample: float, shapes: Sequence[tuple[int, int, int]], torch_device: str
) -> dict[str, Any]:
    """The matmul peaks of jnp.dot (here), numpy and PyTorch (each in its own process), per dtype."""
    peaks = {"jnp_dot": jnp_dot_peak(dtypes, min_sample=min_sample, repeats=3, shapes=shapes)}
    request = {"dtypes": dtypes, "min_sample": min_sample, "repeats": 3, "shapes": [list(s) for s in shapes]}
    cpu_shapes = [list(s) for s in shapes if s not in ACCELERATOR_PEAK_SHAPES]  # the host needs no more
    peaks["numpy"] = run_worker("numpy_peak.py", dict(request, shapes=cpu_shapes), env=numpy_env())
    peaks["torch"] = run_worker("torch_peer.py", dict(request, mode="peak", device=torch_device, cpu_shapes=cpu_shapes))
    return peaks


def _keep_best_peak(jnp_dot: dict[str, Any], again: dict[str, Any]) -> None:
    """jnp.dot's peak per dtype: the best of the start's and the end's, both kept beside it."""
    for dtype, entry in jnp_dot.items():
        entry["gflops_per_s_start"], entry["gflops_per_s_end"] = entry["gflops_per_s"], again[dtype]["gflops_per_s"]
        entry["gflops_per_s"] = max(entry["gflops_per_s"], again[dtype]["gflops_per_s"])


def _time_configs(
    configs: Sequence[Config],
    *,
    repeats: int,
    min_sample: float,
    kinds_for: Callable[[Config], Sequence[str]],
    log: Callable[[str], None],
) -> dict[str, Any]:
    """`bench_config` on every config, each in the 64-bit mode its dtype needs, with the load average
    before and after."""
    timed = {}
    for config in configs:
        log(f"config {config.name}: sizes {list(config.sizes)} batch {config.batch} {config.dtype}")
        load = load_average()
        with x64_for(config.dtype):
            timed[config.name] = bench_config(config, repeats=repeats, min_sample=min_sample, kinds=kinds_for(config))
        timed[config.name]["load_average"] = [load, load_average()]  # before, after
        timed[config.name]["jax_enable_x64"] = config.dtype == "float64"
    return timed


def _peer_steps(
    configs: Sequence[Config],
    peers: Sequence[str],
    rounds: int,
    repeats: int,
    min_sample: float,
    torch_device: str,
) -> dict[str, Any]:
    """The peers' sgd steps (`run_peers`), with the load average before and after."""
    load = load_average()
    steps = run_peers(configs, peers, rounds=rounds, repeats=repeats, min_sample=min_sample, torch_device=torch_device)
    return {"peers": steps, "peers_load_average": [load, load_average()]}  # before, after


def _digits(rounds: int) -> dict[str, Any]:
    """Time to 95 % test accuracy on digits (`digits_time_to_accuracy`), with the load average before and after."""
    load = load_average()
    digits = digits_time_to_accuracy(0.95, 100, rounds=rounds)
    return {"digits": digits, "digits_load_average": [load, load_average()]}
