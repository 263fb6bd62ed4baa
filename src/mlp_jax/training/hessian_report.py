"""The spectrum of a trained run's loss Hessian (`mlp-jax hessian`): its top eigenvalues, trace and spectral
density on the run's training split (the loss it minimized), in float64; `hessian.json` and a density plot."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from mlp_jax.core.errors import UsageError
from mlp_jax.core.params import parameter_count
from mlp_jax.core.x64 import x64_mode
from mlp_jax.second_order.spectrum import hessian_eigenvalues, hessian_spectral_density, hessian_trace
from mlp_jax.training.files import write_text
from mlp_jax.training.plots import plot_spectral_density
from mlp_jax.training.trained import Trained, as_float64

HESSIAN_JSON = "hessian.json"
DENSITY_PNG = "hessian_density.png"


def hessian_report(
    trained: Trained,
    *,
    top: int = 5,
    trace: bool = False,
    density: bool = False,
    matrix: str = "hessian",
    num_iterations: int | None = None,
    num_samples: int = 100,
    num_probes: int = 10,
    batch_size: int = 1024,
    seed: int = 0,
) -> dict[str, Any]:
    """The requested spectral quantities of the run's loss on its training split, with their seconds."""
    s = trained.splits
    report: dict[str, Any] = {
        "run": str(trained.run_dir),
        "dataset": trained.config.dataset,
        "epochs": trained.epochs,
        "sizes": trained.sizes,
        "activation": trained.config.activation,
        "loss": trained.config.loss,
        "matrix": matrix,
        "data": "train",
        "n_train": int(s.x_train.shape[0]),
        "num_parameters": parameter_count(trained.sizes),
        "seconds": {},
    }
    keys = jax.random.split(jax.random.key(seed), 3)
    with x64_mode(True):
        params, x, y, _, _ = as_float64(trained)
        activation, loss = trained.config.activation, trained.config.loss
        assert loss is not None  # load_splits filled in the task's default
        try:
            if top:
                start = time.perf_counter()
                pairs = hessian_eigenvalues(
                    params,
                    x,
                    y,
                    k=top,
                    key=keys[0],
                    num_iterations=num_iterations,
                    batch_size=batch_size,
                    activation=activation,
                    loss=loss,
                    matrix=matrix,
                )
                report["top_eigenvalues"] = np.asarray(pairs.values).tolist()
                report["residuals"] = np.asarray(pairs.residuals).tolist()
                report["seconds"]["top_eigenvalues"] = time.perf_counter() - start
            if trace:
                start = time.perf_counter()
                est = hessian_trace(
                    params,
                    x,
                    y,
                    num_samples=num_samples,
                    key=keys[1],
                    batch_size=batch_size,
                    activation=activation,
                    loss=loss,
                    matrix=matrix,
                )
                report["trace"] = {
                    "value": float(est.value),
                    "standard_error": float(est.standard_error),
                    "num_samples": est.num_samples,
                }
                report["seconds"]["trace"] = time.perf_counter() - start
            if density:
                start = time.perf_counter()
                d = hessian_spectral_density(
                    params,
                    x,
                    y,
                    key=keys[2],
                    num_probes=num_probes,
                    num_iterations=num_iterations,
                    batch_size=batch_size,
                    activation=activation,
                    loss=loss,
                    matrix=matrix,
                )
                report["density"] = {
                    "grid": np.asarray(d.grid).tolist(),
                    "density": np.asarray(d.density).tolist(),
                    "bandwidth": float(d.bandwidth),
                    "nodes": np.asarray(d.nodes).tolist(),
                    "weights": np.asarray(d.weights).tolist(),
                    "num_probes": num_probes,
                }
                report["seconds"]["density"] = time.perf_counter() - start
        except ValueError as error:
            raise UsageError(str(error)) from None
    return report


def write_hessian(out: Path, report: dict[str, Any]) -> list[Path]:
    """hessian.json and, with a density, its plot."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / HESSIAN_JSON]
    if "density" in report:
        d = report["density"]
        title = f"{report['dataset']}, {report['epochs']} epochs: {report['matrix']} spectral density (SLQ)"
        plot_spectral_density({"train": (d["grid"], d["density"])}, out / DENSITY_PNG, title)
        written.append(out / DENSITY_PNG)
    write_text(out / HESSIAN_JSON, json.dumps(report, indent=2) + "\n")
    return written
