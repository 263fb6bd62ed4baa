"""The gradcheck report (mlp_jax.tools.gradcheck_report): comparisons in units of eps, the relaxed rule for
manual and autodiff against one reference, and the report as a table and as JSON."""

import dataclasses
import json
import math

import jax.numpy as jnp
import numpy as np
import pytest

from mlp_jax.core.x64 import x64_mode
from mlp_jax.tools.gradcheck import check_gradients, random_problem
from mlp_jax.tools.gradcheck_report import Comparison, compare, either, ratio

SIZES, BATCH = [4, 16, 16, 3], 8  # the CLI's defaults


@pytest.fixture(scope="module")
def float32_report():
    with x64_mode(True):  # a module fixture runs outside the tests' own 64-bit mode
        params, x, y = random_problem(SIZES, BATCH, "softmax_cross_entropy", jnp.float32, 0)
        return check_gradients(params, x, y, activation="tanh", loss="softmax_cross_entropy")


def test_report_renders_as_table_and_json(float32_report):
    table = float32_report.table()
    assert str(float32_report) == table
    assert "manual vs float64" in table and "finite differences: 64 random of 256 entries (seed 0)" in table
    assert table.splitlines()[-1] == "OK: every leaf is within tolerance"
    data = json.loads(float32_report.to_json())
    assert data["ok"] is True and data["sizes"] == SIZES and data["dtype"] == "float32"
    fd_check = float32_report.leaves[0].checks["manual vs fd"]
    assert data["leaves"][0]["checks"]["manual vs fd"] == {**dataclasses.asdict(fd_check), "ok": True}


def test_report_json_spells_non_finite_numbers_as_strings(float32_report):
    leaf = float32_report.leaves[0]
    bad = dataclasses.replace(leaf.checks["manual vs fd"], max_abs=math.inf, cosine=math.nan, ok=False)
    report = dataclasses.replace(
        float32_report, leaves=(dataclasses.replace(leaf, checks={"manual vs fd": bad}, ok=False),), ok=False
    )
    check = json.loads(report.to_json())["leaves"][0]["checks"]["manual vs fd"]
    assert check["max_abs"] == "inf" and check["cosine"] == "nan"


def test_compare_measures_the_error_in_units_of_eps_times_the_term_size():
    c = compare([1.0, 2.0], [1.0, 2.5], eps=0.125, term_size=2.0, tolerance=2.0)
    assert c.max_abs == 0.5 and c.max_rel == 0.5 / 2.5 and c.eps_units == 0.5 / (0.125 * 2.0)
    assert c.norm == pytest.approx(np.sqrt(5)) and c.ref_norm == pytest.approx(np.sqrt(7.25))
    assert c.cosine == pytest.approx((1 + 5) / (np.sqrt(5) * np.sqrt(7.25)))
    assert c.ok  # 2.0 <= 2.0
    assert not compare([1.0, 2.0], [1.0, 2.5], eps=0.125, term_size=2.0, tolerance=1.9).ok


def test_compare_reads_nan_as_an_infinite_error():
    c = compare([np.nan], [1.0], eps=1e-7, term_size=1.0, tolerance=1e9)
    assert c.max_abs == math.inf and c.eps_units == math.inf and not c.ok
    zeros = compare([0.0], [0.0], eps=1e-7, term_size=1.0, tolerance=1.0)
    assert zeros.cosine == 1.0 and zeros.max_rel == 0.0 and zeros.ok


def test_ratio_spells_out_its_edge_cases():
    assert ratio(1.0, 4.0) == 0.25
    assert ratio(0.0, 0.0) == 0.0 and ratio(1.0, 0.0) == math.inf
    assert ratio(1.0, math.inf) == math.inf and ratio(1.0, math.nan) == math.inf


def comparison(eps_units: float, tolerance: float) -> Comparison:
    ok = eps_units <= tolerance
    return Comparison(eps_units, eps_units, eps_units, tolerance, 1.0, 1.0, 1.0, ok)


def test_either_passes_each_within_twice_the_others_error():
    manual, autodiff = either(comparison(30.0, 10.0), comparison(20.0, 10.0))
    assert manual.tolerance == 40.0 and manual.ok  # no further from the reference than twice autodiff
    assert autodiff.tolerance == 60.0 and autodiff.ok
    planted, autodiff = either(comparison(500.0, 10.0), comparison(5.0, 10.0))
    assert planted.tolerance == 10.0 and not planted.ok and autodiff.ok
    _, other = either(comparison(math.inf, 10.0), comparison(50.0, 10.0))
    assert other.tolerance == 10.0 and not other.ok  # an infinite error relaxes nothing
