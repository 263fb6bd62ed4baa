"""The manual pass's matmul choices (mlp_jax.core.matmul): tiny dots as a fused product, and the two
activation layouts, each against jax.grad."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mlp_jax as mj
from conftest import tree_max_rel_error
from helpers import make_problem, problems, x64_for
from mlp_jax.core import losses
from mlp_jax.core.backprop import backward, forward_with_cache
from mlp_jax.core.matmul import PARTS_MIN_BATCH, TINY_DOT, batch_bounds, choose_batch_parts, choose_layout, dot

TOLERANCE = {jnp.float64: 1e-12, jnp.float32: 1e-5}


@pytest.mark.x64
@pytest.mark.parametrize("m,k,n", [(4, 2, 8), (16, 16, 16), (3, 1, 5), (40, 30, 20), (1, 300, 1)])
@pytest.mark.parametrize("contract_a,contract_b", [(1, 0), (0, 0), (1, 1), (0, 1)])
def test_dot_equals_dot_general_every_form(m, k, n, contract_a, contract_b):
    rng = np.random.default_rng(m * k * n)
    a = rng.standard_normal((m, k) if contract_a == 1 else (k, m))
    b = rng.standard_normal((k, n) if contract_b == 0 else (n, k))
    expected = np.asarray(a if contract_a == 1 else a.T) @ np.asarray(b if contract_b == 0 else b.T)
    got = dot(jnp.asarray(a), jnp.asarray(b), contract_a, contract_b)  # float64
    assert got.shape == (m, n)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_tiny_dot_is_a_fused_product_and_large_one_a_dot():
    small = jax.make_jaxpr(lambda a, b: dot(a, b, 1, 0))(jnp.ones((4, 2)), jnp.ones((2, 8)))
    assert "dot_general" not in str(small) and TINY_DOT >= 4 * 2 * 8
    large = jax.make_jaxpr(lambda a, b: dot(a, b, 1, 0))(jnp.ones((64, 64)), jnp.ones((64, 64)))
    assert "dot_general" in str(large)


backprop_jit = jax.jit(mj.backprop, static_argnums=(3, 4), static_argnames=("layout", "batch_parts"))
autodiff_jit = jax.jit(jax.value_and_grad(mj.loss), static_argnums=(3, 4))


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["batch", "feature"])
@settings(max_examples=12, deadline=None)
@given(
    problem=problems(max_depth=4, max_width=40, max_batch=40),
    activation=st.sampled_from(["relu", "tanh", "gelu"]),
    parts=st.integers(1, 4),
)
def test_every_layout_matches_autodiff(layout, problem, activation, parts):
    """Both layouts, mixing tiny (fused product) and real dots, with the batch whole or cut into parts
    (the last ones uneven or single examples), against jax.grad."""
    with x64_for(problem["dtype"]):
        params, x, y, loss, weight = make_problem(**problem)
        parts = min(parts, x.shape[0])
        value, grads = backprop_jit(params, x, y, activation, loss, weight, layout=layout, batch_parts=parts)
        value_ad, grads_ad = autodiff_jit(params, x, y, activation, loss, weight)
        tol = TOLERANCE[problem["dtype"]]
        np.testing.assert_allclose(value, value_ad, rtol=tol)
        for g, p in zip(jax.tree.leaves(grads), jax.tree.leaves(params)):
            assert g.shape == p.shape and g.dtype == p.dtype
        if problem["dtype"] == jnp.float64:  # float32 cancellation is handled in test_backprop's helper
            assert tree_max_rel_error(grads, grads_ad) <= tol


@pytest.mark.slow
@pytest.mark.x64
def test_feature_layout_deltas_are_the_batch_deltas_transposed():
    params, x, y, loss, _ = make_problem(1, [30, 40, 20, 5], 24, "softmax_int", jnp.float64)
    spec = losses.get_loss(loss)
    out = {}
    for layout in ("batch", "feature"):
        cache = forward_with_cache(params, x, "tanh", layout)
        out[layout] = (cache, *backward(params, cache, spec.grad_logits(cache.logits, y), "tanh", layout))
    (cache_b, grads_b, deltas_b), (cache_f, grads_f, deltas_f) = out["batch"], out["feature"]
    np.testing.assert_allclose(cache_f.logits, cache_b.logits, rtol=1e-12)
    for a_b, a_f in zip(cache_b.inputs, cache_f.inputs):
        np.testing.assert_allclose(a_f, a_b.T, rtol=1e-12)
    for d_b, d_f in zip(deltas_b, deltas_f):
        np.testing.assert_allclose(d_f, d_b.T, rtol=1e-12, atol=1e-15)
    assert tree_max_rel_error(grads_f, grads_b) <= 1e-12


def test_auto_layout_rule():
    big = [784, 1024, 1024, 10]
    assert choose_layout("auto", big, 4096, jnp.float32) == ("feature" if jax.default_backend() == "cpu" else "batch")
    assert choose_layout("auto", big, 512, jnp.float32) == "batch"  # batch too small
    assert choose_layout("auto", [784, 256, 10], 4096, jnp.float32) == "batch"  # too narrow
    assert choose_layout("auto", big, 4096, jnp.float64) == "batch"  # XLA:CPU's fast path is float32
    assert choose_layout("auto", [784, 10], 4096, jnp.float32) == "batch"  # no hidden layer
    assert choose_layout("feature", [2, 3], 1, jnp.float64) == "feature"


def test_batch_parts_rule_and_bounds():
    assert choose_batch_parts("auto", "feature", PARTS_MIN_BATCH) == (2 if jax.device_count() == 1 else 1)
    assert choose_batch_parts("auto", "feature", PARTS_MIN_BATCH - 1) == 1
    assert choose_batch_parts("auto", "batch", 8 * PARTS_MIN_BATCH) == 1
    assert choose_batch_parts(3, "batch", 7) == 3 and choose_batch_parts(np.int64(2), "batch", 7) == 2
    assert batch_bounds(7, 3) == [(0, 2), (2, 4), (4, 7)] and batch_bounds(5, 1) == [(0, 5)]
    for bad in (0, 8, -1, "two", 2.0, True):
        with pytest.raises(ValueError, match=r"batch_parts must be 'auto' or an int in \[1, batch=7\] \(a static"):
            choose_batch_parts(bad, "batch", 7)


def test_auto_keeps_a_sharded_batch_whole(monkeypatch):
    """With several devices the batch may be sharded over them; a part would gather rows across devices."""
    monkeypatch.setattr(jax, "device_count", lambda: 4)
    assert choose_batch_parts("auto", "feature", 2 * PARTS_MIN_BATCH) == 1


@pytest.mark.x64
def test_batch_parts_change_only_rounding_in_float64():
    """Cut into parts, the pass joins the logits for the loss and sums the parts' gradients: the
    result is the whole batch's, weights and all, to float64 rounding."""
    params, x, y, loss, weight = make_problem(3, [5, 7, 6, 3], 11, "softmax_int", jnp.float64, True)
    whole = backprop_jit(params, x, y, "tanh", loss, weight, layout="feature", batch_parts=1)
    for parts in (2, 3, 11):
        cut = backprop_jit(params, x, y, "tanh", loss, weight, layout="feature", batch_parts=parts)
        np.testing.assert_allclose(cut[0], whole[0], rtol=1e-13)
        assert tree_max_rel_error(cut[1], whole[1]) <= 1e-12


