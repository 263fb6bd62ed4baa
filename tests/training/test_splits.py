"""`mlp_jax.training.splits`: the targets a run trains on, shaped for each loss, and its seeded validation split."""

import numpy as np
import pytest

from mlp_jax.core.errors import UsageError
from mlp_jax.training.data import load_dataset
from mlp_jax.training.splits import split_validation, targets_for_loss


def test_targets_for_loss_shapes_labels_for_each_loss():
    iris, breast = load_dataset("iris"), load_dataset("breast_cancer")
    y_train, y_test, n_out = targets_for_loss(iris, "softmax_cross_entropy")
    assert y_train is iris.y_train and y_test is iris.y_test and n_out == 3
    y_train, _, n_out = targets_for_loss(iris, "mse")  # one-hot
    assert y_train.shape == (len(iris.y_train), 3) and n_out == 3
    np.testing.assert_array_equal(y_train.argmax(1), iris.y_train)
    y_train, y_test, n_out = targets_for_loss(breast, "sigmoid_binary_cross_entropy")  # two classes: one output
    assert y_train.shape == (len(breast.y_train), 1) and y_test.dtype == np.float32 and n_out == 1
    y_train, _, n_out = targets_for_loss(iris, "sigmoid_binary_cross_entropy")  # more: one output per class
    assert y_train.shape == (len(iris.y_train), 3) and n_out == 3


@pytest.mark.parametrize("loss", ["softmax_cross_entropy", "sigmoid_binary_cross_entropy"])
def test_targets_for_loss_refuses_label_losses_for_regression(loss):
    with pytest.raises(UsageError, match=r"data set 'sine' is a regression task.*use --loss mse"):
        targets_for_loss(load_dataset("sine"), loss)


def test_split_validation_is_seeded_and_disjoint():
    x, y = np.arange(40.0)[:, None], np.arange(40)
    x_train, y_train, x_val, y_val = split_validation(x, y, 0.25, seed=1)
    assert len(x_val) == 10 and len(x_train) == 30
    assert set(y_train) | set(y_val) == set(range(40)) and not set(y_train) & set(y_val)
    np.testing.assert_array_equal(x_val[:, 0], y_val)  # rows stay paired
    assert np.array_equal(split_validation(x, y, 0.25, seed=1)[3], y_val)
    assert not np.array_equal(split_validation(x, y, 0.25, seed=2)[3], y_val)
    with pytest.raises(UsageError, match="leaves none to train on"):
        split_validation(x[:2], y[:2], 0.9, seed=0)
