"""How good a predictive distribution is on held-out data: negative log-likelihood, accuracy, Brier score and
expected calibration error for class probabilities; Gaussian NLL, squared error and interval coverage for
regression. Means over the examples; probabilities p (N, C), integer labels (N,)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import ndtri

Array = jax.Array

NUM_BINS = 15  # equal-width confidence bins, as Guo et al. 2017 and laplace-torch's examples


class Reliability(NamedTuple):
    """Top-label confidence against accuracy in equal-width confidence bins (a reliability diagram)."""

    edges: Array  # (num_bins + 1,)
    confidence: Array  # (num_bins,): mean top probability of the bin's examples (0 where empty)
    accuracy: Array  # (num_bins,): their accuracy (0 where empty)
    counts: Array  # (num_bins,): examples in the bin


def negative_log_likelihood(probs: Array, labels: Array) -> Array:
    """(): ``mean -log p[y]``, the probability clipped at the dtype's smallest normal number."""
    picked = jnp.take_along_axis(probs, labels[:, None], axis=1)[:, 0]
    return -jnp.mean(jnp.log(jnp.maximum(picked, jnp.finfo(probs.dtype).tiny)))


def accuracy(probs: Array, labels: Array) -> Array:
    return jnp.mean(jnp.argmax(probs, axis=1) == labels)


def brier_score(probs: Array, labels: Array) -> Array:
    """(): ``mean sum_c (p_c - [y = c])^2``, in [0, 2]."""
    return jnp.mean(jnp.sum((probs - jax.nn.one_hot(labels, probs.shape[1], dtype=probs.dtype)) ** 2, axis=1))


def reliability(probs: Array, labels: Array, num_bins: int = NUM_BINS) -> Reliability:
    confidence = jnp.max(probs, axis=1)
    correct = (jnp.argmax(probs, axis=1) == labels).astype(probs.dtype)
    edges = jnp.linspace(0.0, 1.0, num_bins + 1, dtype=probs.dtype)
    # bin b holds confidences in (edges[b], edges[b + 1]]; a confidence of exactly 0 cannot occur (>= 1/C)
    which = jnp.clip(jnp.searchsorted(edges, confidence, side="left") - 1, 0, num_bins - 1)
    count = jnp.zeros(num_bins, probs.dtype).at[which].add(1)
    safe = jnp.maximum(count, 1)
    return Reliability(
        edges,
        jnp.zeros(num_bins, probs.dtype).at[which].add(confidence) / safe,
        jnp.zeros(num_bins, probs.dtype).at[which].add(correct) / safe,
        count,
    )


def expected_calibration_error(probs: Array, labels: Array, num_bins: int = NUM_BINS) -> Array:
    """(): ``sum_b (n_b / N) |accuracy_b - confidence_b|`` over equal-width bins of the top probability."""
    r = reliability(probs, labels, num_bins)
    return jnp.sum(r.counts * jnp.abs(r.accuracy - r.confidence)) / jnp.sum(r.counts)


def classification_metrics(probs: Array, labels: Array) -> dict[str, float]:
    return {
        "nll": float(negative_log_likelihood(probs, labels)),
        "accuracy": float(accuracy(probs, labels)),
        "ece": float(expected_calibration_error(probs, labels)),
        "brier": float(brier_score(probs, labels)),
    }


def gaussian_nll(mean: Array, variance: Array, y: Array) -> Array:
    """(): the mean over examples of ``-log N(y | mean, diag variance)``, summed over the outputs."""
    per = 0.5 * (jnp.log(2 * jnp.pi * variance) + (y - mean) ** 2 / variance)
    return jnp.mean(jnp.sum(per, axis=1))


def interval_coverage(mean: Array, variance: Array, y: Array, level: float | Array) -> Array:
    """(): the share of targets inside the central `level` interval of ``N(mean, variance)``."""
    half = ndtri(0.5 + jnp.asarray(level, mean.dtype) / 2) * jnp.sqrt(variance)
    return jnp.mean((jnp.abs(y - mean) <= half).astype(mean.dtype))


def regression_metrics(mean: Array, variance: Array, y: Array) -> dict[str, float]:
    return {
        "nll": float(gaussian_nll(mean, variance, y)),
        "mse": float(jnp.mean((mean - y) ** 2)),
        "coverage_95": float(interval_coverage(mean, variance, y, 0.95)),
    }
