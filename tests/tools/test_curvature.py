"""The curvature quantities against autodiff references (jax.hessian, jax.jacrev of the logits, the loss
Hessian in the logits) on a flat parameter vector, and their conventions, estimators and errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

import mlp_jax as mj
from conftest import tree_max_rel_error
from curvature_reference import flat, layer_blocks, reference, unflatten
from helpers import SOFTSIGN, huber, huber_grad, make_problem, problems, x64_for

BUILTIN_ACTIVATIONS = sorted(mj.core.activations.BUILTIN)


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = np.max(np.abs(b)) if b.size else 0.0
    err = np.max(np.abs(a - b)) if a.size else 0.0
    return float(err / scale) if scale > 0 else float(err)


EXTRAS = ("diag_ggn", "batch_diag_ggn", "diag_hessian", "kfac_factors", "sum_grad_squared", "grad_variance")


@jax.jit(static_argnames=("activation", "loss"))
def _computed(params, x, y, weight, v, *, activation, loss):
    """Every quantity, one compiled program per shape (eager dispatch of many small ops is slower)."""
    kw = dict(activation=activation, loss=loss, sample_weight=weight)
    _, grads, got = mj.backprop_with(params, x, y, extras=(*EXTRAS, "per_example_grad_norms"), **kw)
    return grads, got, mj.ggn_vector_product(params, x, y, v, **kw), mj.hessian_vector_product(params, x, y, v, **kw)


def _check_all(params, x, y, activation, loss, weight, tol):
    """Every quantity of backprop_with, and the two products, against the references."""
    ref = reference(params, x, y, activation, loss, weight)
    v = unflatten(params, jnp.asarray(np.random.default_rng(1).standard_normal(ref.grad.shape), ref.grad.dtype))
    grads, got, gv, hv = _computed(params, x, y, weight, v, activation=activation, loss=loss)
    c, per = ref.scale, ref.per_example_grads
    assert _rel(flat(grads), ref.grad) <= tol
    assert _rel(flat(got["diag_ggn"]), jnp.diag(ref.ggn)) <= tol
    assert _rel(jax.vmap(flat)(got["batch_diag_ggn"]), ref.ggn_terms_diag) <= tol
    assert _rel(flat(got["diag_hessian"]), jnp.diag(ref.hessian)) <= tol
    assert _rel(flat(got["sum_grad_squared"]), jnp.sum((c[:, None] * per) ** 2, axis=0)) <= tol
    variance = jnp.sum(c[:, None] * (per - ref.grad[None, :]) ** 2, axis=0)
    # E[g^2] - E[g]^2: its rounding is relative to E[g^2] (the variance is 0 for one example)
    second_moment = jnp.sum(c[:, None] * per**2, axis=0)
    err = jnp.max(jnp.abs(flat(got["grad_variance"]) - variance))
    assert float(err) <= tol * float(jnp.max(second_moment)) or float(err) == 0.0
    assert _rel(got["per_example_grad_norms"], jnp.linalg.norm(per, axis=1)) <= tol
    inputs = mj.forward_with_cache(params, x, activation).inputs
    for (_, b_slice), factors, a in zip(layer_blocks(params), got["kfac_factors"], inputs):
        # g is the GGN's bias block at any batch size; a the weighted mean of the inputs' outer products
        assert _rel(factors.g, ref.ggn[b_slice, b_slice]) <= tol
        assert _rel(factors.a, jnp.einsum("n,ni,nj->ij", c, a, a)) <= tol
    assert _rel(flat(gv), ref.ggn @ flat(v)) <= tol
    assert _rel(flat(hv), ref.hessian @ flat(v)) <= tol


@pytest.mark.slow
@settings(max_examples=8, phases=[Phase.explicit, Phase.reuse, Phase.generate])  # no shrinking: slow here
@given(problem=problems(max_depth=4, max_width=6, max_batch=8), activation=st.sampled_from(BUILTIN_ACTIVATIONS))
def test_every_quantity_matches_autodiff_in_float64(problem, activation):
    problem = {**problem, "dtype": jnp.float64}
    with x64_for(jnp.float64):
        params, x, y, loss, weight = make_problem(**problem)
        _check_all(params, x, y, activation, loss, weight, tol=1e-10)


@pytest.mark.x64
def test_every_quantity_matches_autodiff_on_one_float64_net():
    """The quick loop's float64 case; the property test above (slow) draws nets, activations and labels."""
    params, x, y, loss, weight = make_problem(11, [3, 5, 4, 3], 6, "softmax_prob", jnp.float64, weighted=True)
    _check_all(params, x, y, "softplus", loss, weight, tol=1e-10)


