"""Per-example gradients, their norms and the DP gradient against references built from vmap(grad)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import mlp_jax as mj
from conftest import tree_max_rel_error
from helpers import activation_kind_pairs, make_problem
from mlp_jax.tools.per_example import dp_noise, make_dp_gradient, per_example_grad_norms, per_example_grads
from mlp_jax.training.steps import init_train_state, make_train_epoch, make_update

SIZES, BATCH = [3, 5, 4], 6


def reference_grads(params, x, y, activation, loss):
    """jax.vmap(jax.grad(loss)) over single examples: each example's own term."""
    one = lambda xi, yi: jax.grad(mj.loss)(params, xi[None], yi[None], activation, loss)
    return jax.vmap(one)(x, y)


def flat_norms(per_example):
    """(B,) L2 norms of per-example gradient pytrees with a leading batch axis."""
    return jnp.sqrt(sum(jnp.sum(leaf.reshape(leaf.shape[0], -1) ** 2, axis=1) for leaf in jax.tree.leaves(per_example)))


def both_ways(params, x, y, activation, loss):
    """(manual per-example grads, their norms, the vmap(grad) reference). Eager: the 40 pairs share most
    compiled primitives, which is twice as fast as one jit compile per pair."""
    return (
        per_example_grads(params, x, y, activation=activation, loss=loss),
        per_example_grad_norms(params, x, y, activation=activation, loss=loss),
        reference_grads(params, x, y, activation, loss),
    )


@pytest.mark.x64
@pytest.mark.parametrize("activation,kind", activation_kind_pairs(mj.known_activations()))
def test_per_example_grads_and_norms_match_vmap_grad(activation, kind):
    params, x, y, loss, _ = make_problem(11, SIZES, BATCH, kind, jnp.float64)
    grads, norms, reference = both_ways(params, x, y, activation, loss)
    assert jax.tree.structure(grads) == jax.tree.structure(params)
    for g, p in zip(jax.tree.leaves(grads), jax.tree.leaves(params)):
        assert g.shape == (BATCH, *p.shape) and g.dtype == p.dtype
    assert tree_max_rel_error(grads, reference) <= 1e-10
    assert norms.shape == (BATCH,)
    np.testing.assert_allclose(norms, flat_norms(reference), rtol=1e-10)
    np.testing.assert_allclose(norms, flat_norms(grads), rtol=1e-12)


def test_per_example_grads_sum_to_the_batch_gradient_in_float32():
    params, x, y, loss, _ = make_problem(2, SIZES, BATCH, "softmax_int", jnp.float32)
    grads = per_example_grads(params, x, y, activation="tanh", loss=loss)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(grads))
    _, batch_grads = mj.backprop(params, x, y, "tanh", loss)
    assert tree_max_rel_error(jax.tree.map(lambda g: g.mean(axis=0), grads), batch_grads) < 1e-6


@pytest.mark.x64
def test_norms_never_materialise_per_example_gradients():
    """No intermediate of the norm computation has a (batch, d_in, d_out) shape: memory O(batch * width).
    (Layers wide enough that no dot is a tiny one, which mlp_jax.core.matmul computes as a fused product.)"""
    params, x, y, loss, _ = make_problem(0, [70, 90, 50], BATCH, "mse", jnp.float64)
    jaxpr = jax.make_jaxpr(lambda p: per_example_grad_norms(p, x, y, activation="relu", loss=loss))(params)
    shapes = [v.aval.shape for eqn in jaxpr.eqns for v in eqn.outvars]
    assert max(len(s) for s in shapes) == 2, shapes


# ------------------------------------------------------------------------------------------------
# The DP gradient


def dp_reference(params, x, y, key, *, activation, loss, clip_norm, noise_multiplier, weight=None):
    """Clip vmap(grad) per-example gradients to clip_norm, sum, add the same noise, average."""
    per_example = reference_grads(params, x, y, activation, loss)
    norms = flat_norms(per_example)
    factor = jnp.minimum(1.0, clip_norm / norms)
    count = x.shape[0]
    if weight is not None:
        factor, count = factor * weight, jnp.sum(weight)
    clipped = jax.tree.map(lambda g: jnp.tensordot(factor, g, axes=1), per_example)
    noise = dp_noise(key, params, noise_multiplier * clip_norm)
    value = mj.loss(params, x, y, activation, loss, weight)
    return value, jax.tree.map(lambda g, n: (g + n) / count, clipped, noise)


DP = dict(activation="tanh", loss="softmax_cross_entropy", clip_norm=1.7, noise_multiplier=1.3)


@pytest.mark.x64
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_dp_gradient_matches_vmap_grad_reference(weighted):
    params, x, y, _, _ = make_problem(5, SIZES, BATCH, "softmax_int", jnp.float64)
    weight = jnp.array([1.0, 0.0, 1.0, 1.0, 0.0, 1.0]) if weighted else None
    key = jax.random.key(7)
    value, grads = make_dp_gradient(**DP)(params, x, y, weight, key)
    ref_value, ref_grads = dp_reference(params, x, y, key, **DP, weight=weight)
    np.testing.assert_allclose(value, ref_value, rtol=1e-14)
    assert tree_max_rel_error(grads, ref_grads) <= 1e-12
    # some examples are clipped and some are not, so both branches of min(1, C / norm) are exercised
    norms = per_example_grad_norms(params, x, y, activation="tanh", loss="softmax_cross_entropy")
    assert (norms > DP["clip_norm"]).any() and (norms < DP["clip_norm"]).any()


@pytest.mark.x64
def test_dp_gradient_as_the_gradient_source_of_make_update():
    params, x, y, _, _ = make_problem(5, SIZES, BATCH, "softmax_int", jnp.float64)
    key = jax.random.key(3)
    opt = optax.sgd(0.1)
    grad = make_dp_gradient(**DP)
    update = make_update(opt, activation="tanh", loss="softmax_cross_entropy", grad=grad, donate=False)
    new_params, _, value = update(params, opt.init(params), x, y, None, key)
    ref_value, ref_grads = dp_reference(params, x, y, key, **DP)
    expected = jax.tree.map(lambda p, g: p - 0.1 * g, params, ref_grads)
    np.testing.assert_allclose(value, ref_value, rtol=1e-14)
    assert tree_max_rel_error(new_params, expected) <= 1e-12


def test_dp_gradient_trains_a_whole_epoch_with_a_partial_batch():
    params, x, y, _, _ = make_problem(1, SIZES, 10, "softmax_int", jnp.float32)
    opt = optax.sgd(0.1)
    epoch = make_train_epoch(
        opt, activation="tanh", loss="softmax_cross_entropy", grad=make_dp_gradient(**DP), batch_size=4
    )
    state, losses = epoch(init_train_state(params, opt, jax.random.key(0)), x, y)
    assert losses.shape == (3,) and np.isfinite(np.asarray(losses)).all()
    assert all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree.leaves(state.params))


@pytest.mark.x64
def test_dp_gradient_needs_a_key_and_valid_settings():
    params, x, y, _, _ = make_problem(5, SIZES, BATCH, "softmax_int", jnp.float64)
    with pytest.raises(ValueError, match="needs a PRNG key"):
        make_dp_gradient(**DP)(params, x, y)
    with pytest.raises(ValueError, match="clip_norm must be > 0"):
        make_dp_gradient(**{**DP, "clip_norm": 0.0})
    with pytest.raises(ValueError, match="noise_multiplier must be >= 0"):
        make_dp_gradient(**{**DP, "noise_multiplier": -1.0})
    with pytest.raises(ValueError, match="unknown activation"):
        make_dp_gradient(**{**DP, "activation": "nope"})
