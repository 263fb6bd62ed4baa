"""What a run trains and evaluates on: the data set's targets shaped for the loss (`targets_for_loss`), the
seeded validation split carved from the training split (`split_validation`), and the host arrays of a run
(`Splits`)."""

from __future__ import annotations

import dataclasses

import numpy as np

from mlp_jax.core.errors import DataError, UsageError
from mlp_jax.training.config import ResolvedConfig
from mlp_jax.training.data import Dataset, load_dataset


def targets_for_loss(data: Dataset, loss: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Train/test targets shaped for `loss`, and the number of outputs. Raises UsageError when the
    data set's labels do not fit the loss."""
    if data.task == "classification":
        k = data.num_classes
        if loss == "softmax_cross_entropy":
            return data.y_train, data.y_test, k
        if loss == "sigmoid_binary_cross_entropy" and k == 2:
            return data.y_train[:, None].astype(np.float32), data.y_test[:, None].astype(np.float32), 1
        if loss in ("mse", "sigmoid_binary_cross_entropy"):
            eye = np.eye(k, dtype=np.float32)
            return eye[data.y_train], eye[data.y_test], k
    else:
        if loss == "mse":
            return data.y_train, data.y_test, data.num_outputs
        if loss == "softmax_cross_entropy":
            raise UsageError(
                f"data set {data.name!r} is a regression task; its real-valued targets do not fit "
                "softmax_cross_entropy (use --loss mse)"
            )
        if loss == "sigmoid_binary_cross_entropy":
            raise UsageError(
                f"data set {data.name!r} is a regression task; its targets are not in [0, 1] as "
                "sigmoid_binary_cross_entropy needs (use --loss mse)"
            )
    # a registered loss: hand it the labels as they are
    return data.y_train, data.y_test, data.num_outputs


def split_validation(
    x: np.ndarray, y: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A seeded split of the training arrays into (train, validation); UsageError if either is empty."""
    order = np.random.default_rng(seed + 12345).permutation(len(x))
    n_val = max(1, round(fraction * len(x)))
    if n_val >= len(x):
        raise UsageError(
            f"--val-fraction {fraction} takes {n_val} of the {len(x)} training rows for validation "
            "and leaves none to train on; lower it"
        )
    val, train = order[:n_val], order[n_val:]
    return x[train], y[train], x[val], y[val]


@dataclasses.dataclass(frozen=True)
class Splits:
    """The host arrays a run trains and evaluates on, with targets shaped for `loss`."""

    data: Dataset
    loss: str
    n_out: int  # width of the last layer
    x_train: np.ndarray  # the data set's training split, less the validation rows when there are any
    y_train: np.ndarray
    y_test: np.ndarray
    x_val: np.ndarray | None
    y_val: np.ndarray | None


def load_splits(config: ResolvedConfig) -> tuple[ResolvedConfig, Splits]:
    """The data set `config` names, its targets shaped for the loss (the task's default loss when none is
    set, recorded in the returned config), and a validation split carved out when `patience` is set: the
    same arrays for the same config, so a trained run's splits can be rebuilt (`mlp_jax.training.trained`)."""
    try:
        data = load_dataset(config.dataset, target=config.target, seed=config.seed, task=config.task)
    except DataError as error:
        raise UsageError(str(error)) from None
    loss = config.loss or ("softmax_cross_entropy" if data.task == "classification" else "mse")
    config = dataclasses.replace(config, loss=loss)
    y_train, y_test, n_out = targets_for_loss(data, loss)
    x_train = data.x_train
    x_val = y_val = None
    if config.patience is not None:
        x_train, y_train, x_val, y_val = split_validation(x_train, y_train, config.val_fraction, config.seed)
    return config, Splits(data, loss, n_out, x_train, y_train, y_test, x_val, y_val)
