"""Shared by the peer workers: the request on argv[1], the answer as one JSON line on stdout, and timing.

Each worker runs alone in its own process, so no other library's thread pool competes with it.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import time
from collections.abc import Callable


def request() -> dict:
    return json.loads(sys.argv[1])


def answer(obj: dict) -> None:
    print(json.dumps(obj))


def hidden(config: dict) -> tuple[int, int, int, int]:
    """(d_in, width, depth, d_out) of a config whose hidden layers all have one width."""
    sizes = config["sizes"]
    return sizes[0], sizes[1], len(sizes) - 2, sizes[-1]


def time_steps(step: Callable[[], object], sync: Callable[[object], None], repeats: int, min_sample: float) -> dict:
    """First call (compile or warm-up), then `repeats` samples of back-to-back calls, seconds per call."""
    start = time.perf_counter()
    sync(step())
    first = time.perf_counter() - start
    start = time.perf_counter()
    sync(step())
    inner = max(1, min(100_000, math.ceil(min_sample / max(time.perf_counter() - start, 1e-7))))
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = None
        for _ in range(inner):
            out = step()
        sync(out)
        samples.append((time.perf_counter() - start) / inner)
    return {"first_step_s": first, "samples": samples, "median": statistics.median(samples)}


def matmul_peak(
    matmul: Callable, make: Callable, sync: Callable, dtypes: list[str], repeats: int, min_sample: float, shapes: list
) -> dict:
    """Best GFLOP/s of ``matmul(a, b)`` over the shapes the JAX peak uses, per dtype."""
    out = {}
    for dtype in dtypes:
        per_shape = {}
        for m, k, n in shapes:
            a, b = make((m, k), dtype), make((k, n), dtype)
            timed = time_steps(lambda: matmul(a, b), sync, repeats, min_sample)
            per_shape[f"{m}x{k}x{n}"] = 2 * m * k * n / min(timed["samples"]) / 1e9
        out[dtype] = {"gflops_per_s": max(per_shape.values()), "per_shape": per_shape}
    return out
