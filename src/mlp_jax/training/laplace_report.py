"""A Laplace posterior for a trained run (`mlp-jax laplace`): fitted on the run's training split, its prior
precision (and, for regression, noise) chosen by marginal likelihood, and its predictive against the MAP
network's on the test split; `laplace.json` and a reliability diagram.

The MAP network's predictive is its softmax for classification; for regression a Gaussian around its
output with the noise that maximizes the training likelihood (the mean squared residual), so both sides
of the comparison have a variance. Everything runs in float64 (the run's float32 weights, cast).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mlp_jax.core.errors import UsageError
from mlp_jax.core.model import forward
from mlp_jax.core.x64 import x64_mode
from mlp_jax.second_order import calibration
from mlp_jax.second_order.laplace import Posterior, RegressionPredictive, laplace, optimize_prior_precision
from mlp_jax.training.files import write_text
from mlp_jax.training.plots import plot_coverage, plot_reliability
from mlp_jax.training.trained import Trained, as_float64

LAPLACE_JSON = "laplace.json"
RELIABILITY_PNG = "reliability.png"
COVERAGE_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


def _likelihood(trained: Trained) -> str:
    task, loss = trained.splits.data.task, trained.config.loss
    if task == "classification" and loss == "softmax_cross_entropy":
        return "classification"
    if task == "regression" and loss == "mse":
        return "regression"
    raise UsageError(
        f"laplace needs a run trained with softmax_cross_entropy (classification) or mse (regression); "
        f"{str(trained.run_dir)!r} is {task} with loss {loss!r}"
    )


def _evaluate(likelihood: str, predictive: Any, y: Any) -> tuple[dict[str, float], Any]:
    """Test metrics, and the reliability bins (classification) or coverage per level (regression)."""
    if likelihood == "classification":
        bins = calibration.reliability(predictive, y)
        return calibration.classification_metrics(predictive, y), bins
    mean, variance = predictive
    coverage = [float(calibration.interval_coverage(mean, variance, y, level)) for level in COVERAGE_LEVELS]
    return calibration.regression_metrics(mean, variance, y), coverage


def laplace_report(
    trained: Trained,
    *,
    structure: str = "diag",
    subset: str = "all",
    link: str = "probit",
    prior_precision: float | None = None,
    batch_size: int = 512,
    seed: int = 0,
) -> tuple[dict[str, Any], Posterior, dict[str, Any]]:
    """``(report, posterior, curves)``: the JSON-ready report, the fitted posterior and what the plot draws.
    `prior_precision` None: optimized by marginal likelihood (with the noise, for regression)."""
    likelihood = _likelihood(trained)
    with x64_mode(True):
        params, x_train, y_train, x_test, y_test = as_float64(trained)
        activation = trained.config.activation
        start = time.perf_counter()
        try:
            posterior = laplace(
                params,
                x_train,
                y_train,
                activation=activation,
                likelihood=likelihood,
                subset=subset,
                structure=structure,
                batch_size=batch_size,
            )
        except ValueError as error:
            raise UsageError(str(error)) from None
        jax.block_until_ready(posterior)
        fit_s = time.perf_counter() - start
        start = time.perf_counter()
        if prior_precision is None:
            posterior = optimize_prior_precision(posterior, tune_sigma_noise=likelihood == "regression")
        else:
            posterior = dataclasses.replace(posterior, prior_precision=jnp.asarray(prior_precision, jnp.float64))
        lml = float(posterior.log_marginal_likelihood())
        optimize_s = time.perf_counter() - start
        logits = forward(params, x_test, activation=activation)
        if likelihood == "classification":
            map_predictive: Any = jax.nn.softmax(logits, axis=-1)
            la_predictive: Any = posterior.predictive(
                x_test, link=link, key=jax.random.key(seed), batch_size=batch_size
            )
        else:
            residual = forward(params, x_train, activation=activation) - y_train
            map_noise = float(jnp.mean(residual**2))
            map_predictive = (logits, jnp.full_like(logits, map_noise))
            pred = posterior.predictive(x_test, batch_size=batch_size)
            assert isinstance(pred, RegressionPredictive)
            la_predictive = (pred.mean, pred.variance)
        map_metrics, map_curve = _evaluate(likelihood, map_predictive, y_test)
        la_metrics, la_curve = _evaluate(likelihood, la_predictive, y_test)
    report: dict[str, Any] = {
        "run": str(trained.run_dir),
        "dataset": trained.config.dataset,
        "sizes": trained.sizes,
        "activation": activation,
        "likelihood": likelihood,
        "structure": structure,
        "subset": subset,
        "link": link if likelihood == "classification" else "glm",
        "num_parameters": posterior.num_parameters,
        "n_train": int(x_train.shape[0]),
        "n_test": int(x_test.shape[0]),
        "prior_precision": float(posterior.prior_precision),
        "prior_precision_optimized": prior_precision is None,
        "sigma_noise": float(posterior.sigma_noise),
        "log_marginal_likelihood": lml,
        "fit_seconds": fit_s,
        "optimize_seconds": optimize_s,
        "test": {"map": map_metrics, "laplace": la_metrics},
    }
    if likelihood == "regression":
        report["map_sigma_noise"] = math.sqrt(map_noise)
    curves = {"map": map_curve, "laplace": la_curve}
    return report, posterior, curves


def write_laplace(out: Path, report: dict[str, Any], curves: dict[str, Any]) -> list[Path]:
    """laplace.json and the reliability diagram (classification) or the coverage curve (regression)."""
    out.mkdir(parents=True, exist_ok=True)
    label = f"Laplace ({report['subset']}, {report['structure']})"
    title = f"{report['dataset']}: MAP vs {label}, test split"
    if report["likelihood"] == "classification":
        bins = {name: {k: np.asarray(v).tolist() for k, v in r._asdict().items()} for name, r in curves.items()}
        report = {**report, "reliability": bins}
        plot_reliability({"MAP": curves["map"], label: curves["laplace"]}, out / RELIABILITY_PNG, title)
    else:
        report = {**report, "coverage": {"levels": list(COVERAGE_LEVELS), **curves}}
        plot_coverage(COVERAGE_LEVELS, {"MAP": curves["map"], label: curves["laplace"]}, out / RELIABILITY_PNG, title)
    write_text(out / LAPLACE_JSON, json.dumps(report, indent=2) + "\n")
    return [out / LAPLACE_JSON, out / RELIABILITY_PNG]
