"""Input validation (mlp_jax.core.validation): bad names, x, targets and weights get a clear ValueError or
TypeError naming what was expected and what was given, from every entry point, eager and traced."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mlp_jax as mj
from helpers import ENTRY_POINTS, LABELS, entry_point, huber, huber_grad, small_problem, tempered_ce, tempered_ce_grad
from mlp_jax.core.validation import check_names, check_problem, prepare_sample_weight, prepare_targets


@pytest.fixture
def params():
    return mj.init_params(jax.random.key(0), [4, 5, 3], dtype=jnp.float32)


X = jnp.ones((6, 4), jnp.float32)


@pytest.fixture(params=ENTRY_POINTS)
def call(request):
    """Each entry point, eager and traced, taking (params, x, y, loss=...)."""
    return entry_point(request.param)


def test_x_not_2d(params, call):
    with pytest.raises(ValueError, match=r"x must be 2-D \(batch, 4\), got shape \(4,\)"):
        call(params, jnp.ones(4, jnp.float32))


def test_x_wrong_width(params, call):
    with pytest.raises(ValueError, match="x has 3 features but the first layer expects 4"):
        call(params, jnp.ones((6, 3), jnp.float32))


@pytest.mark.x64
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


def test_check_names_names_the_unknown_one():
    check_names("tanh", "mse")
    with pytest.raises(ValueError, match="unknown loss 'xent'"):
        check_names("tanh", "xent")
    with pytest.raises(ValueError, match="unknown activation 'rectifier'"):
        check_names("rectifier", "mse")


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


def test_numpy_bfloat16_targets_and_weights_are_numbers():
    import ml_dtypes

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
    with pytest.raises(TypeError, match=r"sample_weight must be numeric, got dtype timedelta64\[s\]"):
        mj.loss(params, X, LABELS, loss="softmax_cross_entropy", sample_weight=np.ones(6, "m8[s]"))


@pytest.mark.x64
def test_registered_loss_targets_are_checked(restored_registries):
    mj.register_loss("huber", huber, huber_grad)
    mj.register_loss("tempered_ce", tempered_ce, tempered_ce_grad, targets="labels")
    params, x, y = small_problem("dense")
    with pytest.raises(ValueError, match=r"loss 'huber' expects y of shape \(6, 4\), got \(6,\)"):
        mj.loss(params, x, jnp.zeros(6), "tanh", "huber")
    with pytest.raises(TypeError, match=r"tempered_ce expects integer labels of shape \(6,\), got shape \(6, 4\)"):
        mj.loss(params, x, y, "tanh", "tempered_ce")
    with pytest.raises(ValueError, match=r"integer labels must lie in \[0, 4\)"):
        mj.loss(params, x, jnp.full(6, 4), "tanh", "tempered_ce")
    y32 = y.astype(jnp.float32)  # dense targets are cast to the params' dtype
    assert mj.backprop(params, x, y32, "tanh", "huber")[1][0].w.dtype == jnp.float64


# ------------------------------------------------------------------------------------------------
# The checks themselves


def test_check_problem_returns_the_prepared_inputs(params):
    checked = check_problem(params, np.ones((6, 4), np.float32), np.asarray(LABELS), "relu", "softmax_cross_entropy")
    assert isinstance(checked.x, jax.Array) and checked.x.dtype == jnp.float32
    assert jnp.issubdtype(checked.y.dtype, jnp.integer) and checked.sample_weight is None
    assert checked.dtype == jnp.float32
    weighted = check_problem(params, X, jnp.zeros((6, 3), jnp.int32), "relu", "mse", [1, 2, 0, 1, 1, 1])
    assert weighted.y.dtype == jnp.float32 and weighted.sample_weight.dtype == jnp.float32  # cast to the params'


def test_prepare_targets_keeps_labels_and_casts_dense_targets():
    labels = prepare_targets("softmax_cross_entropy", np.array([2, 0, 1]), 3, 3, jnp.bfloat16)
    assert labels.dtype == jnp.int32 and labels.tolist() == [2, 0, 1]
    probabilities = prepare_targets("softmax_cross_entropy", np.full((3, 2), 0.5), 3, 2, jnp.bfloat16)
    assert probabilities.dtype == jnp.bfloat16
    booleans = prepare_targets("sigmoid_binary_cross_entropy", np.eye(3, dtype=bool), 3, 3, jnp.float32)
    assert booleans.dtype == jnp.float32 and float(booleans.sum()) == 3


def test_value_checks_wait_for_concrete_values():
    """Under jit the label range, finiteness and weights are tracers: only their shapes are checked."""
    out = jax.jit(lambda y: prepare_targets("softmax_cross_entropy", y, 3, 2, jnp.float32))(jnp.array([0, 5, 1]))
    assert out.tolist() == [0, 5, 1]
    weights = jax.jit(lambda w: prepare_sample_weight(w, 2, jnp.float32))(jnp.zeros(2))
    assert weights.tolist() == [0.0, 0.0]
    assert prepare_sample_weight(None, 2, jnp.float32) is None


# ------------------------------------------------------------------------------------------------
# Concrete inputs are checked everywhere (issue 17, defect 12); traced ones cannot be


@pytest.fixture(params=["forward", "loss", "backprop"])
def concrete_call(request):
    """Each entry point called on concrete values, where the value checks run."""
    return entry_point(request.param)


def test_non_finite_x_is_refused_like_non_finite_y(params, concrete_call):
    """Once a silent NaN loss and NaN gradients, while a NaN in y was refused."""
    call = concrete_call
    for bad in (jnp.nan, jnp.inf, -jnp.inf):
        with pytest.raises(ValueError, match=r"x must be finite, got (nan|inf|-inf) at index \(3, 2\)"):
            call(params, X.at[3, 2].set(bad))
    with pytest.raises(ValueError, match=r"x must be finite, got nan at index \(0, 1\)"):
        call(params, np.array([[1, np.nan, 0, 0]] * 6, np.float32))  # numpy input too


@pytest.mark.parametrize(
    "y,match",
    [
        (
            [[-1.0, 1.0, 1.0]] + [[1.0, 0.0, 0.0]] * 5,
            r"probabilities in \[0, 1\] \(or integer labels\), got values in \[-1.0, 1.0\]",
        ),
        ([[1.0, 1.0, 0.0]] + [[1.0, 0.0, 0.0]] * 5, r"rows that sum to 1 .*, got row 0 summing to 2"),
        ([[0.2, 0.2, 0.2]] * 6, r"rows that sum to 1 .*, got row 0 summing to 0.6"),
        ([[2.0, -0.5, -0.5]] * 6, r"probabilities in \[0, 1\]"),
    ],
    ids=["negative", "sum-2", "sum-0.6", "sums-to-1-but-negative"],
)
@pytest.mark.parametrize("entry", [mj.loss, mj.backprop, mj.manual_loss])
def test_softmax_probability_targets_must_be_probabilities(params, entry, y, match):
    """Once a loss of any sign: -sum(y * log_softmax) with y = [-1, 1, 1] (or [2, -.5, -.5]) is no
    cross-entropy."""
    with pytest.raises(ValueError, match=match):
        entry(params, X, jnp.asarray(y, jnp.float32), "relu", "softmax_cross_entropy")


def test_probability_targets_within_rounding_of_a_sum_of_1_are_accepted(params):
    smoothed = 0.9 * jax.nn.one_hot(LABELS, 3) + 0.1 / 3  # label smoothing, rounded in float32
    softmax = jax.nn.softmax(jax.random.normal(jax.random.key(1), (6, 3)))
    bf16 = mj.init_params(jax.random.key(0), [4, 5, 3], dtype=jnp.bfloat16)
    for p, y in ((params, smoothed), (params, softmax), (params, jax.nn.one_hot(LABELS, 3, dtype=jnp.int32))):
        assert jnp.isfinite(mj.loss(p, X, y, loss="softmax_cross_entropy"))
    assert jnp.isfinite(
        mj.loss(bf16, X.astype(jnp.bfloat16), softmax.astype(jnp.bfloat16), loss="softmax_cross_entropy")
    )


@pytest.mark.x64
def test_check_gradients_checks_its_concrete_inputs(params):
    with pytest.raises(ValueError, match=r"must lie in \[0, 3\).*\[-1, 2\]"):
        mj.check_gradients(params, X, LABELS.at[0].set(-1), activation="tanh", loss="softmax_cross_entropy")
    with pytest.raises(ValueError, match="x must be finite"):
        mj.check_gradients(params, X.at[0, 0].set(jnp.nan), LABELS, activation="tanh", loss="softmax_cross_entropy")


@pytest.mark.parametrize(
    "y,loss,match",
    [
        (np.array([0, 1, -1]), "softmax_cross_entropy", r"integer labels must lie in \[0, 3\).*\[-1, 1\]"),
        (np.array([0, 3, 1]), "softmax_cross_entropy", r"integer labels must lie in \[0, 3\)"),
        (np.full((3, 3), -0.1), "softmax_cross_entropy", r"probabilities in \[0, 1\]"),
        (np.full((3, 3), 1.5), "sigmoid_binary_cross_entropy", r"expects y in \[0, 1\]"),
        (np.array([[0.0, np.nan, 1.0]] * 3), "mse", r"y must be finite, got nan at index \(0, 1\)"),
        (np.zeros((3, 2)), "mse", r"loss 'mse' expects y of shape \(3, 3\), got \(3, 2\)"),
        (np.zeros(3), "sigmoid_binary_cross_entropy", r"expects y of shape \(3, 3\), got \(3,\)"),
        (np.float32(1.0), "mse", r"y must hold one row per example \(at least 1-D\), got shape \(\)"),
        (np.zeros(3), "no_such_loss", "unknown loss 'no_such_loss'"),
    ],
    ids=["label--1", "label-C", "negative-probability", "bce-over-1", "nan", "width", "1-d-dense", "scalar", "name"],
)
def test_check_targets_refuses_what_the_loss_cannot_take(y, loss, match):
    with pytest.raises(ValueError, match=match):
        mj.check_targets(y, loss, 3)


def test_check_targets_accepts_what_the_loss_takes():
    assert mj.check_targets(np.array([0, 2, 1]), "softmax_cross_entropy", 3) is None
    assert mj.check_targets(jnp.full((2, 4), 0.25), "softmax_cross_entropy", 4) is None
    assert mj.check_targets(np.eye(3, dtype=bool), "sigmoid_binary_cross_entropy", 3) is None
    assert mj.check_targets(np.full((5, 1), -7.5), "mse", 1) is None
    with pytest.raises(ValueError, match="num_outputs must be a positive integer, got 0"):
        mj.check_targets(np.zeros((2, 1)), "mse", 0)


def test_traced_values_are_not_checked_and_do_not_error(params):
    """Under jit the values are tracers: only shapes and dtypes are checked, the documented limit. A label
    of -1 then wraps to the last class, as JAX indexing does; check concrete data first (check_targets)."""
    loss = jax.jit(mj.loss, static_argnames=("activation", "loss"))
    backprop = jax.jit(mj.backprop, static_argnames=("activation", "loss"))
    wrapped = loss(params, X, LABELS.at[0].set(-1), loss="softmax_cross_entropy")
    last = loss(params, X, LABELS.at[0].set(2), loss="softmax_cross_entropy")
    assert float(wrapped) == pytest.approx(float(last), rel=1e-6)
    value, _ = backprop(params, X.at[0, 0].set(jnp.nan), LABELS, loss="softmax_cross_entropy")
    assert jnp.isnan(value)
    negative = jnp.asarray([[-1.0, 1.0, 1.0]] * 6)
    assert jnp.isfinite(backprop(params, X, negative, loss="softmax_cross_entropy")[0])
    traced_check = jax.jit(lambda y: mj.check_targets(y, "softmax_cross_entropy", 3) or y)
    assert traced_check(jnp.array([0, 5, -1])).tolist() == [0, 5, -1]
    with pytest.raises(ValueError, match=r"integer labels must have shape \(3,\)|expects y of shape"):
        jax.jit(lambda y: mj.check_targets(y, "softmax_cross_entropy", 3) or y)(jnp.zeros((3, 2)))
