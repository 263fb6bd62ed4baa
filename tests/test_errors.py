"""Bad input: a clear ValueError or TypeError naming what was expected and what was given."""

import jax
import jax.numpy as jnp
import pytest

import mlp_jax as mj


@pytest.fixture
def params():
    return mj.init_params(jax.random.key(0), [4, 5, 3], dtype=jnp.float32)


X = jnp.ones((6, 4), jnp.float32)
LABELS = jnp.array([0, 1, 2, 0, 1, 2])


@pytest.fixture(params=["forward", "loss", "backprop", "jit_backprop"])
def call(request):
    """Each entry point, eager and traced, taking (params, x, y, loss=...)."""
    if request.param == "forward":
        return lambda p, x, y=LABELS, **kw: mj.forward(p, x, **kw)
    if request.param == "loss":
        return lambda p, x, y=LABELS, **kw: mj.loss(p, x, y, **{"loss": "softmax_cross_entropy", **kw})
    if request.param == "backprop":
        return lambda p, x, y=LABELS, **kw: mj.backprop(p, x, y, **{"loss": "softmax_cross_entropy", **kw})
    jitted = jax.jit(mj.backprop, static_argnames=("activation", "loss"))
    return lambda p, x, y=LABELS, **kw: jitted(p, x, y, **{"loss": "softmax_cross_entropy", **kw})


def test_x_not_2d(params, call):
    with pytest.raises(ValueError, match=r"x must be 2-D \(batch, 4\), got shape \(4,\)"):
        call(params, jnp.ones(4, jnp.float32))


def test_x_wrong_width(params, call):
    with pytest.raises(ValueError, match="x has 3 features but the first layer expects 4"):
        call(params, jnp.ones((6, 3), jnp.float32))


def test_params_do_not_chain(call):
    bad = (mj.Layer(jnp.ones((4, 5)), jnp.ones(5)), mj.Layer(jnp.ones((6, 3)), jnp.ones(3)))
    with pytest.raises(ValueError, match="layer 0 has out=5 but layer 1 has in=6"):
        call(bad, X)


def test_bias_shape_mismatch(call):
    bad = (mj.Layer(jnp.ones((4, 3)), jnp.ones(2)),)
    with pytest.raises(ValueError, match=r"params\[0\].b must have shape \(3,\)"):
        call(bad, X)


def test_mixed_param_dtypes(call):
    bad = (
        mj.Layer(jnp.ones((4, 5), jnp.float32), jnp.ones(5, jnp.float32)),
        mj.Layer(jnp.ones((5, 3), jnp.float64), jnp.ones(3, jnp.float64)),
    )
    with pytest.raises(TypeError, match="mixed dtypes"):
        call(bad, X)


def test_x_dtype_differs_from_params(params, call):
    with pytest.raises(TypeError, match="x has dtype float64 but params are float32"):
        call(params, jnp.ones((6, 4), jnp.float64))


def test_unknown_activation(params, call):
    with pytest.raises(ValueError, match="unknown activation 'rectifier'; expected one of"):
        call(params, X, activation="rectifier")


@pytest.mark.parametrize("entry", [mj.loss, mj.backprop])
def test_unknown_loss(params, entry):
    with pytest.raises(ValueError, match=r"unknown loss 'xent'; expected one of .*softmax_cross_entropy"):
        entry(params, X, LABELS, loss="xent")


@pytest.mark.parametrize("entry", [mj.loss, mj.backprop, jax.jit(mj.backprop, static_argnums=(3, 4))])
def test_y_wrong_shape(params, entry):
    with pytest.raises(ValueError, match=r"loss 'mse' expects y of shape \(6, 3\), got \(6,\)"):
        entry(params, X, jnp.ones(6, jnp.float32), "relu", "mse")
    with pytest.raises(ValueError, match=r"integer labels must have shape \(6,\), got \(5,\)"):
        entry(params, X, LABELS[:5], "relu", "softmax_cross_entropy")
    with pytest.raises(ValueError, match=r"expects y of shape \(6, 3\) or integer labels"):
        entry(params, X, jnp.ones((6, 2)), "relu", "softmax_cross_entropy")


@pytest.mark.parametrize("entry", [mj.loss, mj.backprop])
def test_labels_out_of_range(params, entry):
    with pytest.raises(ValueError, match=r"integer labels must lie in \[0, 3\).*\[0, 3\]"):
        entry(params, X, jnp.array([0, 1, 2, 3, 0, 1]), "relu", "softmax_cross_entropy")
    with pytest.raises(ValueError, match=r"must lie in \[0, 3\)"):
        entry(params, X, jnp.array([0, -1, 2, 0, 0, 1]), "relu", "softmax_cross_entropy")


def test_float_labels_for_integer_label_loss(params):
    with pytest.raises(TypeError, match="expects integer labels"):
        mj.loss(params, X, jnp.zeros(6), loss="softmax_cross_entropy")