@pytest.mark.parametrize(
    ("activation", "kind"),
    [
        ("tanh", "softmax_int"),
        pytest.param("relu", "mse", marks=pytest.mark.slow),
        pytest.param("gelu", "sigmoid_bce", marks=pytest.mark.slow),
    ],
)
def test_float32_with_64_bit_mode_off(activation, kind):
    assert not jax.config.read("jax_enable_x64")
    params, x, y, loss, weight = make_problem(3, [4, 6, 5, 3], 7, kind, jnp.float32, weighted=True)
    _check_all(params, x, y, activation, loss, weight, tol=2e-4)
    out = mj.diag_ggn(params, x, y, activation=activation, loss=loss)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(out))


@pytest.mark.x64
@pytest.mark.parametrize(
    "kind", ["softmax_int", "mse", *(pytest.param(k, marks=pytest.mark.slow) for k in ("softmax_prob", "sigmoid_bce"))]
)
def test_kflr_is_the_exact_ggn_block_for_one_example(kind):
    params, x, y, loss, _ = make_problem(5, [3, 4, 5, 3], 1, kind, jnp.float64)
    ref = reference(params, x, y, "tanh", loss)
    factors = mj.kfac_factors(params, x, y, activation="tanh", loss=loss)
    for (w_slice, _), f in zip(layer_blocks(params), factors):
        assert _rel(jnp.kron(f.a, f.g), ref.ggn[w_slice, w_slice]) <= 1e-12


@pytest.mark.x64
@pytest.mark.parametrize("weighted", [False, True])
def test_kfac_is_exact_for_a_linear_net_with_mse(weighted):
    params, x, y, loss, weight = make_problem(6, [3, 4, 2], 7, "mse", jnp.float64, weighted=weighted)
    ref = reference(params, x, y, "identity", loss, weight)
    factors = mj.kfac_factors(params, x, y, activation="identity", loss=loss, sample_weight=weight)
    for (w_slice, _), f in zip(layer_blocks(params), factors):
        assert _rel(jnp.kron(f.a, f.g), ref.ggn[w_slice, w_slice]) <= 1e-12


@pytest.mark.slow
@pytest.mark.x64
def test_kfac_is_not_exact_for_a_batch_in_general():
    """The check above can fail: a tanh net at batch 7 is only approximately Kronecker."""
    params, x, y, loss, _ = make_problem(6, [3, 4, 3], 7, "softmax_int", jnp.float64)
    ref = reference(params, x, y, "tanh", loss)
    f = mj.kfac_factors(params, x, y, activation="tanh", loss=loss)[0]
    w_slice = layer_blocks(params)[0][0]
    assert _rel(jnp.kron(f.a, f.g), ref.ggn[w_slice, w_slice]) > 1e-3


def test_batch_terms_add_up_to_the_diagonal():
    params, x, y, loss, weight = make_problem(2, [3, 5, 4], 6, "softmax_int", jnp.float32, weighted=True)
    kw = dict(activation="relu", loss=loss, sample_weight=weight)
    total = jax.tree.map(lambda t: jnp.sum(t, axis=0), mj.batch_diag_ggn(params, x, y, **kw))
    assert tree_max_rel_error(total, mj.diag_ggn(params, x, y, **kw)) < 1e-5


def test_backprop_with_agrees_with_each_function_and_backprop():
    params, x, y, loss, weight = make_problem(4, [3, 6, 4], 5, "softmax_int", jnp.float32, weighted=True)
    kw = dict(activation="tanh", loss=loss, sample_weight=weight)
    key = jax.random.key(3)
    value, grads, got = mj.backprop_with(params, x, y, extras=mj.EXTRAS, key=key, mc_samples=2, **kw)
    value_ref, grads_ref = mj.backprop(params, x, y, **kw)
    assert float(value) == pytest.approx(float(value_ref), rel=1e-6)
    assert tree_max_rel_error(grads, grads_ref) < 1e-5
    assert list(got) == list(mj.EXTRAS)
    same = {
        "diag_ggn": mj.diag_ggn(params, x, y, **kw),
        "diag_ggn_mc": mj.diag_ggn(params, x, y, method="mc", key=key, mc_samples=2, **kw),
        "batch_diag_ggn_mc": mj.batch_diag_ggn(params, x, y, method="mc", key=key, mc_samples=2, **kw),
        "kfac_factors_mc": mj.kfac_factors(params, x, y, method="mc", key=key, mc_samples=2, **kw),
        "diag_hessian": mj.diag_hessian(params, x, y, **kw),
        "sum_grad_squared": mj.sum_grad_squared(params, x, y, **kw),
        "grad_variance": mj.grad_variance(params, x, y, **kw),
    }
    for name, expected in same.items():
        assert tree_max_rel_error(got[name], expected) == 0.0, name
    norms = mj.per_example_grad_norms(params, x, y, activation="tanh", loss=loss)
    assert tree_max_rel_error(got["per_example_grad_norms"], norms) < 1e-5


