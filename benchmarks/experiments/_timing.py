"""Alternating timing of a few donating update steps in one process (the experiments' shared helper)."""

from __future__ import annotations

import statistics
import time

import jax
import jax.numpy as jnp


def compare_updates(updates: dict, params, opt_state_of, x, y, repeats: int, min_sample: float = 0.05) -> dict:
    """Median seconds per step of each ``update(params, opt_state, x, y)``, samples alternating (the order
    reversed every repeat); also the first call's seconds (compile)."""
    states, compile_s = {}, {}
    for name, update in updates.items():
        p = jax.tree.map(jnp.copy, params)
        start = time.perf_counter()
        *state, loss = update(p, opt_state_of(p), x, y)
        jax.block_until_ready(loss)
        compile_s[name], states[name] = time.perf_counter() - start, state
    first = next(iter(updates))
    start = time.perf_counter()
    *states[first], loss = updates[first](*states[first], x, y)
    jax.block_until_ready(loss)
    inner = max(1, int(min_sample / (time.perf_counter() - start)))
    samples = {name: [] for name in updates}
    names = list(updates)
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            update, state = updates[name], states[name]
            start = time.perf_counter()
            for _ in range(inner):
                *state, loss = update(*state, x, y)
            jax.block_until_ready(loss)
            samples[name].append((time.perf_counter() - start) / inner)
            states[name] = state
    return {name: {"median_s": statistics.median(v), "compile_s": compile_s[name]} for name, v in samples.items()}


def report(results: dict, baseline: str = "autodiff") -> None:
    base = results[baseline]["median_s"]
    for name, r in results.items():
        print(
            f"  {name:14s} {r['median_s'] * 1e3:9.4f} ms  / {baseline} {r['median_s'] / base:.3f}  "
            f"compile {r['compile_s']:.2f} s"
        )
