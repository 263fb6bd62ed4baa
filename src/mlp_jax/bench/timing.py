"""Timing for `mlp-jax bench`: compiled functions timed alternately, honestly.

Compile time apart from run time, ``block_until_ready`` before every clock read, warm-up, samples
alternating between the things compared (the order reversed every repeat), each thing jitted
`INSTANCES` times with the samples pooled, Python's garbage collector paused while clocks run; and
XLA's own view of a compiled step (`xla_analysis`: its FLOP count and buffer sizes).
"""

from __future__ import annotations

import contextlib
import gc
import math
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any


def now() -> float:
    return time.perf_counter()


def calibrate(call: Callable[[], Any], min_sample: float) -> int:
    """Calls per sample so that one sample lasts about `min_sample` seconds (one call already warm)."""
    import jax

    start = now()
    jax.block_until_ready(call())
    once = max(now() - start, 1e-7)
    return max(1, min(100_000, math.ceil(min_sample / once)))


def sample(call: Callable[[], Any], inner: int) -> float:
    """Seconds per call over `inner` back-to-back calls, blocked before both clock reads."""
    import jax

    outs = []
    start = now()
    for _ in range(inner):
        outs.append(call())
    jax.block_until_ready(outs)
    return (now() - start) / inner


def summary(samples: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples), "n": len(samples)}


class Case:
    """One compiled thing to time: ``first()`` compiles and runs once, ``call()`` runs once more.

    Update steps donate their params and optimizer state, so each call feeds the next one its outputs.
    """

    def __init__(self, fn, args: tuple, carry: int = 0, steps_per_call: int = 1):
        self.fn, self.args, self.carry, self.steps_per_call = fn, list(args), carry, steps_per_call

    def call(self):
        out = self.fn(*self.args)
        if self.carry:
            self.args[: self.carry] = out[: self.carry]
            return out[self.carry :]  # the loss values: ready only once the whole step is
        return out

    def first(self) -> dict[str, float]:
        """Trace and lower, compile (XLA), then the first call: each timed apart. jit reuses the executable
        compiled here, so ``first_call_s`` is one run plus any first-touch costs."""
        import jax

        start = now()
        lowered = self.fn.lower(*self.args)
        lowered_at = now()
        lowered.compile()
        compiled_at = now()
        jax.block_until_ready(self.call())
        return {
            "trace_lower_s": lowered_at - start,
            "xla_compile_s": compiled_at - lowered_at,
            "compile_s": compiled_at - start,
            "first_call_s": now() - compiled_at,
        }


INSTANCES = 2  # separately jitted copies of each timed function, their samples pooled


def ratio_ci95(a: Sequence[float], b: Sequence[float], resamples: int = 2000) -> list[float]:
    """A 95 % bootstrap interval of ``median(a) / median(b)``: both sample sets resampled with
    replacement, `resamples` times (seeded, so a run's interval is reproducible from its samples). It
    covers the spread of the samples, not the offset one compiled instance can keep for its whole life;
    the A/A ratio beside it shows that one."""
    import numpy as np

    rng = np.random.default_rng(0)
    xs, ys = np.asarray(a), np.asarray(b)
    ratios = np.median(rng.choice(xs, (resamples, xs.size)), axis=1) / np.median(
        rng.choice(ys, (resamples, ys.size)), axis=1
    )
    return [float(q) for q in np.percentile(ratios, [2.5, 97.5])]


@contextlib.contextmanager
def gc_paused():
    """Python's garbage collector collected, then off (as `timeit` does): a collection inside a clocked
    trace or sample walks every object of a long run, and its time lands in whatever is being timed."""
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def compare(cases: dict[str, list[Case]], repeats: int, min_sample: float) -> dict[str, Any]:
    """Compile, warm up, then time the cases alternately: `repeats` samples of every instance, the order
    reversed every repeat, and each name's samples pooled over its instances.

    Each name has `INSTANCES` separately compiled instances, created in ABBA order (A0 B0 B1 A1). One
    executable and its buffers can run a few percent faster or slower than an identical one for the
    life of the process (where they sit in memory); a single instance per name put that into the ratio,
    and the A/A ratio of two instances (``noise_floor_ratio`` in `bench_config`) shows its size.
    """
    names = list(cases)
    count = len(cases[names[0]])
    if any(len(instances) != count for instances in cases.values()):
        counts = {n: len(v) for n, v in cases.items()}
        raise ValueError(f"every name needs the same number of instances, got {counts}")
    order = [(name, i) for i in range(count) for name in (names if i % 2 == 0 else names[::-1])]
    with gc_paused():
        first = {key: cases[key[0]][key[1]].first() for key in order}
        inner = {name: calibrate(instances[0].call, min_sample) for name, instances in cases.items()}
        samples: dict[tuple[str, int], list[float]] = {key: [] for key in order}
        for r in range(repeats):
            for name, i in order if r % 2 == 0 else order[::-1]:
                case = cases[name][i]
                samples[name, i].append(sample(case.call, inner[name]) / case.steps_per_call)
    result = {}
    for name in names:
        pooled = [t for i in range(count) for t in samples[name, i]]
        result[name] = dict(
            first[name, 0],
            step_s=summary(pooled),
            calls_per_sample=inner[name],
            instance_medians_s=[statistics.median(samples[name, i]) for i in range(count)],
            instance_samples_s=[samples[name, i] for i in range(count)],
            instance_compile_s=[first[name, i]["compile_s"] for i in range(count)],
        )
    return result


# --- XLA's own view of a compiled step ------------------------------------------------------------


def xla_analysis(jitted, args) -> dict[str, Any]:
    """XLA's FLOP count and buffer sizes of `jitted` compiled for `args` (lowering never donates)."""
    compiled = jitted.lower(*args).compile()
    out: dict[str, Any] = {}
    try:
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        out["xla_flops"] = float(cost.get("flops", float("nan"))) if cost else None
    except Exception as error:  # not every backend implements it
        out["xla_flops"] = None
        out["cost_error"] = repr(error)
    try:
        mem = compiled.memory_analysis()
        out["memory"] = (
            {
                field: int(getattr(mem, f"{field}_size_in_bytes"))
                for field in ("temp", "argument", "output", "alias", "generated_code")
            }
            if mem is not None
            else None
        )
    except Exception as error:
        out["memory"] = None
        out["memory_error"] = repr(error)
    return out
