"""mj.kfac: the preconditioned step against the dense (kron(a, g) + damping I)^-1 gradient, the factors'
moving average against a hand-rolled one, the refresh schedule, the training steps that feed it, errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import mlp_jax as mj
from conftest import tree_max_rel_error
from helpers import make_problem


def _dense_step(grads, factors, damping, lr):
    out = []
    for layer, f in zip(grads, factors):
        d_in, d_out = layer.w.shape
        m = jnp.kron(f.a, f.g) + damping * jnp.eye(d_in * d_out)
        w = jnp.linalg.solve(m, layer.w.ravel()).reshape(d_in, d_out)
        b = jnp.linalg.solve(f.g + damping * jnp.eye(d_out), layer.b)
        out.append(mj.Layer(w=-lr * w, b=-lr * b))
    return tuple(out)


def _batches(count, sizes=(3, 4, 2), batch=5):
    return [make_problem(seed, list(sizes), batch, "softmax_int", jnp.float64)[1:3] for seed in range(count)]


@pytest.mark.x64
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_the_step_is_the_dense_damped_kronecker_inverse_times_the_gradient(activation):
    params, x, y, loss, _ = make_problem(0, [3, 4, 2], 5, "softmax_int", jnp.float64)
    _, grads, q = mj.backprop_with(params, x, y, activation=activation, loss=loss, extras=("kfac_factors",))
    opt = mj.kfac(0.5, damping=0.1, kl_clip=None)
    updates, state = opt.update(grads, opt.init(params), params, kfac_factors=q["kfac_factors"])
    assert tree_max_rel_error(updates, _dense_step(grads, q["kfac_factors"], 0.1, 0.5)) < 1e-12
    assert int(state.step) == 1


@pytest.mark.x64
@pytest.mark.x64
def test_kl_clipping_scales_a_large_step_to_the_bound_and_leaves_a_small_one():
    params, x, y, loss, _ = make_problem(2, [3, 4, 2], 5, "softmax_int", jnp.float64)
    _, grads, q = mj.backprop_with(params, x, y, activation="tanh", loss=loss, extras=("kfac_factors",))
    factors = q["kfac_factors"]
    plain = _dense_step(grads, factors, 1e-3, 1.0)  # lr 1
    quadratic = -sum(jnp.vdot(s, g) for s, g in zip(jax.tree.leaves(plain), jax.tree.leaves(grads)))
    for clip in (float(quadratic) / 10, float(quadratic) * 10):
        opt = mj.kfac(1.0, damping=1e-3, kl_clip=clip)
        updates, _ = opt.update(grads, opt.init(params), params, kfac_factors=factors)
        scale = min(1.0, (clip / float(quadratic)) ** 0.5)
        assert tree_max_rel_error(updates, jax.tree.map(lambda u: scale * u, plain)) < 1e-10


@pytest.mark.x64
def test_the_factors_are_a_moving_average_and_the_inverse_is_refreshed_every_n_steps():
    params = make_problem(0, [3, 4, 2], 5, "softmax_int", jnp.float64)[0]
    kw = dict(activation="tanh", loss="softmax_cross_entropy")
    opt = mj.kfac(0.3, damping=0.05, decay=0.9, update_every=3, kl_clip=None)
    state = opt.init(params)
    average, used = None, None
    for step, (x, y) in enumerate(_batches(5)):
        _, grads, q = mj.backprop_with(params, x, y, extras=("kfac_factors",), **kw)
        new = q["kfac_factors"]
        average = new if average is None else jax.tree.map(lambda a, n: 0.9 * a + 0.1 * n, average, new)
        if step % 3 == 0:
            used = average  # the inverse is refreshed from the average at steps 0 and 3
        updates, state = opt.update(grads, state, params, kfac_factors=new)
        assert tree_max_rel_error(state.factors, average) < 1e-13
        assert tree_max_rel_error(updates, _dense_step(grads, used, 0.05, 0.3)) < 1e-10, step


@pytest.mark.x64
def test_make_update_takes_the_factors_from_the_same_pass_as_the_gradient():
    params, x, y, loss, weight = make_problem(1, [3, 5, 2], 6, "softmax_int", jnp.float64, weighted=True)
    opt = mj.kfac(optax.linear_schedule(0.5, 0.1, 10), damping=0.01, kl_clip=1e-4)
    update = mj.make_update(opt, activation="tanh", loss=loss, donate=False)
    new_params, state, value = update(params, opt.init(params), x, y, sample_weight=weight)
    v, grads, q = mj.backprop_with(
        params, x, y, activation="tanh", loss=loss, extras=("kfac_factors",), sample_weight=weight
    )
    updates, _ = opt.update(grads, opt.init(params), params, kfac_factors=q["kfac_factors"])
    assert float(value) == pytest.approx(float(v), rel=1e-14)
    assert tree_max_rel_error(new_params, optax.apply_updates(params, updates)) < 1e-13
    assert int(state.step) == 1


@pytest.mark.x64
def test_a_fused_update_is_the_same_steps_one_by_one():
    params, x, y, loss, _ = make_problem(3, [3, 4, 2], 6, "softmax_int", jnp.float64)
    opt = mj.kfac(0.2, damping=0.05, update_every=2)
    fused = mj.make_fused_update(opt, 3, activation="tanh", loss=loss, donate=False)
    got, state, losses = fused(params, opt.init(params), x, y)
    update = mj.make_update(opt, activation="tanh", loss=loss, donate=False)
    expected, s = params, opt.init(params)
    for _ in range(3):
        expected, s, _ = update(expected, s, x, y)
    assert tree_max_rel_error(got, expected) < 1e-12 and int(state.step) == 3 and losses.shape == (3,)
    with pytest.raises(ValueError, match="needs key="):
        mj.make_fused_update(mj.kfac(0.1, method="mc"), 2, activation="tanh", loss=loss)(params, opt.init(params), x, y)


def test_a_kfac_epoch_trains_and_mc_factors_need_a_key():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((96, 4)), jnp.float32)
    y = jnp.asarray((x[:, 0] * x[:, 1] > 0).astype(np.int32))
    params = mj.init_params(jax.random.key(0), [4, 16, 2])
    for method in ("exact", "mc"):
        opt = mj.kfac(0.3, damping=0.01, method=method, update_every=2)
        epoch = mj.make_train_epoch(opt, activation="tanh", loss="softmax_cross_entropy", batch_size=32, donate=False)
        state = mj.init_train_state(params, opt, jax.random.key(1))
        first = None
        for _ in range(15):
            state, losses = epoch(state, x, y)
            first = float(losses[0]) if first is None else first
        assert float(losses[-1]) < 0.6 * first, method
    update = mj.make_update(mj.kfac(0.1, method="mc"), activation="tanh", loss="softmax_cross_entropy")
    with pytest.raises(ValueError, match="every update needs its own key="):
        update(params, mj.kfac(0.1).init(params), x, y)


def test_bad_requests_are_refused():
    for kwargs, message in [
        (dict(damping=0.0), "damping must be a positive number"),
        (dict(decay=1.0), r"decay must be a number in \[0, 1\)"),
        (dict(update_every=0), "update_every must be an integer >= 1"),
        (dict(method="fisher"), "method must be one of"),
        (dict(mc_samples=0), "mc_samples must be an integer >= 1"),
        (dict(kl_clip=0.0), "kl_clip must be a positive number"),
    ]:
        with pytest.raises(ValueError, match=message):
            mj.kfac(0.1, **kwargs)
    with pytest.raises(ValueError, match="learning_rate must be a positive number"):
        mj.kfac(-1.0)
    params = mj.init_params(jax.random.key(0), [2, 3, 2])
    opt = mj.kfac(0.1)
    with pytest.raises(ValueError, match=r"kfac_factors=\.\.\."):
        opt.update(params, opt.init(params), params)
    for kwargs in (dict(grad="autodiff"), dict(dropout=0.5)):
        with pytest.raises(ValueError, match="needs grad='manual' and no dropout"):
            mj.make_update(opt, activation="tanh", loss="mse", **kwargs)
