"""Data sets as standardised numpy arrays (`Dataset`), from a built-in name or the user's own files.

Sources, chosen by `load_dataset(name)`:

- the built-in sets of `mlp_jax.training.datasets` (``xor``, ``moons``, ..., ``digits``, ``mnist1d``), all
  offline: nothing is ever downloaded;
- the user's own files, read by `mlp_jax.training.readers`: a ``.csv`` with a header row, a ``.npz``, or a
  directory of the four MNIST IDX files.

Features are standardised with the mean and std of the train split only (a constant column gets std 1), and so
are regression targets; both statistics are kept in the `Dataset`, so ``x * feature_std + feature_mean`` gives
back the original units. Where a source has no split of its own, a fixed seeded one is made (stratified for
classification). For user data the task is inferred from the target unless given, and labels are encoded as
0..K-1. Every problem with the data raises `DataError`, one line naming what was expected and what was given.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from mlp_jax.core.errors import DataError
from mlp_jax.training.datasets import BUILTINS, KNOWN_DATASETS
from mlp_jax.training.readers import IDX_FILES, NPZ_SPLIT_KEYS, read_csv, read_idx, read_idx_dir, read_npz

__all__ = [
    "FLOAT32_MAX",
    "IDX_FILES",
    "KNOWN_DATASETS",
    "MAX_INFERRED_CLASSES",
    "NPZ_SPLIT_KEYS",
    "TASKS",
    "DataError",
    "Dataset",
    "default_loss",
    "load_dataset",
    "read_idx",
]

TASKS = ("classification", "regression")
MAX_INFERRED_CLASSES = 50  # a user target of at most this many distinct integers is read as class labels
FLOAT32_MAX = float(np.finfo(np.float32).max)


class Dataset(NamedTuple):
    name: str
    x_train: np.ndarray  # (n_train, d) float32, standardised with the train split's mean and std
    y_train: np.ndarray  # classification: (n_train,) int32 in [0, num_classes); regression: (n_train, k) float32
    x_test: np.ndarray  # (n_test, d) float32, standardised with the *train* statistics
    y_test: np.ndarray  # (n_test,) int32 or (n_test, k) float32, like y_train
    task: str  # "classification" or "regression"
    num_classes: int  # 0 for regression
    feature_mean: np.ndarray | None = None  # (d,) float32: original x = x * feature_std + feature_mean
    feature_std: np.ndarray | None = None  # (d,) float32, 1 for a column constant on the train split
    target_mean: np.ndarray | None = None  # (k,) float32 for regression (original y = y * target_std + target_mean)
    target_std: np.ndarray | None = None  # (k,) float32 for regression; None for classification
    class_names: tuple[str, ...] = ()  # class_names[i] names label i (the original value); () for regression

    @property
    def num_features(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def num_outputs(self) -> int:
        """Width of the model's last layer: num_classes, or k regression targets."""
        return self.num_classes if self.task == "classification" else int(self.y_train.shape[1])

    def __repr__(self) -> str:
        shapes = ", ".join(f"{f}={getattr(self, f).shape}" for f in ("x_train", "y_train", "x_test", "y_test"))
        return f"Dataset(name={self.name!r}, task={self.task!r}, num_classes={self.num_classes}, {shapes})"


def default_loss(dataset: Dataset) -> str:
    """The loss name that fits the task: softmax cross-entropy for classification, mse for regression."""
    if dataset.task == "classification":
        return "softmax_cross_entropy"
    if dataset.task == "regression":
        return "mse"
    raise DataError(f"dataset task must be one of {TASKS}, got {dataset.task!r}")


# ----------------------------------------------------------------------------------------------- assembling


