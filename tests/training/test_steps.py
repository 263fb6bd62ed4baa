"""`mlp_jax.training.steps`: update steps and fused epochs, compiled once, deterministic, manual == autodiff within
tolerance."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import mlp_jax as mj
from conftest import tree_max_rel_error
from mlp_jax.training.steps import (
    init_train_state,
    make_evaluate,
    make_fused_update,
    make_train_epoch,
    make_update,
    num_batches,
)

XOR_X = jnp.array([[0, 0], [0, 1], [1, 0], [1, 1]], jnp.float32)
XOR_Y = jnp.array([0, 1, 1, 0])


def blobs(n=50, seed=0, dtype=jnp.float32):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 5))
    y = (x[:, 0] + x[:, 1] ** 2 > 1).astype(np.int32) + (x[:, 2] > 0.5)
    return jnp.asarray(x, dtype), jnp.asarray(y, jnp.int32)


def test_update_compiles_once_and_trains_xor():
    opt = optax.adam(0.05)
    update = make_update(opt, activation="tanh", loss="softmax_cross_entropy")
    params = mj.init_params(jax.random.key(0), [2, 8, 2])
    opt_state = opt.init(params)
    for _ in range(200):
        params, opt_state, value = update(params, opt_state, XOR_X, XOR_Y)
    assert update._cache_size() == 1  # 200 calls, one compilation
    accuracy = make_evaluate(activation="tanh", loss="softmax_cross_entropy")(params, XOR_X, XOR_Y)["accuracy"]
    assert float(accuracy) == 1.0 and float(value) < 0.05


def test_update_donates_params_and_opt_state():
    opt = optax.sgd(0.1)
    update = make_update(opt, activation="relu", loss="softmax_cross_entropy")
    params = mj.init_params(jax.random.key(0), [2, 4, 2])
    opt_state = opt.init(params)
    new_params, _, _ = update(params, opt_state, XOR_X, XOR_Y)
    assert all(leaf.is_deleted() for leaf in jax.tree.leaves(params))
    assert not any(leaf.is_deleted() for leaf in jax.tree.leaves(new_params))


@pytest.mark.parametrize("optimizer", [optax.sgd(0.1), optax.adam(1e-2)], ids=["sgd", "adam"])
def test_manual_and_autodiff_training_agree_over_100_steps(optimizer):
    x, y = blobs()
    runs = {}
    for grad in ("manual", "autodiff"):
        update = make_update(optimizer, activation="tanh", loss="softmax_cross_entropy", grad=grad)
        params = mj.init_params(jax.random.key(3), [5, 16, 16, 3])
        opt_state = optimizer.init(params)
        for _ in range(100):
            params, opt_state, value = update(params, opt_state, x, y)
        runs[grad] = (params, value)
    assert tree_max_rel_error(runs["manual"][0], runs["autodiff"][0]) < 1e-4
    np.testing.assert_allclose(runs["manual"][1], runs["autodiff"][1], rtol=1e-4)


def test_same_seed_bit_identical_epochs():
    x, y = blobs(n=61)
    opt = optax.adam(1e-2)

    def run():
        state = init_train_state(mj.init_params(jax.random.key(0), [5, 8, 3]), opt, jax.random.key(1))
        epoch = make_train_epoch(opt, activation="relu", loss="softmax_cross_entropy", batch_size=16)
        for _ in range(5):
            state, _ = epoch(state, x, y)
        return state

    a, b = run(), run()
    for leaf_a, leaf_b in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
        np.testing.assert_array_equal(leaf_a, leaf_b)
    assert int(a.step) == 5 * num_batches(61, 16) == 20


@pytest.mark.x64  # float64, so the comparison with the hand-applied updates can be to 1e-12
def test_epoch_uses_the_partial_last_batch_exactly():
    """With sgd, one epoch equals the same updates applied by hand to the same shuffled minibatches,
    the last one the plain mean over its 3 real examples."""
    x, y = blobs(n=19, dtype=jnp.float64)
    opt = optax.sgd(0.5)
    params = mj.init_params(jax.random.key(0), [5, 6, 3], dtype=jnp.float64)
    state = init_train_state(params, opt, jax.random.key(7))
    epoch = make_train_epoch(opt, activation="tanh", loss="softmax_cross_entropy", batch_size=8, donate=False)
    new_state, losses = epoch(state, x, y)
    assert losses.shape == (3,)

    _, shuffle_key, _ = jax.random.split(state.key, 3)
    order = np.asarray(jax.random.permutation(shuffle_key, 19))
    expected = params
    backprop = jax.jit(mj.backprop, static_argnums=(3, 4))  # one compile per batch shape, not per primitive
    for batch in (order[:8], order[8:16], order[16:]):
        _, grads = backprop(expected, x[batch], y[batch], "tanh", "softmax_cross_entropy")
        expected = jax.tree.map(lambda p, g: p - 0.5 * g, expected, grads)
    assert tree_max_rel_error(new_state.params, expected) < 1e-12


def test_fused_update_equals_a_loop_of_updates():
    x, y = blobs(n=32)
    opt = optax.sgd(0.1)
    params = mj.init_params(jax.random.key(0), [5, 8, 3])
    fused = make_fused_update(opt, 10, activation="relu", loss="softmax_cross_entropy", donate=False)
    p_fused, _, losses = fused(params, opt.init(params), x, y)
    update = make_update(opt, activation="relu", loss="softmax_cross_entropy", donate=False)
    p_loop, s = params, opt.init(params)
    for _ in range(10):
        p_loop, s, _ = update(p_loop, s, x, y)
    assert losses.shape == (10,)
    assert tree_max_rel_error(p_fused, p_loop) < 1e-5


def test_unknown_grad_source():
    with pytest.raises(ValueError, match="unknown grad 'numeric'"):
        make_update(optax.sgd(0.1), grad="numeric")


def test_evaluate_metrics():
    params = (mj.Layer(jnp.eye(2, dtype=jnp.float32), jnp.zeros(2, jnp.float32)),)
    x = jnp.array([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0]], jnp.float32)
    metrics = make_evaluate(activation="relu", loss="softmax_cross_entropy")(params, x, jnp.array([0, 1, 1]))
    assert float(metrics["accuracy"]) == pytest.approx(2 / 3)
    mse = make_evaluate(loss="mse")(params, x, x)
    assert set(mse) == {"loss"} and float(mse["loss"]) == 0.0


def test_fused_update_last_loss_only():
    x, y = blobs(n=32)
    opt = optax.sgd(0.1)
    params = mj.init_params(jax.random.key(0), [5, 8, 3])
    common = dict(activation="relu", loss="softmax_cross_entropy", donate=False)
    p_all, _, all_losses = make_fused_update(opt, 7, **common)(params, opt.init(params), x, y)
    p_last, _, last = make_fused_update(opt, 7, losses="last", **common)(params, opt.init(params), x, y)
    assert last.shape == () and float(last) == float(all_losses[-1])
    assert tree_max_rel_error(p_last, p_all) == 0.0
    with pytest.raises(ValueError, match="losses must be"):
        make_fused_update(opt, 7, losses="none")


def test_update_with_dropout_is_the_optax_step_of_the_dropped_out_loss_and_needs_a_key():
    x, y = blobs(n=16)
    opt = optax.sgd(0.1)
    params = mj.init_params(jax.random.key(0), [5, 8, 8, 3])
    key = jax.random.key(4)
    loss_and_grads = jax.jit(jax.value_and_grad(mj.loss), static_argnames=("activation", "loss", "dropout"))
    value, grads = loss_and_grads(params, x, y, activation="relu", loss="softmax_cross_entropy", dropout=0.5, key=key)
    expected = jax.tree.map(lambda p, g: p - 0.1 * g, params, grads)
    for grad in ("manual", "autodiff"):
        update = make_update(opt, activation="relu", loss="softmax_cross_entropy", grad=grad, donate=False, dropout=0.5)
        new_params, _, new_value = update(params, opt.init(params), x, y, key=key)
        assert tree_max_rel_error(new_params, expected) < 1e-5 and new_value == pytest.approx(float(value))
    with pytest.raises(ValueError, match=r"dropout=0.5 needs a PRNG key for every update"):
        update(params, opt.init(params), x, y)


def test_fused_update_and_epoch_split_one_dropout_key_per_step():
    x, y = blobs(n=32)
    opt = optax.sgd(0.1)
    params = mj.init_params(jax.random.key(0), [5, 8, 3])
    kwargs = dict(activation="relu", loss="softmax_cross_entropy", donate=False, dropout=0.3)
    key = jax.random.key(9)
    p_fused, _, losses = make_fused_update(opt, 2, **kwargs)(params, opt.init(params), x, y, key)
    update = make_update(opt, **kwargs)
    p_loop, s = params, opt.init(params)
    for step_key in jax.random.split(key, 2):
        p_loop, s, _ = update(p_loop, s, x, y, key=step_key)
    assert losses.shape == (2,) and tree_max_rel_error(p_fused, p_loop) < 1e-5
    with pytest.raises(ValueError, match="needs a PRNG key"):
        make_fused_update(opt, 2, **kwargs)(params, opt.init(params), x, y)
    # the epoch: the same updates with manual and autodiff gradients, and not those without dropout
    state = init_train_state(params, opt, jax.random.key(1))
    epochs = {grad: make_train_epoch(opt, **{**kwargs, "grad": grad}, batch_size=8) for grad in ("manual", "autodiff")}
    (manual, _), (autodiff, _) = (epochs[grad](state, x, y) for grad in ("manual", "autodiff"))
    assert tree_max_rel_error(manual.params, autodiff.params) < 1e-5
    plain, _ = make_train_epoch(opt, **{**kwargs, "dropout": 0.0}, batch_size=8)(state, x, y)
    assert tree_max_rel_error(manual.params, plain.params) > 1e-3


@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        (dict(dropout=1.5), ValueError, r"dropout must be in \[0, 1\).*got 1.5"),
        (dict(dropout="0.1"), TypeError, "dropout must be a number"),
        (dict(dropout=0.1, grad=lambda p, x, y, sample_weight=None, key=None: (0.0, p)), ValueError, "a callable"),
    ],
    ids=["rate-1.5", "rate-str", "callable-grad"],
)
def test_bad_dropout_is_refused_when_the_update_is_made(kwargs, error, message):
    for make in (make_update, make_train_epoch, lambda opt, **kw: make_fused_update(opt, 2, **kw)):
        with pytest.raises(error, match=message):
            make(optax.sgd(0.1), **kwargs)
