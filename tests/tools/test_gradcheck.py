"""check_gradients: correct nets pass, planted and hand-built errors are reported exactly where and as large
as they are. (The report's rendering: test_gradcheck_report; the command line: test_cli_gradcheck.)"""

import json

import jax.numpy as jnp
import numpy as np
import pytest

import mlp_jax as mj
from mlp_jax.core import activations
from mlp_jax.core.x64 import x64_mode
from mlp_jax.tools.gradcheck import NonFinite, check_gradients, random_problem

SIZES, BATCH = [4, 16, 16, 3], 8  # the CLI's defaults: tests reuse one compiled shape
TANH = dict(activation="tanh", loss="softmax_cross_entropy")
PLANTED = (jnp.tanh, lambda z: 1.01 * (1 - jnp.tanh(z)) * (1 + jnp.tanh(z)))  # tanh' scaled by 1.01


@pytest.fixture
def registry(restored_registries):
    """Register test activations for one test only."""
    return activations.register_activation


@pytest.fixture(scope="module")
def float32_report():
    with x64_mode(True):  # a module fixture runs outside the tests' own 64-bit mode
        params, x, y = random_problem(SIZES, BATCH, "softmax_cross_entropy", jnp.float32, 0)
        return check_gradients(params, x, y, **TANH)


def test_correct_float32_backprop_passes_every_check(float32_report):
    report = float32_report
    assert report.ok and report.first_failing_layer is None and report.nonfinite is None
    order = [(leaf.layer, leaf.leaf) for leaf in report.leaves]
    assert order == [(2, "w"), (2, "b"), (1, "w"), (1, "b"), (0, "w"), (0, "b")]
    for leaf in report.leaves:
        assert list(leaf.checks) == [
            "manual vs autodiff",
            "manual vs float64",
            "autodiff vs float64",
            "manual vs fd",
            "autodiff vs fd",
        ]
        assert leaf.closer in ("manual", "autodiff", "tie")
        for c in leaf.checks.values():
            assert c.ok and c.eps_units <= c.tolerance and c.cosine == pytest.approx(1, abs=1e-10)
    # K = forward (4 + 16 + 16) + backward (16 + 3 for layer 0, 3 for layer 1, 0 for layer 2) + batch 8 + 16
    assert [leaf.sum_length for leaf in report.leaves[::2]] == [60, 63, 79]
    assert {leaf.finite_differences for leaf in report.leaves} == {
        "all 48 entries",
        "all 3 entries",
        "64 random of 256 entries (seed 0)",
        "all 16 entries",
        "all 64 entries",
    }


@pytest.mark.x64
def test_correct_bfloat16_backprop_passes():
    params, x, y = random_problem(SIZES, BATCH, "softmax_cross_entropy", jnp.bfloat16, 0)
    report = check_gradients(params, x, y, **TANH)
    assert report.ok, report.table()
    assert report.dtype == "bfloat16" and report.eps == 2.0**-7
    assert "manual vs float64" in report.leaves[0].checks


@pytest.mark.x64
def test_planted_wrong_derivative_is_caught_from_the_output_backwards(registry):
    registry("planted_tanh", *PLANTED, verify=False)
    params, x, y = random_problem(SIZES, BATCH, "softmax_cross_entropy", jnp.float32, 0)
    report = check_gradients(params, x, y, activation="planted_tanh", loss="softmax_cross_entropy")
    assert not report.ok
    # The output layer's gradient uses no derivative of the activation; layer 1 is the first one wrong.
    by_layer = {(leaf.layer, leaf.leaf): leaf for leaf in report.leaves}
    assert by_layer[2, "w"].ok and by_layer[2, "b"].ok
    assert report.first_failing_layer == 1
    assert report.first_failure.startswith("layer 1 w: manual vs autodiff error")
    for layer in (0, 1):
        leaf = by_layer[layer, "w"]
        assert not leaf.checks["manual vs float64"].ok and not leaf.checks["manual vs fd"].ok
        assert leaf.checks["autodiff vs float64"].ok and leaf.checks["autodiff vs fd"].ok
        assert leaf.closer == "autodiff"
    assert "FAIL (first from the output backwards): layer 1 w" in report.table()


