"""Small builders shared by the tests."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
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


def activation_kind_pairs(activations, kinds=LABEL_KINDS) -> list:
    """Every (activation, label kind) pair as a pytest param; the quick suite runs each activation once, its
    kind rotating through the kinds (so every kind is met too), and the other pairs are marked slow."""
    return [
        pytest.param(a, k, marks=() if j == i % len(kinds) else (pytest.mark.slow,))
        for i, a in enumerate(activations)
        for j, k in enumerate(kinds)
    ]


ENTRY_POINTS = ["forward", "loss", "backprop", "jit_backprop"]
LABELS = jnp.array([0, 1, 2, 0, 1, 2], jnp.int32)  # for a (6, 4) x and 3 outputs


def entry_point(name: str):
    """`name` of `ENTRY_POINTS`, eager or traced, as ``call(params, x, y=LABELS, **kw)`` (softmax
    cross-entropy unless `loss` is given): each must refuse bad input the same way."""
    if name == "forward":
        return lambda p, x, y=LABELS, **kw: mj.forward(p, x, **kw)
    entry = {"loss": mj.loss, "backprop": mj.backprop}.get(name)
    if entry is None:
        entry = jax.jit(mj.backprop, static_argnames=("activation", "loss"))
    return lambda p, x, y=LABELS, **kw: entry(p, x, y, **{"loss": "softmax_cross_entropy", **kw})


# Losses and an activation to register in tests, each with its correct derivative.
SOFTSIGN = (lambda z: z / (1 + jnp.abs(z)), lambda z: 1 / (1 + jnp.abs(z)) ** 2)


def huber(logits, y):  # per example: mean over outputs of the Huber loss with delta 1
    r = logits - y
    return jnp.mean(jnp.where(jnp.abs(r) <= 1, 0.5 * r * r, jnp.abs(r) - 0.5), axis=-1)


def huber_grad(logits, y):
    return jnp.clip(logits - y, -1, 1) / logits.shape[-1]


def tempered_ce(logits, labels):  # softmax cross-entropy at temperature 2, integer labels
    return optax.softmax_cross_entropy_with_integer_labels(logits / 2, labels)


def tempered_ce_grad(logits, labels):
    return (jax.nn.softmax(logits / 2) - jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)) / 2


def small_problem(kind: str, dtype=jnp.float64):
    """A 3-5-4 net, x (6, 3) and labels in [0, 4) (kind "labels") or dense normal targets (6, 4)."""
    rng = np.random.default_rng(0)
    params = tuple(
        mj.Layer(jnp.asarray(rng.standard_normal((i, o)), dtype), jnp.asarray(0.1 * rng.standard_normal(o), dtype))
        for i, o in ((3, 5), (5, 4))
    )
    x = jnp.asarray(rng.standard_normal((6, 3)), dtype)
    y = jnp.asarray(rng.integers(0, 4, 6)) if kind == "labels" else jnp.asarray(rng.standard_normal((6, 4)), dtype)
    return params, x, y


def assert_works_everywhere(activation: str, loss: str, kind: str, capsys) -> None:
    """A registered name works everywhere a built-in one does: backprop agrees with autodiff, make_update
    steps with the manual gradient, and `mlp-jax gradcheck` (check_gradients from the command line) passes."""
    from conftest import tree_max_rel_error
    from mlp_jax.cli import main as cli
    from mlp_jax.training.steps import make_update

    params, x, y = small_problem(kind)
    value, grads = mj.backprop(params, x, y, activation, loss)
    value_ad, grads_ad = jax.value_and_grad(mj.loss)(params, x, y, activation, loss)
    assert value == pytest.approx(float(value_ad), rel=1e-14) and tree_max_rel_error(grads, grads_ad) < 1e-12
    opt = optax.sgd(0.5)
    new_params, _, _ = make_update(opt, activation=activation, loss=loss, donate=False)(params, opt.init(params), x, y)
    assert tree_max_rel_error(new_params, jax.tree.map(lambda p, g: p - 0.5 * g, params, grads)) < 1e-14
    code = cli.main(["gradcheck", "--sizes", "3,5,4", "--batch", "6", "--activation", activation, "--loss", loss])
    assert code == 0 and "OK: every leaf is within tolerance" in capsys.readouterr().out