def test_jit_with_static_names_equals_eager():
    params, x, y, loss, _ = make_problem(4, [3, 6, 4], 5, "softmax_int", jnp.float32)
    key = jax.random.key(0)
    static = ("activation", "loss", "method", "mc_samples")
    for fn in (mj.diag_ggn, mj.kfac_factors, mj.batch_diag_ggn):
        eager = fn(params, x, y, activation="relu", loss=loss, method="mc", key=key, mc_samples=3)
        jitted = jax.jit(fn, static_argnames=static)(
            params, x, y, activation="relu", loss=loss, method="mc", key=key, mc_samples=3
        )
        assert tree_max_rel_error(jitted, eager) < 1e-6
    with_ = jax.jit(mj.backprop_with, static_argnames=("activation", "loss", "extras"))
    _, _, got = with_(params, x, y, activation="relu", loss=loss, extras=("diag_hessian", "grad_variance"))
    assert tree_max_rel_error(got["diag_hessian"], mj.diag_hessian(params, x, y, activation="relu", loss=loss)) < 1e-5


# ---- Monte Carlo estimators --------------------------------------------------------------------------


def _draws(fn, params, x, y, loss, keys):
    """One single-sample estimate per key, stacked: leading axis len(keys)."""
    one = lambda k: fn(params, x, y, activation="tanh", loss=loss, method="mc", key=k)
    return jax.lax.map(one, keys)


