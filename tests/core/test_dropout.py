"""Dropout: the rate's and the key's checks, the masks, forward and loss with dropout, and the hand-written
pass with dropout against jax.grad of the same loss with the same key (both layouts, batch parts)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mlp_jax as mj
from conftest import tree_max_rel_error
from helpers import make_problem
from mlp_jax.core.dropout import check_dropout, dropout_masks

TOLERANCE = {jnp.float64: 1e-12, jnp.float32: 1e-5}
# (dtype, activation, label kind, weighted, layouts, key): several activations, every loss, with and without
# weights, each (layout, batch parts) variant in both dtypes, typed and legacy keys. Few compiles each: the
# random bits make every compile of a pass with dropout cost about a second.
CASES = [
    (jnp.float64, "relu", "softmax_int", False, [("batch", 1), ("feature", 2)], "typed"),
    (jnp.float32, "sigmoid", "sigmoid_bce", True, [("feature", 1), ("batch", 3)], "legacy"),
    pytest.param(jnp.float64, "tanh", "mse", True, [("feature", 1), ("batch", 3)], "legacy", marks=pytest.mark.slow),
    pytest.param(
        jnp.float32, "gelu", "softmax_prob", False, [("batch", 1), ("feature", 2)], "typed", marks=pytest.mark.slow
    ),
]

backprop_jit = jax.jit(mj.backprop, static_argnames=("activation", "loss", "layout", "batch_parts", "dropout"))


def autodiff(params, x, y, activation, loss, weight, rate, key):
    return jax.value_and_grad(mj.loss)(params, x, y, activation, loss, weight, dropout=rate, key=key)


autodiff_jit = jax.jit(autodiff, static_argnums=(3, 4, 6))


@pytest.mark.parametrize("dtype,activation,kind,weighted,layouts,key_kind", CASES)
def test_backprop_with_dropout_equals_autodiff(dtype, activation, kind, weighted, layouts, key_kind):
    """Every layout and batch-part count draws the masks forward() draws and reuses them going back; a raw
    (2,) uint32 key (jax.random.PRNGKey) works as a typed one does."""
    params, x, y, loss, weight = make_problem(7, [5, 8, 7, 4], 12, kind, dtype, weighted)
    key = jax.random.key(3) if key_kind == "typed" else jax.random.PRNGKey(3)
    value_ad, grads_ad = autodiff_jit(params, x, y, activation, loss, weight, 0.4, key)
    for layout, parts in layouts:
        value, grads = backprop_jit(
            params, x, y, activation, loss, weight, layout=layout, batch_parts=parts, dropout=0.4, key=key
        )
        np.testing.assert_allclose(value, value_ad, rtol=TOLERANCE[dtype])
        assert tree_max_rel_error(grads, grads_ad) <= TOLERANCE[dtype], (layout, parts)
        assert jax.tree.structure(grads) == jax.tree.structure(params)


@jax.jit
def _forward_masks_and_caches(params, x, key):
    caches = [mj.forward_with_cache(params, x, "relu", layout, dropout=0.5, key=key) for layout in ("batch", "feature")]
    return mj.forward(params, x, "relu", dropout=0.5, key=key), dropout_masks(params, x.shape[0], 0.5, key), caches


def test_cache_keeps_masked_inputs_and_masks_in_its_layout():
    params, x, _, _, _ = make_problem(2, [4, 9, 7, 3], 6, "mse", jnp.float32)
    logits, masks, caches = _forward_masks_and_caches(params, x, jax.random.key(5))
    for layout, cache in zip(("batch", "feature"), caches):
        np.testing.assert_allclose(cache.logits, logits, rtol=1e-6)
        assert len(cache.masks) == 2
        for l, mask in enumerate(masks):
            stored = cache.masks[l] if layout == "batch" else cache.masks[l].T
            np.testing.assert_array_equal(stored, mask)
            a = cache.inputs[l + 1] if layout == "batch" else cache.inputs[l + 1].T
            z = cache.pre_activations[l] if layout == "batch" else cache.pre_activations[l].T
            np.testing.assert_allclose(a, jax.nn.relu(z) * mask, rtol=1e-6)
            assert np.all(np.asarray(a)[np.asarray(mask) == 0] == 0)


def test_masks_keep_units_with_probability_one_minus_rate_and_scale_them():
    params = mj.init_params(jax.random.key(0), [3, 200, 100, 2])
    draw = jax.jit(lambda key: dropout_masks(params, 500, 0.3, key))
    masks = draw(jax.random.key(1))
    assert [m.shape for m in masks] == [(500, 200), (500, 100)]
    for mask in masks:
        values = np.unique(np.asarray(mask))
        np.testing.assert_allclose(values, [0.0, 1 / 0.7], rtol=1e-6)
        assert abs(float(jnp.mean(mask > 0)) - 0.7) < 0.01
        assert abs(float(jnp.mean(mask)) - 1.0) < 0.02  # inverted dropout: the expected output is unchanged
    again, other = draw(jax.random.key(1)), draw(jax.random.key(2))
    assert all(np.array_equal(a, b) for a, b in zip(masks, again))
    assert not np.array_equal(masks[0], other[0])
    assert not np.array_equal(masks[0], masks[1][:, :100].repeat(2, axis=1))  # each layer its own draw


def test_dropout_is_off_with_rate_zero_or_no_key():
    params, x, y, loss, _ = make_problem(4, [3, 5, 2], 4, "softmax_int", jnp.float32)
    settings = ({"dropout": 0.0, "key": jax.random.key(0)}, {"dropout": 0.5, "key": None}, {"dropout": 0}, {})

    @jax.jit
    def run(params, x, y):
        return [
            (
                mj.backprop(params, x, y, "relu", loss, **kwargs),
                mj.forward(params, x, "relu", **kwargs),
                mj.loss(params, x, y, "relu", loss, **kwargs),
                mj.forward_with_cache(params, x, "relu", **kwargs).masks,
            )
            for kwargs in settings
        ]

    results = run(params, x, y)
    for result in results:
        assert result[3] == ()
        assert tree_max_rel_error(result, results[-1]) == 0
    key = jax.random.key(0)
    assert dropout_masks(mj.init_params(key, [3, 2]), 4, 0.5, key) == ()  # no hidden layer: nothing to drop


def test_no_dropout_compiles_to_the_program_without_the_key():
    """Rate 0 with a key lowers to exactly the program without dropout: no random bits, no masks."""
    params, x, y, loss, _ = make_problem(4, [6, 16, 16, 3], 32, "softmax_int", jnp.float32)
    key = jax.random.key(0)
    plain = jax.jit(lambda p, x, y, k: mj.backprop(p, x, y, "relu", loss)).lower(params, x, y, key).as_text()
    off = jax.jit(lambda p, x, y, k: mj.backprop(p, x, y, "relu", loss, dropout=0.0, key=k))
    on = jax.jit(lambda p, x, y, k: mj.backprop(p, x, y, "relu", loss, dropout=0.5, key=k))
    assert off.lower(params, x, y, key).as_text() == plain
    assert on.lower(params, x, y, key).as_text() != plain


@pytest.mark.parametrize(
    "rate,error,match",
    [
        (1.0, ValueError, r"dropout must be in \[0, 1\).*got 1.0"),
        (-0.1, ValueError, r"dropout must be in \[0, 1\).*got -0.1"),
        (float("nan"), ValueError, r"got nan"),
        ("0.5", TypeError, r"dropout must be a number in \[0, 1\), got '0.5'"),
        (True, TypeError, r"got True"),
        (None, TypeError, r"got None"),
        ([0.1, 0.2], TypeError, r"got \[0.1, 0.2\]"),
    ],
)
def test_bad_rate_is_a_clear_error_even_without_a_key(rate, error, match):
    params, x, y, loss, _ = make_problem(0, [3, 4, 2], 2, "softmax_int", jnp.float32)
    key = jax.random.key(0)
    for call in (
        lambda: mj.forward(params, x, "relu", dropout=rate, key=key),
        lambda: mj.loss(params, x, y, "relu", loss, dropout=rate),
        lambda: mj.backprop(params, x, y, "relu", loss, dropout=rate, key=key),
        lambda: mj.forward_with_cache(params, x, "relu", dropout=rate, key=key),
    ):
        with pytest.raises(error, match=match):
            call()


def test_bad_key_and_traced_rate_are_clear_errors():
    params, x, y, loss, _ = make_problem(0, [3, 4, 2], 2, "softmax_int", jnp.float32)
    with pytest.raises(TypeError, match=r"key must be one PRNG key.*got int 3"):
        mj.backprop(params, x, y, "relu", loss, dropout=0.5, key=3)
    with pytest.raises(TypeError, match=r"key must be one PRNG key.*shape \(2,\) and dtype key"):
        mj.forward(params, x, "relu", dropout=0.5, key=jax.random.split(jax.random.key(0)))
    with pytest.raises(TypeError, match="concrete number"):
        jax.jit(lambda r: mj.forward(params, x, "relu", dropout=r, key=jax.random.key(0)))(0.5)
    assert check_dropout(np.float32(0.25), jax.random.key(0)) == 0.25
    assert check_dropout(jnp.asarray(0.25), None) == 0.0