def test_bce_targets_outside_unit_interval(params):
    with pytest.raises(ValueError, match=r"expects y in \[0, 1\]"):
        mj.backprop(params, X, 2 * jnp.ones((6, 3)), loss="sigmoid_binary_cross_entropy")


def test_bad_sample_weight(params):
    with pytest.raises(ValueError, match=r"sample_weight must have shape \(6,\), got \(5,\)"):
        mj.backprop(params, X, LABELS, loss="softmax_cross_entropy", sample_weight=jnp.ones(5))
    with pytest.raises(ValueError, match="non-negative and not all zero"):
        mj.loss(params, X, LABELS, loss="softmax_cross_entropy", sample_weight=jnp.zeros(6))


def test_errors_raise_at_trace_time_before_any_work(params):
    """Under jit the shape checks fire while tracing: nothing is compiled or run."""
    traced = []

    def f(p, x):
        traced.append(True)
        return mj.forward(p, x)

    with pytest.raises(ValueError, match="features"):
        jax.jit(f).lower(params, jnp.ones((2, 7), jnp.float32))
    assert traced == [True]


def test_an_empty_batch_is_refused(params):
    empty = jnp.ones((0, 4), jnp.float32)
    for entry in (mj.loss, mj.backprop):
        with pytest.raises(ValueError, match=r"at least one example.*\(0, 4\)"):
            entry(params, empty, jnp.zeros((0,), jnp.int32), loss="softmax_cross_entropy")


def test_non_finite_targets_are_refused_not_a_silent_nan(params):
    y = jnp.full((6, 3), 0.5).at[2, 1].set(jnp.nan)
    for loss in ("sigmoid_binary_cross_entropy", "mse"):
        with pytest.raises(ValueError, match=r"y must be finite, got nan at index \(2, 1\)"):
            mj.loss(params, X, y, loss=loss)


def test_non_numeric_targets_and_weights_name_their_dtype(params):
    with pytest.raises(TypeError, match="y must be numeric, got dtype <U1"):
        mj.backprop(params, X, ["a"] * 6, loss="softmax_cross_entropy")
    with pytest.raises(TypeError, match="sample_weight must be numeric, got dtype <U1"):
        mj.backprop(params, X, LABELS, loss="softmax_cross_entropy", sample_weight=["w"] * 6)


def test_layer_sizes_take_numpy_ints_and_refuse_others():
    import numpy as np

    params = mj.init_params(jax.random.key(0), [np.int64(3), np.int32(2)])
    assert params[0].w.shape == (3, 2)
    for sizes in ([3, 2.0], [3, True], [3, "2"], [3, 0]):
        with pytest.raises(ValueError, match=r"layer_sizes must be positive integers, got \[3, "):
            mj.init_params(jax.random.key(0), sizes)


def test_numpy_bfloat16_targets_and_weights_are_numbers():
    import ml_dtypes
    import numpy as np

    params = mj.init_params(jax.random.key(0), [4, 3], dtype=jnp.bfloat16)
    x = jnp.ones((6, 4), jnp.bfloat16)
    y = np.full((6, 3), 0.5, ml_dtypes.bfloat16)
    weights = np.ones(6, ml_dtypes.bfloat16)
    assert jnp.isfinite(mj.loss(params, x, y, loss="mse", sample_weight=weights))


def test_a_registered_loss_may_mark_missing_targets_with_nan(params, restored_registries):
    """The finite-target check is the built-in losses' own: a registered loss may read NaN as "missing"."""

    def value(logits, y):
        return jnp.sum(jnp.where(jnp.isnan(y), 0.0, (logits - y) ** 2), axis=-1)

    def grad(logits, y):
        return jnp.where(jnp.isnan(y), 0.0, 2 * (logits - y))

    mj.register_loss("masked_mse", value, grad, verify=False)
    y = jnp.zeros((6, 3)).at[2, 1].set(jnp.nan)
    eager = mj.loss(params, X, y, loss="masked_mse")
    value_bp, _ = mj.backprop(params, X, y, loss="masked_mse")
    assert jnp.isfinite(eager) and jnp.allclose(eager, value_bp)


def test_time_deltas_are_not_numbers(params):
    import numpy as np

    with pytest.raises(TypeError, match=r"sample_weight must be numeric, got dtype timedelta64\[s\]"):
        mj.loss(params, X, LABELS, loss="softmax_cross_entropy", sample_weight=np.ones(6, "m8[s]"))


def test_params_donated_to_a_training_step_get_a_clear_error(params):
    import optax

    from mlp_jax.training.steps import make_update

    update = make_update(optax.sgd(0.1), activation="relu", loss="softmax_cross_entropy")
    new_params, _, _ = update(params, optax.sgd(0.1).init(params), X, LABELS)
    with pytest.raises(RuntimeError, match=r"params\[0\].w was donated to a training step.*use the params they return"):
        mj.loss(params, X, LABELS, loss="softmax_cross_entropy")
    assert jnp.isfinite(mj.loss(new_params, X, LABELS, loss="softmax_cross_entropy"))