def test_batch_parts_keep_bfloat16_gradients_bfloat16_and_close():
    """In bfloat16 each part's gradient is rounded to bfloat16 before the (float32) sum: the result keeps
    its dtype and stays within bfloat16 noise of autodiff (8-bit mantissa; ~2e-2 at worst here)."""
    params, x, y, loss, _ = make_problem(4, [6, 16, 3], 64, "softmax_int", jnp.float32)
    params, x = jax.tree.map(lambda a: a.astype(jnp.bfloat16), (params, x))
    _, expected = autodiff_jit(params, x, y, "relu", loss, None)
    for parts in (1, 4):
        _, grads = backprop_jit(params, x, y, "relu", loss, None, layout="batch", batch_parts=parts)
        assert all(g.dtype == jnp.bfloat16 for g in jax.tree.leaves(grads))
        assert tree_max_rel_error(grads, expected) <= 2e-2, parts


def test_unknown_layout_is_a_clear_error():
    params, x, y, loss, _ = make_problem(0, [3, 4, 2], 5, "mse", jnp.float32)
    with pytest.raises(ValueError, match=r"unknown layout 'rows'.*'auto', 'batch', 'feature'"):
        mj.backprop(params, x, y, "relu", loss, layout="rows")
    for call in (
        lambda: forward_with_cache(params, x, "relu", "rows"),
        lambda: backward(params, forward_with_cache(params, x, "relu"), jnp.zeros((5, 2)), "relu", "rows"),
    ):
        with pytest.raises(ValueError, match=r"layout must be 'batch' or 'feature', got 'rows'"):
            call()
