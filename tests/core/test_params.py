"""init_params: structure, dtypes, and each scheme's variance checked statistically; check_params: params
that are not a chain of float Layers get a clear error from every entry point."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import mlp_jax as mj
from helpers import ENTRY_POINTS, LABELS, entry_point

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


def test_same_key_same_params(key):
    a = mj.init_params(key, [3, 4, 2])
    b = mj.init_params(key, [3, 4, 2])
    assert all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64, jnp.bfloat16])
def test_params_take_the_dtype(key, dtype):
    params = mj.init_params(key, [3, 4, 2], dtype=dtype)
    assert all(leaf.dtype == dtype for leaf in jax.tree.leaves(params))


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


@pytest.mark.parametrize(
    "sizes,match",
    [
        ([3, 2**62], r"layer_sizes\[1\] = 4611686018427387904 is over the limit of 2147483647 units per layer"),
        ([3, 2**31], r"layer_sizes\[1\] = 2147483648 is over the limit of 2147483647"),
        ([2**20, 2**17, 2**20], r"make 274879086592 parameters, over the limit of 68719476736"),
    ],
    ids=["2**62", "2**31", "total"],
)
def test_sizes_over_the_limits_are_a_value_error_naming_the_limit(key, sizes, match):
    """Once a C++ abort of the whole interpreter ("overflow in static extent product")."""
    with pytest.raises(ValueError, match=match):
        mj.init_params(key, sizes)


def test_the_size_limits_admit_what_they_name():
    from mlp_jax.core.params import check_layer_sizes, parameter_count

    assert mj.MAX_LAYER_SIZE == 2**31 - 1 and mj.MAX_PARAMETERS == 2**36
    assert check_layer_sizes([1, mj.MAX_LAYER_SIZE, 1]) == [1, mj.MAX_LAYER_SIZE, 1]  # checked, not allocated
    assert parameter_count([3, 4, 2]) == 3 * 4 + 4 + 4 * 2 + 2
    limit = [2**18, 2**18 - 1]  # 2**36 - 2**18 weights and 2**18 - 1 biases: one under the limit
    assert parameter_count(limit) == mj.MAX_PARAMETERS - 1 and check_layer_sizes(limit) == limit
    with pytest.raises(ValueError, match="over the limit"):
        check_layer_sizes([2**18, 2**18])


def test_unknown_init_lists_known(key):
    with pytest.raises(ValueError, match=r"unknown init 'xavier'.*he_normal"):
        mj.init_params(key, [2, 2], init="xavier")


def test_integer_dtype_refused(key):
    with pytest.raises(TypeError, match="floating"):
        mj.init_params(key, [2, 2], dtype=jnp.int32)


def test_layer_sizes_take_numpy_ints_and_refuse_others():
    params = mj.init_params(jax.random.key(0), [np.int64(3), np.int32(2)])
    assert params[0].w.shape == (3, 2)
    for sizes in ([3, 2.0], [3, True], [3, "2"], [3, 0]):
        with pytest.raises(ValueError, match=r"layer_sizes must be positive integers, got \[3, "):
            mj.init_params(jax.random.key(0), sizes)


# ------------------------------------------------------------------------------------------------
# check_params, through every entry point

X = jnp.ones((6, 4), jnp.float32)


@pytest.fixture(params=ENTRY_POINTS)
def call(request):
    """Each entry point, eager and traced, taking (params, x, y, loss=...)."""
    return entry_point(request.param)


def test_params_do_not_chain(call):
    bad = (mj.Layer(jnp.ones((4, 5)), jnp.ones(5)), mj.Layer(jnp.ones((6, 3)), jnp.ones(3)))
    with pytest.raises(ValueError, match="layer 0 has out=5 but layer 1 has in=6"):
        call(bad, X)


def test_bias_shape_mismatch(call):
    bad = (mj.Layer(jnp.ones((4, 3)), jnp.ones(2)),)
    with pytest.raises(ValueError, match=r"params\[0\].b must have shape \(3,\)"):
        call(bad, X)


@pytest.mark.x64
def test_mixed_param_dtypes(call):
    bad = (
        mj.Layer(jnp.ones((4, 5), jnp.float32), jnp.ones(5, jnp.float32)),
        mj.Layer(jnp.ones((5, 3), jnp.float64), jnp.ones(3, jnp.float64)),
    )
    with pytest.raises(TypeError, match="mixed dtypes"):
        call(bad, X)


def test_params_donated_to_a_training_step_get_a_clear_error():
    from mlp_jax.training.steps import make_update

    params = mj.init_params(jax.random.key(0), [4, 5, 3], dtype=jnp.float32)
    update = make_update(optax.sgd(0.1), activation="relu", loss="softmax_cross_entropy")
    new_params, _, _ = update(params, optax.sgd(0.1).init(params), X, LABELS)
    with pytest.raises(RuntimeError, match=r"params\[0\].w was donated to a training step.*use the params they return"):
        mj.loss(params, X, LABELS, loss="softmax_cross_entropy")
    assert jnp.isfinite(mj.loss(new_params, X, LABELS, loss="softmax_cross_entropy"))
