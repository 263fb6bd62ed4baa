"""A training run in progress (`Run`: its compiled functions, its arrays on the devices, what it has done so
far) and what it ends with: the params it reports (`final_params`: the best validation epoch's with
``restore_best``) and the ``metrics.json`` it writes (`run_metrics`)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import optax

from mlp_jax.core.model import forward
from mlp_jax.training.config import ResolvedConfig
from mlp_jax.training.data import Dataset
from mlp_jax.training.rundir import CHECKPOINT
from mlp_jax.training.splits import Splits
from mlp_jax.training.steps import TrainState

Array = jax.Array


@dataclasses.dataclass
class Run:
    """A run in progress: its compiled functions, its arrays on the devices, and what it has done so far."""

    config: ResolvedConfig
    mesh: jax.sharding.Mesh
    sizes: list[int]
    train_epoch: Callable[[TrainState, Array, Array], tuple[TrainState, Array]]
    evaluate: Callable[[Any, Array, Array], dict[str, Array]]
    arrays: dict[str, tuple[Array, Array]]  # "train", "test" and, with a validation split, "val": (x, y)
    state: TrainState
    history: list[dict[str, Any]]
    best: dict[str, Any]  # {"val_loss": None until a validation loss is seen, "epoch": its epoch}
    epochs_done: int
    dataset_sha256: str | None = None  # of a user's data file, saved with every checkpoint
    best_params: Any = None  # with a validation split: a copy of the params of the best epoch so far


def final_params(run: Run) -> tuple[Any, bool]:
    """The params a run ends with, and whether they are the best epoch's: with `restore_best` and a
    validation split, the params of the best validation loss; else the last epoch's."""
    if run.config.restore_best and run.config.patience is not None and run.best_params is not None:
        return run.best_params, True
    return run.state.params, False


def test_mse_original_units(run: Run, data: Dataset, params: Any) -> float | None:
    """The test mean squared error in the targets' original units, for a regression set that has them."""
    if data.target_std is None:
        return None
    std = data.target_std.astype(np.float64)  # in float64: big targets overflow float32 here
    x_te, y_te = run.arrays["test"]
    predicted = np.asarray(forward(params, x_te, run.config.activation), np.float64) * std
    return float(np.mean((predicted - np.asarray(y_te, np.float64) * std) ** 2))


def run_metrics(run: Run, splits: Splits, stopped_early: bool, start: float) -> dict[str, Any]:
    """What ``metrics.json`` holds: the config, the data set's shape, the history and the final results
    (of the best epoch's params when they are restored, see `_final_params`)."""
    final, data = run.history[-1], splits.data
    params, restored = final_params(run)
    if restored:
        for split, (xs, ys) in run.arrays.items():
            final = final | {f"{split}_{k}": float(v) for k, v in run.evaluate(params, xs, ys).items()}
    metrics: dict[str, Any] = {
        "config": dataclasses.asdict(run.config),
        "dataset": {
            "name": data.name,
            "task": data.task,
            "num_classes": data.num_classes,
            "classes": list(data.class_names),  # classes[i]: the original label of class i
            "n_train": len(splits.x_train),
            "n_test": len(data.x_test),
            "n_val": 0 if splits.x_val is None else len(splits.x_val),
            "sha256": run.dataset_sha256,
            "features": int(splits.x_train.shape[1]),
        },
        "layer_sizes": run.sizes,
        "epochs": final["epoch"],
        "steps": final["step"],
        "history": run.history,
        "train_loss": final["train_loss"],
        "test_loss": final["test_loss"],
        "stopped_early": stopped_early,
        "best": run.best,
        "best_epoch": run.best["epoch"] if run.best["val_loss"] is not None else None,
        "restored_best": restored,
        "wall_time_s": time.perf_counter() - start,
        "device": str(jax.devices()[0]),
        "devices": run.mesh.size,
        "processes": jax.process_count(),
        "versions": {"jax": jax.__version__, "optax": optax.__version__},
        "checkpoint": CHECKPOINT,
    }
    if "test_accuracy" in final:
        metrics["train_accuracy"] = final["train_accuracy"]
        metrics["test_accuracy"] = final["test_accuracy"]
    if data.task == "regression":
        metrics["test_mse"] = final["test_loss"] if splits.loss == "mse" else None
        original_units = test_mse_original_units(run, data, params)
        if original_units is not None:  # the same error in the targets' original units
            metrics["test_mse_original_units"] = original_units
    return metrics