@pytest.mark.x64
def test_hand_built_error_is_reported_exactly(registry):
    """Linear net x=[1, 2] -> I -> [1, 1] -> logit 3, mse against 0. With phi' = 1.5 instead of 1 the manual
    layer-0 gradient is exactly 1.5 times the true one: dW0 = [[9, 9], [18, 18]] instead of [[6, 6], [12, 12]]."""
    registry("identity_times_1_5", lambda z: z, lambda z: jnp.full_like(z, 1.5), verify=False)
    params = (
        mj.Layer(jnp.eye(2, dtype=jnp.float64), jnp.zeros(2, jnp.float64)),
        mj.Layer(jnp.ones((2, 1), jnp.float64), jnp.zeros(1, jnp.float64)),
    )
    x, y = jnp.array([[1.0, 2.0]]), jnp.array([[0.0]])
    report = check_gradients(params, x, y, activation="identity_times_1_5", loss="mse")
    by_layer = {(leaf.layer, leaf.leaf): leaf for leaf in report.leaves}
    assert list(by_layer[0, "w"].checks) == ["manual vs autodiff", "manual vs fd", "autodiff vs fd"]  # float64 net
    w0 = by_layer[0, "w"].checks["manual vs autodiff"]
    assert w0.max_abs == 6.0 and w0.max_rel == 0.5
    assert by_layer[0, "w"].term_size == 12.0  # max_jk |x_j| |delta_k| = 2 * 6
    assert w0.eps_units == pytest.approx(6.0 / (12.0 * np.finfo(np.float64).eps), rel=1e-15)
    assert w0.cosine == pytest.approx(1.0, abs=1e-15)
    assert w0.norm == pytest.approx(1.5 * w0.ref_norm, rel=1e-15) and w0.ref_norm == pytest.approx(np.sqrt(360))
    b0 = by_layer[0, "b"].checks["manual vs autodiff"]
    assert b0.max_abs == 3.0 and b0.max_rel == 0.5
    assert by_layer[0, "w"].checks["manual vs fd"].max_abs == pytest.approx(6.0, abs=1e-6)
    for leaf in (by_layer[1, "w"], by_layer[1, "b"]):
        assert leaf.ok and leaf.checks["manual vs autodiff"].max_abs == 0.0
    assert report.first_failing_layer == 0 and not report.ok


@pytest.mark.x64
def test_nonfinite_values_are_located(registry):
    registry("nan_below_zero", jnp.tanh, lambda z: jnp.where(z < 0, jnp.nan, 1 - jnp.tanh(z) ** 2), verify=False)
    params = (
        mj.Layer(jnp.eye(2, dtype=jnp.float64), jnp.zeros(2, jnp.float64)),
        mj.Layer(jnp.ones((2, 1), jnp.float64), jnp.zeros(1, jnp.float64)),
    )
    y = jnp.array([[0.0]])
    report = check_gradients(params, jnp.array([[-1.0, 2.0]]), y, activation="nan_below_zero", loss="mse")
    assert report.nonfinite == NonFinite(layer=0, quantity="delta", stage="backward")
    assert not report.ok
    assert "NON-FINITE: the first NaN or inf is in delta of layer 0 (backward pass)" in report.table()
    with pytest.raises(ValueError, match=r"x must be finite, got inf at index \(0, 0\)"):  # refused up front
        check_gradients(params, jnp.array([[jnp.inf, 2.0]]), y, activation="tanh", loss="mse")
    inf_weight = (mj.Layer(params[0].w.at[0, 0].set(jnp.inf), params[0].b), params[1])  # params are not checked
    report = check_gradients(inf_weight, jnp.array([[1.0, 2.0]]), y, activation="identity", loss="mse")
    assert report.nonfinite == NonFinite(layer=0, quantity="z", stage="forward")
    assert json.loads(report.to_json())["leaves"][0]["checks"]["manual vs autodiff"]["max_abs"] in ("nan", "inf")


@pytest.mark.x64
def test_big_leaves_are_probed_at_seeded_random_entries_or_directions():
    params, x, y = random_problem(SIZES, BATCH, "softmax_cross_entropy", jnp.float32, 0)
    by_mode = {
        (mode, seed): check_gradients(params, x, y, **TANH, fd_entries=8, fd_mode=mode, seed=seed)
        for mode in ("entries", "directions")
        for seed in (0, 0, 1)
    }
    assert all(report.ok for report in by_mode.values())
    how = {key: [leaf.finite_differences for leaf in report.leaves] for key, report in by_mode.items()}
    assert how["entries", 0] == [
        "8 random of 48 entries (seed 0)",
        "all 3 entries",
        "8 random of 256 entries (seed 0)",
        "8 random of 16 entries (seed 0)",
        "8 random of 64 entries (seed 0)",
        "8 random of 16 entries (seed 0)",
    ]
    assert how["directions", 1][2] == "8 random unit directions in 256 entries (seed 1)"
    w1 = lambda key: by_mode[key].leaves[2].checks["manual vs fd"]
    assert w1(("entries", 0)) != w1(("entries", 1))  # other entries
    assert check_gradients(params, x, y, **TANH, fd_entries=8, seed=0).to_json() == by_mode["entries", 0].to_json()


def test_check_gradients_needs_float64():
    """With 64-bit mode off (as every test runs unless it asks): a RuntimeError saying how to turn it on."""
    params, x, y = random_problem([2, 3], 2, "mse", jnp.float32, 0)
    with pytest.raises(RuntimeError, match=r'jax.config.update\("jax_enable_x64", True\)'):
        check_gradients(params, x, y, activation="relu", loss="mse")
    with x64_mode(True), pytest.raises(ValueError, match="fd_mode must be one of"):
        check_gradients(params, x, y, activation="relu", loss="mse", fd_mode="random")


@pytest.mark.x64
def test_every_leaf_probed_by_directions():
    """--fd-entries below every leaf's size in directions mode: no entry is probed one by one."""
    params, x, y = random_problem([4, 5, 3], 6, "softmax_cross_entropy", jnp.float32, 0)
    report = check_gradients(
        params, x, y, activation="tanh", loss="softmax_cross_entropy", fd_entries=2, fd_mode="directions"
    )
    assert report.ok
    assert all("2 random unit directions" in leaf.finite_differences for leaf in report.leaves)