@pytest.mark.parametrize("kind", ["softmax_int", "softmax_prob", "mse", "sigmoid_bce"])
def test_mc_is_deterministic_for_a_key(kind):
    params, x, y, loss, _ = make_problem(8, [3, 5, 4], 6, kind, jnp.float32)
    kw = dict(activation="tanh", loss=loss, method="mc", mc_samples=4)
    a = mj.diag_ggn(params, x, y, key=jax.random.key(1), **kw)
    b = mj.diag_ggn(params, x, y, key=jax.random.key(1), **kw)
    c = mj.diag_ggn(params, x, y, key=jax.random.key(2), **kw)
    assert all(np.array_equal(p, q) for p, q in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    assert not all(np.array_equal(p, q) for p, q in zip(jax.tree.leaves(a), jax.tree.leaves(c)))


@pytest.mark.slow
@pytest.mark.x64
@pytest.mark.parametrize("kind", ["softmax_int", "softmax_prob", "mse", "sigmoid_bce"])
def test_mc_estimates_converge_to_the_exact_value(kind):
    """The mean of n independent single-sample estimates lies within 5 standard errors (the estimator's
    own sample standard deviation / sqrt(n)) of the exact value, elementwise: a 5-sigma bound."""
    params, x, y, loss, _ = make_problem(9, [3, 4, 3], 5, kind, jnp.float64)
    keys = jax.random.split(jax.random.key(0), 4000)
    for fn, exact_fn, pick in (
        (mj.diag_ggn, mj.diag_ggn, lambda t: t),
        (mj.kfac_factors, mj.kfac_factors, lambda t: tuple(f.g for f in t)),
    ):
        draws = pick(_draws(fn, params, x, y, loss, keys))
        exact = pick(exact_fn(params, x, y, activation="tanh", loss=loss))
        for d, e in zip(jax.tree.leaves(draws), jax.tree.leaves(exact)):
            mean, se = jnp.mean(d, axis=0), jnp.std(d, axis=0, ddof=1) / np.sqrt(d.shape[0])
            assert bool(jnp.all(jnp.abs(mean - e) <= 5 * se + 1e-12 * jnp.max(jnp.abs(e)))), fn.__name__


@pytest.mark.x64
def test_mc_samples_average_their_columns():
    """mc_samples=M is the mean of M single-sample estimates drawn from the same key's draw."""
    params, x, y, loss, _ = make_problem(9, [3, 4, 3], 5, "softmax_int", jnp.float64)
    many = mj.diag_ggn(params, x, y, activation="tanh", loss=loss, method="mc", key=jax.random.key(0), mc_samples=20000)
    exact = mj.diag_ggn(params, x, y, activation="tanh", loss=loss)
    assert tree_max_rel_error(many, exact) < 0.05  # a single-sample relative std below 3 here, / sqrt(20000)


# ---- registered activations and losses --------------------------------------------------------------


def _softsign_second(z):  # jax.grad takes abs'(0) = 1
    return jnp.where(z >= 0, -2.0, 2.0).astype(z.dtype) / (1 + jnp.abs(z)) ** 3


def _huber_hessian(logits, y):
    inside = (jnp.abs(logits - y) <= 1).astype(logits.dtype) / logits.shape[-1]
    return jnp.einsum("bi,ij->bij", inside, jnp.eye(logits.shape[-1], dtype=logits.dtype))


@pytest.mark.x64
@pytest.mark.slow  # registered phi'' is also covered, quickly, by test_cli_curvcheck's planted error
def test_registered_activation_and_loss_with_second_derivatives(restored_registries):
    mj.register_activation("softsign", *SOFTSIGN, second_derivative=_softsign_second)
    mj.register_loss("huber", huber, huber_grad, hessian=_huber_hessian)
    params, x, y, _, weight = make_problem(3, [3, 4, 3], 6, "mse", jnp.float64, weighted=True)
    _check_all(params, x, y, "softsign", "huber", weight, tol=1e-10)


@pytest.mark.slow  # the factor itself: test_loss_factors' registered Hessian, quickly
@pytest.mark.x64
def test_an_indefinite_registered_loss_hessian_is_factored_with_signs(restored_registries):
    """l = mean(sin(f) - y f): its Hessian -sin(f)/out has both signs, so the GGN is indefinite."""
    value = lambda f, y: jnp.mean(jnp.sin(f) - y * f, axis=-1)
    grad = lambda f, y: (jnp.cos(f) - y) / f.shape[-1]
    hess = lambda f, y: jnp.einsum("bi,ij->bij", -jnp.sin(f) / f.shape[-1], jnp.eye(f.shape[-1], dtype=f.dtype))
    mj.register_loss("sine", value, grad, hessian=hess)
    params, x, y, _, _ = make_problem(3, [3, 4, 3], 6, "mse", jnp.float64)
    ref = reference(params, x, y, "tanh", "sine")
    assert float(jnp.min(jnp.diag(ref.ggn))) < 0 < float(jnp.max(jnp.diag(ref.ggn)))
    _check_all(params, x, y, "tanh", "sine", None, tol=1e-10)


def test_missing_second_derivatives_are_named(restored_registries):
    mj.register_activation("softsign", *SOFTSIGN)
    mj.register_loss("huber", huber, huber_grad)
    params, x, y, _, _ = make_problem(3, [3, 4, 3], 6, "mse", jnp.float32)
    with pytest.raises(ValueError, match="activation 'softsign' has no second derivative"):
        mj.diag_hessian(params, x, y, activation="softsign", loss="mse")
    with pytest.raises(ValueError, match="loss 'huber' has no hand-written Hessian"):
        mj.diag_ggn(params, x, y, activation="tanh", loss="huber")
    with pytest.raises(ValueError, match="method='mc' samples from a built-in loss"):
        mj.diag_ggn(params, x, y, activation="tanh", loss="huber", method="mc", key=jax.random.key(0))
    # the GGN needs no phi'': a registered activation without one works
    mj.diag_ggn(params, x, y, activation="softsign", loss="mse")


# ---- bad input ----------------------------------------------------------------------------------------


def test_bad_requests_are_clear_errors():
    params, x, y, loss, _ = make_problem(3, [3, 4, 3], 6, "softmax_int", jnp.float32)
    kw = dict(activation="tanh", loss=loss)
    with pytest.raises(ValueError, match="unknown quantity 'diag_fisher'; expected any of"):
        mj.backprop_with(params, x, y, extras=("diag_ggn", "diag_fisher"), **kw)
    with pytest.raises(ValueError, match="method='mc' samples labels from the model: pass key="):
        mj.diag_ggn(params, x, y, method="mc", **kw)
    with pytest.raises(ValueError, match="method='mc' samples labels"):
        mj.backprop_with(params, x, y, extras=("kfac_factors_mc",), **kw)
    with pytest.raises(ValueError, match="mc_samples must be an integer >= 1, got 0"):
        mj.kfac_factors(params, x, y, method="mc", key=jax.random.key(0), mc_samples=0, **kw)
    with pytest.raises(ValueError, match=r"method must be one of \('exact', 'mc'\), got 'fisher'"):
        mj.diag_ggn(params, x, y, method="fisher", **kw)
    with pytest.raises(ValueError, match="integer labels must lie in"):
        mj.diag_ggn(params, x, y.at[0].set(7), **kw)
