"""init_params: structure, dtypes, and each scheme's variance checked statistically."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import mlp_jax as mj

VARIANCE = {
    "he_normal": lambda i, o: 2 / i,
    "he_uniform": lambda i, o: 2 / i,
    "glorot_normal": lambda i, o: 2 / (i + o),
    "glorot_uniform": lambda i, o: 2 / (i + o),
    "lecun_normal": lambda i, o: 1 / i,
    "lecun_uniform": lambda i, o: 1 / i,
}


@pytest.mark.parametrize("init", sorted(VARIANCE))
def test_init_variance(init):
    fan_in, fan_out = 400, 300
    (layer,) = mj.init_params(jax.random.key(1), [fan_in, fan_out], init=init)
    w = np.asarray(layer.w, np.float64)
    n = w.size
    expected = VARIANCE[init](fan_in, fan_out)
    # The sample variance of n draws has relative standard error about sqrt(2 / n) (normal) or less
    # (uniform); 5 standard errors make a false alarm vanishingly rare.
    assert abs(w.var() / expected - 1) < 5 * np.sqrt(2 / n)
    assert abs(w.mean()) < 5 * np.sqrt(expected / n)
    if init.endswith("uniform"):
        limit = np.sqrt(3 * expected)
        assert np.abs(w).max() <= limit and np.abs(w).max() > 0.99 * limit
    np.testing.assert_array_equal(layer.b, 0)


def test_structure_dtypes_and_pytree(key):
    params = mj.init_params(key, [784, 256, 10], init="he_normal", dtype=jnp.float32)
    assert isinstance(params, tuple) and all(isinstance(layer, mj.Layer) for layer in params)
    assert [layer.w.shape for layer in params] == [(784, 256), (256, 10)]
    assert [layer.b.shape for layer in params] == [(256,), (10,)]
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(params))
    assert len(jax.tree.leaves(params)) == 4
    # optax takes params as they are
    opt = optax.adam(1e-3)
    state = opt.init(params)
    updates, _ = opt.update(jax.tree.map(jnp.ones_like, params), state, params)
    assert jax.tree.structure(optax.apply_updates(params, updates)) == jax.tree.structure(params)


def test_same_key_same_params_and_dtypes(key):
    a = mj.init_params(key, [3, 4, 2])
    b = mj.init_params(key, [3, 4, 2])
    assert all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    p64 = mj.init_params(key, [3, 4, 2], dtype=jnp.float64)
    assert all(leaf.dtype == jnp.float64 for leaf in jax.tree.leaves(p64))
    pbf = mj.init_params(key, [3, 4, 2], dtype=jnp.bfloat16)
    assert all(leaf.dtype == jnp.bfloat16 for leaf in jax.tree.leaves(pbf))


@pytest.mark.parametrize(
    "sizes,match",
    [
        ([5], "at least 2 entries"),
        ([], "at least 2 entries"),
        ([5, 0, 2], "positive integers"),
        ([5, -1], "positive integers"),
        ([5, 2.5], "positive integers"),
    ],
)
def test_bad_layer_sizes(key, sizes, match):
    with pytest.raises(ValueError, match=match):
        mj.init_params(key, sizes)


def test_unknown_init_lists_known(key):
    with pytest.raises(ValueError, match=r"unknown init 'xavier'.*he_normal"):
        mj.init_params(key, [2, 2], init="xavier")


def test_integer_dtype_refused(key):
    with pytest.raises(TypeError, match="floating"):
        mj.init_params(key, [2, 2], dtype=jnp.int32)
