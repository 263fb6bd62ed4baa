"""What `mlp-jax bench` measures: the configs (standard, grid, ``DEPTHxWIDTHxBATCH[:DTYPE]``), the kinds of
step and the gradient sources timed on each, their analytic matmul FLOPs, and the problem each config is
timed on. The bottom of the bench layer: it imports no other bench module."""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, NamedTuple

from mlp_jax.core.errors import UsageError
from mlp_jax.core.x64 import x64_mode

DTYPES = ("float32", "float64", "bfloat16")
SOURCES = ("manual", "autodiff")
KINDS = ("grad", "sgd", "adam", "fused")  # what `mlp-jax bench` times per config, in report order


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
GRID: dict[str, tuple[Any, ...]] = {"depth": (1, 3), "width": (128, 512), "batch": (256, 2048), "dtype": DTYPES}
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


def x64_for(dtype: str) -> AbstractContextManager[Any]:
    """A context with JAX's 64-bit mode on for float64 and off otherwise: float32 and bfloat16 configs
    are timed as a user runs them (with it on, optax's adam counts in int64 and float64)."""
    return x64_mode(dtype == "float64")


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


def copy_tree(tree):
    """A copy of every array of `tree`: fresh buffers for a step that donates its arguments."""
    import jax
    import jax.numpy as jnp

    return jax.tree.map(jnp.copy, tree)