def _standardise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train, test) of shape (n, d) -> both standardised with train statistics as float32, plus mean, std (d,)."""
    mean = train.mean(axis=0, dtype=np.float64)
    std = train.std(axis=0, dtype=np.float64)
    std = np.where(np.ptp(train, axis=0) == 0, 1.0, std)  # exact test: a constant column is never divided by ~0
    work = np.float32 if train.dtype == np.float32 else np.float64  # centre big values before rounding to float32

    def scale(a: np.ndarray) -> np.ndarray:
        return ((a.astype(work, copy=False) - mean.astype(work)) / std.astype(work)).astype(np.float32)

    return scale(train), scale(test), mean.astype(np.float32), std.astype(np.float32)


def _assemble(name: str, x_train, y_train, x_test, y_test, *, task: str, class_names: tuple[str, ...] = ()) -> Dataset:
    """Standardise and type the final arrays. Labels are codes 0..K-1 already; regression y is (n, k)."""
    x_train, x_test, feature_mean, feature_std = _standardise(np.asarray(x_train), np.asarray(x_test))
    if task == "classification":
        y_train, y_test = np.asarray(y_train, np.int32), np.asarray(y_test, np.int32)
        target_mean = target_std = None
        num_classes = len(class_names)
        assert y_train.ndim == 1 and y_train.min() >= 0 and max(y_train.max(), y_test.max()) < num_classes
    else:
        y_train, y_test, target_mean, target_std = _standardise(np.asarray(y_train), np.asarray(y_test))
        num_classes, class_names = 0, ()
    assert x_train.ndim == 2 and x_test.shape[1:] == x_train.shape[1:]
    assert len(x_train) == len(y_train) and len(x_test) == len(y_test)
    return Dataset(
        name,
        x_train,
        y_train,
        x_test,
        y_test,
        task,
        num_classes,
        feature_mean,
        feature_std,
        target_mean,
        target_std,
        tuple(class_names),
    )


def _split(name: str, x: np.ndarray, y: np.ndarray, *, stratify: bool, seed: int, test_fraction: float):
    """A fixed seeded train/test split (stratified when every class can appear in both halves)."""
    from sklearn.model_selection import train_test_split

    n_test = math.ceil(test_fraction * len(x))
    if n_test < 1 or len(x) - n_test < 1:
        raise DataError(
            f"{name}: expected at least one train and one test row, got {len(x)} rows, which test_fraction="
            f"{test_fraction} splits into {len(x) - n_test} train and {n_test} test"
        )
    if stratify:
        try:
            return train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=y)
        except ValueError:  # a class with a single example, or fewer test rows than classes
            pass
    return train_test_split(x, y, test_size=test_fraction, random_state=seed)


def _split_and_assemble(name, x, y, *, task, class_names=(), seed, test_fraction) -> Dataset:
    x_train, x_test, y_train, y_test = _split(
        name, x, y, stratify=task == "classification", seed=seed, test_fraction=test_fraction
    )
    return _assemble(name, x_train, y_train, x_test, y_test, task=task, class_names=class_names)


# ------------------------------------------------------------------------------------- user data: targets


def _label_values(y: np.ndarray) -> np.ndarray | None:
    """y as a 1-D label vector if it can be one, else None: (n,) or (n, 1) as they are, and one-hot rows
    (n, K >= 2) of zeros and ones with a single one each as the column of that one."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim == 1:
        return y
    if y.ndim == 2 and _is_one_hot(y):
        return np.argmax(y, axis=1)
    return None


def _is_one_hot(y: np.ndarray) -> bool:
    """Numeric rows (n, K >= 2) of zeros and ones, each with exactly one one."""
    if y.dtype.kind not in "biuf" or y.shape[1] < 2:
        return False
    return bool(np.all((y == 0) | (y == 1)) and np.all(np.count_nonzero(y, axis=1) == 1))


