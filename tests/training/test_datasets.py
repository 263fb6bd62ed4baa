"""`mlp_jax.training.datasets`: every built-in set loads offline, with its documented size, task and split,
deterministically by seed."""

from __future__ import annotations

import functools
import random

import numpy as np
import pytest
from data_helpers import check_invariants

from mlp_jax.training.data import KNOWN_DATASETS, Dataset, load_dataset

REGRESSION = {"sine", "diabetes"}


FAST_GENERATED = ["moons", "circles", "spirals", "sine"]


@functools.cache
def builtin(name: str) -> Dataset:
    return load_dataset(name)


@pytest.mark.parametrize("name", [n for n in KNOWN_DATASETS if n != "mnist1d"])
def test_builtin_loads(name):
    ds = builtin(name)
    check_invariants(ds)
    assert ds.name == name
    assert ds.task == ("regression" if name in REGRESSION else "classification")


@pytest.mark.parametrize(
    "name, features, classes",
    [
        ("iris", 4, 3),
        ("wine", 13, 3),
        ("breast_cancer", 30, 2),
        ("digits", 64, 10),
        ("moons", 2, 2),
        ("circles", 2, 2),
        ("spirals", 2, 3),
        ("sine", 1, 0),
        ("diabetes", 10, 0),
    ],
)
def test_builtin_sizes(name, features, classes):
    ds = builtin(name)
    assert ds.num_features == features and ds.num_classes == classes
    if classes:  # stratified split: every class in both halves
        assert set(np.unique(ds.y_train)) == set(np.unique(ds.y_test)) == set(range(classes))


def test_mnist1d_offline_default_split_and_global_rng_untouched():
    np.random.seed(123)
    random.seed(123)
    before = np.random.random(), random.random()
    np.random.seed(123)
    random.seed(123)
    ds = load_dataset("mnist1d")
    assert (np.random.random(), random.random()) == before  # the package reseeds globally; restored
    check_invariants(ds)
    assert ds.x_train.shape == (4000, 40) and ds.x_test.shape == (1000, 40) and ds.num_classes == 10


def test_xor_is_the_four_points_in_both_splits():
    ds = builtin("xor")
    original = ds.x_train * ds.feature_std + ds.feature_mean
    np.testing.assert_array_equal(original, [[0, 0], [0, 1], [1, 0], [1, 1]])
    np.testing.assert_array_equal(ds.y_train, [0, 1, 1, 0])
    np.testing.assert_array_equal(ds.x_test, ds.x_train)
    np.testing.assert_array_equal(ds.y_test, ds.y_train)


def test_spirals_three_balanced_arms():
    ds = builtin("spirals")
    labels = np.concatenate([ds.y_train, ds.y_test])
    assert ds.num_classes == 3 and np.bincount(labels).tolist() == [300, 300, 300]


def test_spirals_separable():
    """A 1-nearest-neighbour classifier is near perfect, so an MLP can reach >= 99%."""
    ds = builtin("spirals")
    dist = ((ds.x_test[:, None, :] - ds.x_train[None, :, :]) ** 2).sum(-1)
    assert np.mean(ds.y_train[dist.argmin(1)] == ds.y_test) >= 0.99


def test_sine_is_sine_in_original_units():
    ds = builtin("sine")
    x = ds.x_train * ds.feature_std + ds.feature_mean
    y = ds.y_train * ds.target_std + ds.target_mean
    assert x.min() >= -3 and x.max() <= 3 and ds.y_train.shape == (800, 1)
    assert np.std(y - np.sin(x)) == pytest.approx(0.1, abs=0.02)


@pytest.mark.parametrize("name", FAST_GENERATED)
def test_deterministic_by_seed(name):
    a, b, c = load_dataset(name, seed=3), load_dataset(name, seed=3), load_dataset(name, seed=4)
    for field in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.x_train, c.x_train)


def test_split_by_seed_and_fraction():
    a, b = load_dataset("iris", seed=0), load_dataset("iris", seed=1)
    assert not np.array_equal(a.x_test, b.x_test)
    assert len(load_dataset("iris", test_fraction=0.5).x_test) == 75
