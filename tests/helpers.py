"""Small builders shared by the tests."""

from __future__ import annotations

import itertools

import jax.numpy as jnp
import numpy as np
from hypothesis import strategies as st

import mlp_jax as mj
from mlp_jax.core.x64 import x64_mode


def x64_for(dtype):
    """64-bit mode on for a float64 `dtype`, off otherwise: for hypothesis tests that draw their dtype."""
    return x64_mode(np.dtype(dtype) == np.float64)


LABEL_KINDS = ["mse", "softmax_int", "softmax_prob", "sigmoid_bce"]
LOSS_OF_KIND = {
    "mse": "mse",
    "softmax_int": "softmax_cross_entropy",
    "softmax_prob": "softmax_cross_entropy",
    "sigmoid_bce": "sigmoid_binary_cross_entropy",
}


def make_problem(seed: int, sizes: list[int], batch: int, kind: str, dtype, weighted: bool = False):
    """params, x, y, loss name and sample_weight (or None) for a random problem of the given label kind."""
    rng = np.random.default_rng(seed)
    # numpy, not jax.random: new shapes would cost an XLA compile each. Non-zero biases, so every term of
    # the gradient is exercised.
    params = tuple(
        mj.Layer(
            w=jnp.asarray(rng.standard_normal((d_in, d_out)) * np.sqrt(2.0 / (d_in + d_out)), dtype),
            b=jnp.asarray(0.1 * rng.standard_normal(d_out), dtype),
        )
        for d_in, d_out in itertools.pairwise(sizes)
    )
    out = sizes[-1]
    x = jnp.asarray(rng.standard_normal((batch, sizes[0])), dtype)
    if kind == "mse":
        y = jnp.asarray(rng.standard_normal((batch, out)), dtype)
    elif kind == "softmax_int":
        y = jnp.asarray(rng.integers(0, out, size=batch), jnp.int32)
    elif kind == "softmax_prob":
        y = jnp.asarray(rng.dirichlet(np.ones(out), size=batch), dtype)
    elif kind == "sigmoid_bce":
        y = jnp.asarray(rng.uniform(0, 1, size=(batch, out)), dtype)
    else:
        raise ValueError(kind)
    weight = jnp.asarray(rng.uniform(0.1, 2.0, size=batch), dtype) if weighted else None
    return params, x, y, LOSS_OF_KIND[kind], weight


@st.composite
def problems(draw, max_depth: int = 5, max_width: int = 16, max_batch: int = 32):
    """Keyword arguments of `make_problem` for a random net, batch, label kind, dtype and weighting."""
    depth = draw(st.integers(1, max_depth))
    sizes = draw(st.lists(st.integers(1, max_width), min_size=depth + 1, max_size=depth + 1))
    kind = draw(st.sampled_from(LABEL_KINDS))
    if kind.startswith("softmax"):
        sizes[-1] = max(sizes[-1], 2)
    return dict(
        seed=draw(st.integers(0, 2**16)),
        sizes=sizes,
        batch=draw(st.integers(1, max_batch)),
        kind=kind,
        dtype=draw(st.sampled_from([jnp.float64, jnp.float32])),
        weighted=draw(st.booleans()),
    )