def _resolve_task(y: np.ndarray, task: str | None, where: str) -> str:
    """The task for a user target: `task` if given, else the rule documented in docs/training.md (strings,
    booleans, one-hot rows and at most `MAX_INFERRED_CLASSES` distinct integers are class labels; more
    distinct integers are ambiguous, an error asking for `task`; everything else is regression)."""
    labels = _label_values(y)
    if task is not None:
        if task == "classification" and labels is None:
            raise DataError(
                f"{where}: classification needs one label per row (or one-hot rows), got targets of shape {y.shape}"
            )
        return task
    if labels is None:
        return "regression"
    one_hot = y.ndim == 2 and y.shape[1] > 1  # the only 2-D targets that have labels
    if one_hot or labels.dtype.kind in "USb":
        return "classification"
    if not (np.all(np.isfinite(labels)) and np.all(labels == np.round(labels))):
        return "regression"
    distinct = len(np.unique(labels))
    if distinct <= MAX_INFERRED_CLASSES:
        return "classification"
    raise DataError(
        f"{where}: {distinct} distinct integer values, more than {MAX_INFERRED_CLASSES}: class labels or a "
        "quantity? Say which with task='classification' or task='regression' (mlp-jax train --task)"
    )


def _encode_labels(y: np.ndarray, where: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Labels (n,) of any values -> codes 0..K-1 (int32) in sorted order of the values, and their names
    (bytes decoded as UTF-8); one-hot rows are labelled by the column of their one."""
    labels = _label_values(y)
    assert labels is not None
    if labels.dtype.kind == "f":
        if not np.all(np.isfinite(labels)) or not np.all(labels == np.round(labels)):
            bad = labels[~(np.isfinite(labels) & (labels == np.round(labels)))][0].item()
            raise DataError(f"{where}: classification labels must be integers, got {bad}")
        labels = labels.astype(np.int64)
    values, codes = np.unique(labels, return_inverse=True)
    if len(values) < 2:
        raise DataError(f"{where}: classification needs at least two classes, got only {values.tolist()}")
    names = [v.decode("utf-8", "backslashreplace") if isinstance(v, bytes) else str(v) for v in values.tolist()]
    return codes.astype(np.int32).reshape(-1), tuple(names)


def _as_features(x: np.ndarray, where: str) -> np.ndarray:
    """Numeric features of any rank -> (n, d): 1-D is one feature per row, higher ranks are flattened."""
    if x.dtype.kind not in "biuf":
        raise DataError(f"{where}: features must be a real numeric array, got dtype {x.dtype}")
    if x.ndim == 0:
        raise DataError(f"{where}: features must have one row per example, got a scalar")
    if len(x) == 0:
        raise DataError(f"{where}: expected at least one example (row), got features of shape {x.shape}")
    x = x.reshape(len(x), math.prod(x.shape[1:]))
    if x.shape[1] == 0:
        raise DataError(f"{where}: expected at least one feature per row, got an array of shape {x.shape}")
    _check_values(x, "features", where)
    return x


def _as_targets(y: np.ndarray, where: str) -> np.ndarray:
    """Regression targets -> (n, k) finite floats."""
    if y.dtype.kind in "US":
        raise DataError(
            f"{where}: regression targets must be numbers, got text labels such as {y.reshape(-1)[0].item()!r}"
        )
    if y.dtype.kind not in "biuf":
        raise DataError(f"{where}: regression targets must be numeric, got dtype {y.dtype}")
    y = y.reshape(len(y), -1).astype(np.float64)
    _check_values(y, "regression targets", where)
    return y


def _check_values(a: np.ndarray, what: str, where: str) -> None:
    """Every entry of the (n, k) array `a` finite and within float32's range: the model trains in float32
    on values standardised with float32 statistics (a 1e160 column would become all zeros)."""
    if a.dtype.kind != "f" or not a.size:
        return
    bad = ~np.isfinite(a)
    if a.dtype.itemsize > 4:  # wider than float32: finite values can still be out of its range
        bad |= np.abs(a) > FLOAT32_MAX
    if bad.any():
        row, col = np.argwhere(bad)[0]
        value = a[row, col]
        need = "finite" if not np.isfinite(value) else f"within float32's range (|v| <= {FLOAT32_MAX:.3g}; rescale)"
        raise DataError(f"{where}: {what} must be {need}, got {value} at row {row}, column {col}")


def _check_target_array(y: np.ndarray, where: str) -> np.ndarray:
    """Targets must be numbers (or, for labels, strings or booleans), one entry or row per example."""
    if y.dtype.kind not in "biufUS":
        raise DataError(f"{where}: expected numbers or string labels, got dtype {y.dtype}")
    if y.ndim == 0:
        raise DataError(f"{where}: expected one target per row, got a scalar")
    if y.ndim > 1 and math.prod(y.shape[1:]) == 0:
        raise DataError(f"{where}: expected at least one target value per row, got shape {y.shape}")
    return y


def _from_arrays(name, x, y, *, task, seed, test_fraction) -> Dataset:
    """One user (x, y) without a split: check, pick the task, encode labels, split, standardise."""
    x = _as_features(np.asarray(x), f"{name} features")
    y = _check_target_array(np.asarray(y), f"{name} target")
    if len(y) != len(x):
        raise DataError(f"{name}: features and targets must have the same number of rows, got {len(x)} and {len(y)}")
    task = _resolve_task(y, task, f"{name} target")
    if task == "classification":
        y, names = _encode_labels(y, f"{name} target")
        return _split_and_assemble(name, x, y, task=task, class_names=names, seed=seed, test_fraction=test_fraction)
    y = _as_targets(y, f"{name} target")
    return _split_and_assemble(name, x, y, task=task, seed=seed, test_fraction=test_fraction)


def _from_split(name, x_train, y_train, x_test, y_test, *, task) -> Dataset:
    """A user set that comes with its own train/test split."""
    x_train = _as_features(np.asarray(x_train), f"{name} train features")
    x_test = _as_features(np.asarray(x_test), f"{name} test features")
    y_train = _check_target_array(np.asarray(y_train), f"{name} train target")
    y_test = _check_target_array(np.asarray(y_test), f"{name} test target")
    for part, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if len(x) == 0 or len(x) != len(y):
            raise DataError(
                f"{name}: {part} features and targets must have the same, non-zero number of rows, "
                f"got {len(x)} and {len(y)}"
            )
    if x_train.shape[1] != x_test.shape[1]:
        raise DataError(
            f"{name}: train and test must have the same number of features, got "
            f"{x_train.shape[1]} and {x_test.shape[1]}"
        )
    if y_train.shape[1:] != y_test.shape[1:] or (y_train.dtype.kind in "biuf") != (y_test.dtype.kind in "biuf"):
        raise DataError(
            f"{name}: train and test targets must match, got shapes {y_train.shape}, {y_test.shape} "
            f"and dtypes {y_train.dtype}, {y_test.dtype}"
        )
    y_all = np.concatenate([y_train, y_test])
    task = _resolve_task(y_all, task, f"{name} target")
    if task == "classification":
        codes, names = _encode_labels(y_all, f"{name} target")
        y_train, y_test = codes[: len(y_train)], codes[len(y_train) :]
        return _assemble(name, x_train, y_train, x_test, y_test, task=task, class_names=names)
    y_train, y_test = _as_targets(y_train, f"{name} target"), _as_targets(y_test, f"{name} target")
    return _assemble(name, x_train, y_train, x_test, y_test, task=task)


# ---------------------------------------------------------------------------------------------- entry point


def _check_arguments(name: object, seed: object, test_fraction: object, task: str | None) -> None:
    if not isinstance(name, (str, os.PathLike)):
        raise DataError(f"name must be a data set name or a path, got {type(name).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise DataError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) or not 0 < test_fraction < 1:
        raise DataError(f"test_fraction must be a number strictly between 0 and 1, got {test_fraction!r}")
    if task is not None and task not in TASKS:
        raise DataError(f"task must be one of {TASKS} or None, got {task!r}")


def _load_builtin(name: str, *, target: str | None, seed: int, test_fraction: float, task: str | None) -> Dataset:
    """A built-in set (`mlp_jax.training.datasets`), split with `seed` unless it comes with a split of its own."""
    builtin_task, build = BUILTINS[name]
    if target is not None:
        raise DataError(f"target= applies to CSV and NPZ files only, got target={target!r} for builtin {name!r}")
    if task is not None and task != builtin_task:
        raise DataError(f"builtin {name!r} is a {builtin_task} data set, got task={task!r}")
    source = build(seed)
    if source.test is not None:
        x_test, y_test = source.test
        return _assemble(name, source.x, source.y, x_test, y_test, task=builtin_task, class_names=source.class_names)
    return _split_and_assemble(
        name,
        source.x,
        source.y,
        task=builtin_task,
        class_names=source.class_names,
        seed=seed,
        test_fraction=test_fraction,
    )


def _load_path(key: str, *, target: str | None, seed: int, test_fraction: float, task: str | None) -> Dataset:
    """The user's own data at path `key`: a CSV or NPZ file, or a directory of MNIST IDX files."""
    path = Path(key)
    if not path.exists():
        if path.suffix.lower() in (".csv", ".npz") or os.sep in key or (os.altsep and os.altsep in key):
            raise DataError(f"data file {key} not found")
        raise DataError(
            f"unknown data set {key!r}: expected one of {', '.join(KNOWN_DATASETS)}, "
            f"or a path to a .csv file, an .npz file or a directory of MNIST IDX files"
        )
    if path.is_dir():
        if target is not None:
            raise DataError(f"target= applies to CSV and NPZ files only, got target={target!r} for directory {key}")
        return _from_split(str(path), *read_idx_dir(path), task=task)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        x, y = read_csv(path, target)
        return _from_arrays(key, x, y, task=task, seed=seed, test_fraction=test_fraction)
    if suffix == ".npz":
        arrays = read_npz(path, target)
        if "x" in arrays:
            return _from_arrays(key, arrays["x"], arrays["y"], task=task, seed=seed, test_fraction=test_fraction)
        return _from_split(key, arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"], task=task)
    raise DataError(
        f"unsupported data file {key}: expected a .csv or .npz file or a directory of MNIST IDX files, "
        f"got a {suffix or 'suffix-less'} file"
    )


def load_dataset(
    name: str | os.PathLike,
    *,
    target: str | None = None,
    seed: int = 0,
    test_fraction: float = 0.2,
    task: str | None = None,
) -> Dataset:
    """Load a builtin data set by name, or the user's own data by path.

    `name`: one of `KNOWN_DATASETS`, a ``.csv`` file (header row; every feature cell a number, the target
    column numbers or text labels; `target` names it, default the last), a ``.npz`` file (arrays
    ``x_train, y_train, x_test, y_test``, or ``x`` and ``y`` where `target` renames ``y``), or a directory
    holding the four MNIST IDX files. Each file may decompress to at most `readers.max_data_bytes()` bytes.
    `seed` fixes generated data and the train/test split made (with `test_fraction`) where a source has none.
    `task` ("classification" or "regression") overrides the guess for user data: text, booleans, one-hot
    rows and at most `MAX_INFERRED_CLASSES` distinct integers are class labels, more distinct integers an
    error asking for `task`, anything else regression (docs/training.md). Labels become 0..K-1 in sorted
    order of their values; `Dataset.class_names` keeps the originals.
    """
    _check_arguments(name, seed, test_fraction, task)
    key = os.fspath(name)
    seed, test_fraction = int(seed), float(test_fraction)
    load = _load_builtin if key in BUILTINS else _load_path
    return load(key, target=target, seed=seed, test_fraction=test_fraction, task=task)
