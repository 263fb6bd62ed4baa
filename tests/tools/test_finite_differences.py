"""Finite differences for gradcheck (mlp_jax.tools.finite_differences): the step, the seeded probes of each
leaf, and central differences that recover a known gradient."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mlp_jax as mj
from mlp_jax.tools.finite_differences import central_differences, fd_step, make_probes, project, split_by_leaf

pytestmark = pytest.mark.x64  # finite differences are evaluated in float64 only


def net():
    rng = np.random.default_rng(0)
    layer = lambda i, o: mj.Layer(jnp.asarray(rng.standard_normal((i, o))), jnp.asarray(rng.standard_normal(o)))
    return (layer(3, 4), layer(4, 2))


def test_the_step_is_the_cube_root_of_eps():
    assert fd_step(jnp.float64) == pytest.approx(np.finfo(np.float64).eps ** (1 / 3), rel=1e-15)
    assert fd_step(jnp.float32) == pytest.approx(np.finfo(np.float32).eps ** (1 / 3), rel=1e-6)


def test_small_leaves_are_probed_everywhere_big_ones_at_seeded_entries():
    params = net()  # leaves: w0 (12), b0 (4), w1 (8), b1 (2)
    probes, per_leaf, how = make_probes(params, 6, "entries", seed=3)
    assert how == [
        "6 random of 12 entries (seed 3)",
        "all 4 entries",
        "6 random of 8 entries (seed 3)",
        "all 2 entries",
    ]
    assert [len(p) for p in per_leaf] == [6, 4, 6, 2] and probes.directions == {}
    indices, steps = (np.asarray(a) for a in probes.entries)
    offsets = np.repeat([0, 12, 16, 24], [6, 4, 6, 2])
    np.testing.assert_array_equal(indices, offsets + np.concatenate(per_leaf))
    flat = np.concatenate([np.asarray(leaf).ravel() for leaf in jax.tree.leaves(params)])
    np.testing.assert_allclose(steps, fd_step(jnp.float64) * np.maximum(1.0, np.abs(flat[indices])), rtol=1e-15)
    again = make_probes(params, 6, "entries", seed=3)[1]
    assert all(np.array_equal(a, b) for a, b in zip(per_leaf, again))


def test_big_leaves_get_unit_directions():
    _, per_leaf, how = make_probes(net(), 6, "directions", seed=0)
    assert how[0] == "6 random unit directions in 12 entries (seed 0)" and per_leaf[0].shape == (6, 3, 4)
    np.testing.assert_allclose(np.sum(per_leaf[0] ** 2, axis=(1, 2)), 1.0, rtol=1e-14)
    g = np.arange(12.0).reshape(3, 4)
    np.testing.assert_allclose(project(g, per_leaf[0]), per_leaf[0].reshape(6, -1) @ g.ravel())
    np.testing.assert_array_equal(project(g, np.array([0, 5])), [0.0, 5.0])


def test_split_by_leaf_puts_the_entries_back_in_leaf_order():
    by_entry = np.arange(10.0).reshape(5, 2)
    per_leaf = [np.array([0, 1]), np.zeros((2, 3)), np.array([4, 5, 6])]
    out = split_by_leaf(by_entry, {1: np.ones((2, 2))}, per_leaf)
    np.testing.assert_array_equal(out[0], by_entry[:2])
    np.testing.assert_array_equal(out[1], np.ones((2, 2)))
    np.testing.assert_array_equal(out[2], by_entry[2:])


@pytest.mark.parametrize("mode", ["entries", "directions"])
def test_central_differences_recover_the_gradient(mode):
    params = net()
    rng = np.random.default_rng(1)
    x, y = jnp.asarray(rng.standard_normal((5, 3))), jnp.asarray(rng.standard_normal((5, 2)))
    fd = central_differences(params, x, y, None, activation="tanh", loss="mse", fd_entries=3, fd_mode=mode, seed=0)
    grads = jax.grad(mj.loss)(params, x, y, "tanh", "mse")
    for g, values, probe in zip(jax.tree.leaves(grads), fd.values, fd.probes):
        assert values.shape == (len(probe), 2)  # steps h and 2h
        np.testing.assert_allclose(values[:, 0], project(np.asarray(g), probe), rtol=1e-8, atol=1e-9)
