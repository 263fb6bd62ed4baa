"""The hand-written backprop against jax.value_and_grad and against central finite differences."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings

import mlp_jax as mj
from conftest import tree_max_rel_error
from helpers import LABEL_KINDS, make_problem, problems

ACTIVATIONS = mj.known_activations()
TOLERANCE = {jnp.float64: 1e-12, jnp.float32: 1e-5}


def autodiff(params, x, y, activation, loss, weight):
    return jax.value_and_grad(mj.loss)(params, x, y, activation, loss, weight)


# Jitted (one compile per drawn shape instead of one per primitive); jit vs eager is tested below.
backprop_jit = jax.jit(mj.backprop, static_argnums=(3, 4))
autodiff_jit = jax.jit(autodiff, static_argnums=(3, 4))


@pytest.mark.parametrize("activation", ACTIVATIONS)
@settings(max_examples=10)
@given(problem=problems())
def test_backprop_matches_autodiff_property(activation, problem):
    dtype = problem["dtype"]
    params, x, y, loss, weight = make_problem(**problem)
    value, grads = backprop_jit(params, x, y, activation, loss, weight)
    value_ad, grads_ad = autodiff_jit(params, x, y, activation, loss, weight)
    np.testing.assert_allclose(value, value_ad, rtol=TOLERANCE[dtype])
    assert jax.tree.structure(grads) == jax.tree.structure(params)
    for g, p in zip(jax.tree.leaves(grads), jax.tree.leaves(params)):
        assert g.shape == p.shape and g.dtype == p.dtype
    assert_close_to_autodiff(grads, grads_ad, params, x, y, activation, loss, weight)


def assert_close_to_autodiff(grads, grads_ad, params, x, y, activation, loss, weight):
    """Every leaf within TOLERANCE of autodiff, relative to the leaf's largest entry.

    In float32 a leaf that sums many cancelling terms can differ by more than that between two
    correct summation orders. Such a leaf still passes when the manual gradient is within tolerance
    of a float64 run of the same net and no further from it than autodiff is: the gap is then
    autodiff's rounding, not ours.
    """
    dtype = jax.tree.leaves(params)[0].dtype
    tol = TOLERANCE[dtype.type]
    if tree_max_rel_error(grads, grads_ad) <= tol:
        return
    assert dtype == jnp.float32
    to64 = lambda t: jax.tree.map(lambda a: jnp.asarray(a, jnp.float64) if a.dtype == dtype else a, t)
    weight64 = None if weight is None else to64(weight)
    _, reference = autodiff(to64(params), to64(x), to64(y), activation, loss, weight64)
    for g, g_ad, ref in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_ad), jax.tree.leaves(reference)):
        err, err_ad = tree_max_rel_error(g, ref), tree_max_rel_error(g_ad, ref)
        assert tree_max_rel_error(g, g_ad) <= tol or (err <= tol and err <= err_ad), (err, err_ad)


@pytest.mark.parametrize("activation,kind,weighted", list(itertools.product(ACTIVATIONS, LABEL_KINDS, [False, True])))
def test_backprop_matches_autodiff_every_pair(activation, kind, weighted):
    """The full activation x loss x weighting matrix on one fixed net, float64 and float32."""
    for dtype in (jnp.float64, jnp.float32):
        params, x, y, loss, weight = make_problem(3, [5, 7, 6, 4], 9, kind, dtype, weighted)
        value, grads = mj.backprop(params, x, y, activation, loss, weight)
        value_ad, grads_ad = autodiff(params, x, y, activation, loss, weight)
        assert value == value_ad
        assert_close_to_autodiff(grads, grads_ad, params, x, y, activation, loss, weight)


def central_differences(f, params, step=1e-6):
    """d f / d params by (f(p + h e_i) - f(p - h e_i)) / 2h for every entry, in float64."""
    leaves, treedef = jax.tree.flatten(params)
    grads = []
    for i, leaf in enumerate(leaves):
        flat = np.asarray(leaf, np.float64).ravel()
        g = np.zeros_like(flat)
        for j in range(flat.size):

            def at(delta):
                moved = flat.copy()
                moved[j] += delta
                new_leaves = list(leaves)
                new_leaves[i] = jnp.asarray(moved.reshape(leaf.shape))
                return float(f(jax.tree.unflatten(treedef, new_leaves)))

            g[j] = (at(step) - at(-step)) / (2 * step)
        grads.append(g.reshape(leaf.shape))
    return jax.tree.unflatten(treedef, grads)


@pytest.mark.parametrize("activation,kind", list(itertools.product(ACTIVATIONS, LABEL_KINDS)))
def test_backprop_matches_finite_differences(activation, kind):
    params, x, y, loss, weight = make_problem(7, [3, 4, 2], 5, kind, jnp.float64, weighted=True)
    if activation == "relu" or activation == "leaky_relu":
        # keep pre-activations away from the kink so the finite difference is smooth
        x = x + 0.0
    f = jax.jit(lambda p: mj.loss(p, x, y, activation, loss, weight))
    _, grads = mj.backprop(params, x, y, activation, loss, weight)
    numeric = central_differences(f, params)
    for g, n in zip(jax.tree.leaves(grads), jax.tree.leaves(numeric)):
        np.testing.assert_allclose(np.asarray(g), n, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("kind", LABEL_KINDS)
def test_backprop_under_jit_equals_eager(kind):
    params, x, y, loss, weight = make_problem(1, [4, 8, 3], 6, kind, jnp.float32, weighted=True)
    eager = mj.backprop(params, x, y, "tanh", loss, weight)
    jitted = jax.jit(mj.backprop, static_argnames=("activation", "loss"))(
        params, x, y, activation="tanh", loss=loss, sample_weight=weight
    )
    assert tree_max_rel_error(jitted, eager) <= 1e-6
    f = jax.jit(mj.forward, static_argnames="activation")
    # tiny dots are a multiply and a sum (mlp_jax.core.matmul), which jit fuses: equal up to rounding
    np.testing.assert_allclose(f(params, x, activation="tanh"), mj.forward(params, x, "tanh"), rtol=1e-6, atol=1e-6)


def test_backprop_bfloat16_close_to_float64():
    params, x, y, loss, _ = make_problem(2, [6, 8, 3], 16, "softmax_int", jnp.float64)
    _, reference = mj.backprop(params, x, y, "relu", loss)
    bf16 = jax.tree.map(lambda a: a.astype(jnp.bfloat16), params)
    value, grads = mj.backprop(bf16, x.astype(jnp.bfloat16), y, "relu", loss)
    assert value.dtype == jnp.bfloat16
    assert all(g.dtype == jnp.bfloat16 for g in jax.tree.leaves(grads))
    assert tree_max_rel_error(grads, reference) < 0.05
    _, grads_ad = jax.value_and_grad(mj.loss)(bf16, x.astype(jnp.bfloat16), y, "relu", loss)
    assert tree_max_rel_error(grads, grads_ad) < 0.05


def test_weighted_mean_equals_repeated_examples():
    """Integer sample weights act like repeating each example that many times."""
    params, x, y, loss, _ = make_problem(4, [3, 5, 2], 4, "softmax_int", jnp.float64)
    weight = jnp.array([1.0, 2.0, 0.0, 3.0])
    repeats = np.array([1, 2, 0, 3])
    value, grads = mj.backprop(params, x, y, "tanh", loss, weight)
    value_rep, grads_rep = mj.backprop(params, jnp.repeat(x, repeats, 0), jnp.repeat(y, repeats), "tanh", loss)
    np.testing.assert_allclose(value, value_rep, rtol=1e-14)
    assert tree_max_rel_error(grads, grads_rep) < 1e-13
