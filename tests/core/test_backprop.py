"""The hand-written backprop against jax.value_and_grad and against central finite differences; the manual
pass (manual_pass, manual_forward, manual_backward) that backprop, manual_loss, the per-example tools and
gradcheck share; backward with any cotangent of the logits."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings

import mlp_jax as mj
from conftest import tree_max_rel_error
from helpers import LABEL_KINDS, activation_kind_pairs, make_problem, problems, x64_for
from mlp_jax.core.backprop import ManualPass, manual_backward, manual_forward, manual_pass
from mlp_jax.core.x64 import x64_mode

ACTIVATIONS = mj.known_activations()
TOLERANCE = {jnp.float64: 1e-12, jnp.float32: 1e-5}


def autodiff(params, x, y, activation, loss, weight):
    return jax.value_and_grad(mj.loss)(params, x, y, activation, loss, weight)


# Jitted (one compile per drawn shape instead of one per primitive); jit vs eager is tested below.
backprop_jit = jax.jit(mj.backprop, static_argnums=(3, 4), static_argnames=("layout", "batch_parts"))
autodiff_jit = jax.jit(autodiff, static_argnums=(3, 4))


@pytest.mark.slow
@pytest.mark.parametrize("activation", ACTIVATIONS)
@settings(max_examples=6)
@given(problem=problems())
def test_backprop_matches_autodiff_property(activation, problem):
    dtype = problem["dtype"]
    with x64_for(dtype):
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
    with x64_mode(True):  # the float64 run of the same net
        to64 = lambda t: jax.tree.map(lambda a: jnp.asarray(a, jnp.float64) if a.dtype == dtype else a, t)
        weight64 = None if weight is None else to64(weight)
        _, reference = autodiff(to64(params), to64(x), to64(y), activation, loss, weight64)
    for g, g_ad, ref in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_ad), jax.tree.leaves(reference)):
        err, err_ad = tree_max_rel_error(g, ref), tree_max_rel_error(g_ad, ref)
        assert tree_max_rel_error(g, g_ad) <= tol or (err <= tol and err <= err_ad), (err, err_ad)


def _every_pair():
    """activation x label kind x weighting x dtype; the quick loop runs every activation-kind pair once in
    float64 (weighting alternating) and every activation once in float32, the rest is marked slow."""
    cases = []
    for (i, activation), (j, kind) in itertools.product(enumerate(ACTIVATIONS), enumerate(LABEL_KINDS)):
        for weighted, dtype in itertools.product([False, True], [jnp.float64, jnp.float32]):
            quick = (dtype == jnp.float64 and weighted == bool((i + j) % 2)) or (
                dtype == jnp.float32 and weighted and j == i % len(LABEL_KINDS)
            )
            marks = () if quick else (pytest.mark.slow,)
            cases.append(pytest.param(activation, kind, weighted, dtype, marks=marks))
    return cases


@pytest.mark.parametrize(("activation", "kind", "weighted", "dtype"), _every_pair())
def test_backprop_matches_autodiff_every_pair(activation, kind, weighted, dtype):
    """The full activation x loss x weighting matrix on one fixed net, float64 and float32."""
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


@pytest.mark.x64
@pytest.mark.parametrize("activation,kind", activation_kind_pairs(ACTIVATIONS))
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


@pytest.mark.slow
@pytest.mark.x64
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


@pytest.mark.slow
@pytest.mark.x64
def test_weighted_mean_equals_repeated_examples():
    """Integer sample weights act like repeating each example that many times."""
    params, x, y, loss, _ = make_problem(4, [3, 5, 2], 4, "softmax_int", jnp.float64)
    weight = jnp.array([1.0, 2.0, 0.0, 3.0])
    repeats = np.array([1, 2, 0, 3])
    value, grads = mj.backprop(params, x, y, "tanh", loss, weight)
    value_rep, grads_rep = mj.backprop(params, jnp.repeat(x, repeats, 0), jnp.repeat(y, repeats), "tanh", loss)
    np.testing.assert_allclose(value, value_rep, rtol=1e-14)
    assert tree_max_rel_error(grads, grads_rep) < 1e-13


# ------------------------------------------------------------------------------------------------
# The manual pass (jitted: one compile per test instead of one per primitive)

manual_pass_jit = jax.jit(manual_pass, static_argnums=(3, 4), static_argnames=("layout", "batch_parts", "scaled"))


@pytest.mark.parametrize("layout,parts", [("batch", 1), ("feature", 1), ("batch", 3), ("feature", 2)])
def test_manual_pass_holds_backprop_and_its_intermediates(layout, parts):
    params, x, y, loss, weight = make_problem(5, [4, 6, 5, 3], 7, "softmax_int", jnp.float32, weighted=True)
    result = manual_pass_jit(params, x, y, "tanh", loss, weight, layout=layout, batch_parts=parts)
    value, grads = backprop_jit(params, x, y, "tanh", loss, weight, layout=layout, batch_parts=parts)
    assert isinstance(result, ManualPass)  # two compiled programs: equal up to float32 rounding
    np.testing.assert_allclose(result.value, value, rtol=1e-6)
    assert tree_max_rel_error(result.grads, grads) <= 1e-6
    assert len(result.caches) == len(result.part_deltas) == parts
    assert result.per_example.shape == (7,) and result.dlogits.shape == (7, 3)
    assert result.sample_weight.dtype == jnp.float32
    np.testing.assert_allclose(result.value, np.sum(weight * result.per_example) / np.sum(weight), rtol=1e-6)
    batch_axis = 1 if layout == "feature" else 0
    assert sum(d[0].shape[batch_axis] for d in result.part_deltas) == 7
    assert [d.shape[1 - batch_axis] for d in result.part_deltas[0]] == [6, 5, 3]
    if parts == 1:
        assert result.cache is result.caches[0] and result.deltas is result.part_deltas[0]
    else:
        with pytest.raises(ValueError, match=f"this pass ran in {parts} batch parts"):
            result.cache  # noqa: B018


@pytest.mark.x64
def test_unscaled_pass_gives_each_examples_own_gradient_rows():
    """scaled=False: dlogits row i is d l_i / d logits[i]; the grads are of the sum of the terms."""
    params, x, y, loss, weight = make_problem(6, [3, 5, 4], 6, "mse", jnp.float64, weighted=True)
    unscaled = manual_pass_jit(params, x, y, "tanh", loss, weight, layout="batch", batch_parts=1, scaled=False)
    term = mj.get_loss(loss).per_example
    own = jax.jit(jax.vmap(jax.grad(lambda logits, t: term(logits[None], t[None])[0])))  # d l_i / d logits[i]
    np.testing.assert_allclose(unscaled.dlogits, own(mj.forward(params, x, "tanh"), y), rtol=1e-13)
    terms = lambda p: jax.vmap(lambda xi, yi: mj.loss(p, xi[None], yi[None], "tanh", loss))(x, y)
    assert tree_max_rel_error(unscaled.grads, jax.jit(jax.grad(lambda p: jnp.sum(terms(p))))(params)) <= 1e-12
    scaled = manual_pass_jit(params, x, y, "tanh", loss, weight, layout="batch", batch_parts=1)
    np.testing.assert_allclose(scaled.dlogits, unscaled.dlogits * (weight / jnp.sum(weight))[:, None], rtol=1e-14)


def test_the_two_halves_are_the_pass():
    params, x, y, loss, weight = make_problem(7, [3, 5, 4], 6, "sigmoid_bce", jnp.float32, weighted=True)

    @jax.jit
    def halves(params, x, y, weight):
        fwd = manual_forward(params, x, y, "relu", loss, weight, layout="feature", batch_parts=2)
        return fwd, manual_backward(params, fwd, y, "relu", loss, weight, layout="feature")

    fwd, result = halves(params, x, y, weight)
    assert len(fwd.caches) == 2 and fwd.logits.shape == (6, 4) and fwd.per_example.shape == (6,)
    whole = manual_pass_jit(params, x, y, "relu", loss, weight, layout="feature", batch_parts=2)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(result), jax.tree.leaves(whole)))


@pytest.mark.x64
@pytest.mark.parametrize("layout", ["batch", "feature"])
def test_backward_with_any_cotangent_is_the_vjp_of_the_logits(layout):
    """backward(cache, v) is the vector-Jacobian product of the logits with any cotangent v (B, d_out), so
    other quantities than the loss gradient (columns of a factor of the loss Hessian, say) go back through
    the same loop: the weight gradients are the vjp's, and the deltas are linear in v."""
    params, x, _, _, _ = make_problem(8, [4, 6, 5, 3], 7, "mse", jnp.float64)
    cotangent = jnp.asarray(np.random.default_rng(1).standard_normal((7, 3)))

    @jax.jit
    def run(params, x, cotangent):
        cache = mj.forward_with_cache(params, x, "gelu", layout)
        grads, deltas = mj.backward(params, cache, cotangent, "gelu", layout)
        _, vjp = jax.vjp(lambda p: mj.forward(p, x, "gelu"), params)
        # one cotangent column at a time
        columns = [
            mj.backward(params, cache, cotangent * (jnp.arange(3) == c)[None, :], "gelu", layout)[1] for c in range(3)
        ]
        return grads, deltas, vjp(cotangent)[0], columns

    grads, deltas, expected, columns = run(params, x, cotangent)
    assert tree_max_rel_error(grads, expected) <= 1e-12
    np.testing.assert_allclose(deltas[-1].T if layout == "feature" else deltas[-1], cotangent, rtol=0)
    for l, d in enumerate(deltas):
        np.testing.assert_allclose(sum(parts[l] for parts in columns), d, rtol=1e-12, atol=1e-14)
