"""The calibration metrics against hand computations: NLL, accuracy, Brier, ECE and its reliability bins,
the Gaussian NLL and interval coverage."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest

from mlp_jax.second_order import calibration as cal

PROBS = jnp.array([[0.92, 0.08], [0.58, 0.42], [0.35, 0.65], [0.55, 0.45]])  # top probabilities off the bin edges
LABELS = jnp.array([0, 1, 1, 0])


def test_nll_accuracy_and_brier_by_hand():
    assert float(cal.negative_log_likelihood(PROBS, LABELS)) == pytest.approx(
        -np.mean(np.log([0.92, 0.42, 0.65, 0.55])), rel=1e-6
    )
    assert float(cal.accuracy(PROBS, LABELS)) == 0.75
    brier = np.mean([0.08**2 * 2, 0.58**2 * 2, 0.35**2 * 2, 0.45**2 * 2])
    assert float(cal.brier_score(PROBS, LABELS)) == pytest.approx(brier, rel=1e-6)


def test_ece_and_reliability_bins_by_hand():
    # top confidences 0.92 (right), 0.58 (wrong), 0.65 (right), 0.55 (right), in 10 bins of width 0.1
    r = cal.reliability(PROBS, LABELS, num_bins=10)
    assert np.asarray(r.counts).tolist() == [0, 0, 0, 0, 0, 2, 1, 0, 0, 1]
    assert float(r.confidence[5]) == pytest.approx(0.565) and float(r.accuracy[5]) == pytest.approx(0.5)
    ece = (2 * abs(0.5 - 0.565) + abs(1 - 0.65) + abs(1 - 0.92)) / 4
    assert float(cal.expected_calibration_error(PROBS, LABELS, num_bins=10)) == pytest.approx(ece, rel=1e-6)
    # a confidence on a bin's upper edge belongs to that bin, (edges[b], edges[b + 1]]: 0.5 and 1.0 here
    edge = cal.reliability(jnp.array([[0.5, 0.5], [1.0, 0.0]]), jnp.array([0, 0]), num_bins=4)
    assert np.asarray(edge.counts).tolist() == [0, 1, 0, 1]


def test_a_perfect_one_hot_predictor():
    probs = jnp.eye(3)
    labels = jnp.arange(3)
    metrics = cal.classification_metrics(probs, labels)
    assert metrics == {"nll": 0.0, "accuracy": 1.0, "ece": 0.0, "brier": 0.0}


def test_gaussian_nll_and_coverage():
    mean, variance = jnp.zeros((4, 1)), jnp.full((4, 1), 4.0)
    y = jnp.array([[0.0], [1.0], [-3.0], [5.0]])
    expected = np.mean([0.5 * math.log(2 * math.pi * 4) + v**2 / 8 for v in (0.0, 1.0, -3.0, 5.0)])
    assert float(cal.gaussian_nll(mean, variance, y)) == pytest.approx(expected, rel=1e-6)
    # the central 95 % interval of N(0, 4) is +-3.92: three of the four targets are inside
    assert float(cal.interval_coverage(mean, variance, y, 0.95)) == 0.75
    assert float(cal.interval_coverage(mean, variance, y, 0.5)) == 0.5  # +-1.35: 0 and 1 inside
