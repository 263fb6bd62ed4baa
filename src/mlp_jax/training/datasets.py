"""The built-in data sets, all offline: nothing is ever downloaded.

- generated, deterministic given ``seed``: ``xor``, ``moons``, ``circles``, ``spirals``, ``sine``;
- real, shipped inside installed packages: scikit-learn's ``digits``, ``iris``, ``wine``, ``breast_cancer``,
  ``diabetes``, and ``mnist1d`` (built by the ``mnist1d`` package with its default arguments and split).

Each builder gives the raw arrays (a `Source`); `mlp_jax.training.data.load_dataset` splits them where the
set has no split of its own, and standardises them.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import NamedTuple

import numpy as np


class Source(NamedTuple):
    """A built-in set's arrays as generated or shipped, before any split or standardising: every row (x, y),
    to be split with the seed; or, for a set with a split of its own, the train rows (x, y) and `test`."""

    x: np.ndarray  # (n, d)
    y: np.ndarray  # (n,) labels 0..K-1, or (n, k) regression targets
    class_names: tuple[str, ...] = ()  # class_names[i] names label i; () for regression
    test: tuple[np.ndarray, np.ndarray] | None = None  # (x_test, y_test) of the set's own split


def _xor(seed: int) -> Source:
    """The four points of XOR; train and test are the same four, in the order (0,0), (0,1), (1,0), (1,1)."""
    del seed
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float64)
    y = np.array([0, 1, 1, 0])
    return Source(x, y, ("0", "1"), test=(x.copy(), y.copy()))


def _sklearn_generated(name: str, seed: int) -> Source:
    from sklearn import datasets

    if name == "moons":
        x, y = datasets.make_moons(1000, noise=0.1, random_state=seed)
    else:
        x, y = datasets.make_circles(1000, noise=0.05, factor=0.5, random_state=seed)
    return Source(x, y, ("0", "1"))


def _spirals(seed: int, *, arms: int = 3, n_per_arm: int = 300) -> Source:
    """`arms` interleaved spirals of one turn each, radius 0.15..1, Gaussian noise 0.02: (arms * n_per_arm, 2)."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(0.0, 1.0, (arms, n_per_arm))  # position along the arm
    radius = 0.15 + 0.85 * t
    angle = 2 * np.pi * (np.arange(arms)[:, None] / arms + t)  # (arms, n_per_arm)
    x = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=-1).reshape(-1, 2)
    x += 0.02 * rng.standard_normal(x.shape)
    y = np.repeat(np.arange(arms), n_per_arm)
    return Source(x, y, tuple(str(i) for i in range(arms)))


def _sine(seed: int) -> Source:
    """1-D regression: x uniform in [-3, 3], y = sin(x) + N(0, 0.1^2); 1000 points, y of shape (n, 1)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-3.0, 3.0, (1000, 1))
    y = np.sin(x) + 0.1 * rng.standard_normal(x.shape)
    return Source(x, y)


def _sklearn_real(name: str) -> Source:
    from sklearn import datasets

    if name == "diabetes":  # scaled=False: the original units, so feature_mean/std are meaningful
        x, y = datasets.load_diabetes(return_X_y=True, scaled=False)
        return Source(x, y[:, None])
    bunch = getattr(datasets, f"load_{name}")()
    return Source(bunch.data, bunch.target, tuple(str(c) for c in bunch.target_names))


def _mnist1d(seed: int) -> Source:
    """MNIST-1D built offline by `mnist1d.data.make_dataset` with its defaults: 4000 train, 1000 test, 40 features.

    The package fixes its own seed (42) and split, so `seed` (and the loader's test fraction) do not apply. It
    reseeds the global `random` and `np.random` generators; their states are restored afterwards.
    """
    del seed
    from mnist1d.data import get_dataset_args, make_dataset

    py_state, np_state = random.getstate(), np.random.get_state()  # noqa: NPY002 (restored below)
    try:
        raw = make_dataset(get_dataset_args())
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)  # noqa: NPY002
    return Source(raw["x"], raw["y"], tuple(str(i) for i in range(10)), test=(raw["x_test"], raw["y_test"]))


Builder = Callable[[int], Source]
BUILTINS: dict[str, tuple[str, Builder]] = {  # name -> (task, builder(seed))
    "xor": ("classification", _xor),
    "moons": ("classification", lambda seed: _sklearn_generated("moons", seed)),
    "circles": ("classification", lambda seed: _sklearn_generated("circles", seed)),
    "spirals": ("classification", _spirals),
    "sine": ("regression", _sine),
    "digits": ("classification", lambda seed: _sklearn_real("digits")),
    "iris": ("classification", lambda seed: _sklearn_real("iris")),
    "wine": ("classification", lambda seed: _sklearn_real("wine")),
    "breast_cancer": ("classification", lambda seed: _sklearn_real("breast_cancer")),
    "diabetes": ("regression", lambda seed: _sklearn_real("diabetes")),
    "mnist1d": ("classification", _mnist1d),
}
KNOWN_DATASETS: tuple[str, ...] = tuple(BUILTINS)
