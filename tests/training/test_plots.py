"""`mlp_jax.training.plots`: loss and accuracy curves (with the validation split's), a confusion matrix, and a
decision boundary, each written whole as a PNG."""

import matplotlib.pyplot as plt
import numpy as np
import pytest

from mlp_jax.training.plots import (
    confusion_matrix,
    history_figure,
    plot_confusion,
    plot_decision_boundary,
    plot_history,
)

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("accuracy", [False, True], ids=["loss-only", "with-accuracy"])
def test_plot_history_writes_a_png(tmp_path, accuracy):
    history = []
    for epoch in (1, 2, 3):
        record = {"epoch": epoch, "train_loss": 1.0 / epoch, "val_loss": 1.2 / epoch, "test_loss": 1.1 / epoch}
        if accuracy:
            record |= {"train_accuracy": 0.5 + 0.1 * epoch, "test_accuracy": 0.4 + 0.1 * epoch}
        history.append(record)
    plot_history(history, tmp_path / "loss.png", title="t")
    assert (tmp_path / "loss.png").read_bytes().startswith(PNG)
    assert [p.name for p in tmp_path.iterdir()] == ["loss.png"]  # no temporary file left


def test_plot_decision_boundary_asks_for_a_grid_over_the_points(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 2)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int)
    grids = []

    def predict(grid):
        grids.append(grid)
        return (grid[:, 0] > 0).astype(int)

    plot_decision_boundary(predict, x, y, tmp_path / "boundary.png")
    (grid,) = grids
    assert grid.shape == (300 * 300, 2) and grid.dtype == np.float32
    assert np.all(grid.min(0) < x.min(0)) and np.all(grid.max(0) > x.max(0))  # padded around the points
    assert (tmp_path / "boundary.png").read_bytes().startswith(PNG)


@pytest.mark.parametrize("with_val", [False, True], ids=["no-validation", "validation"])
def test_history_figure_draws_a_validation_curve_when_there_is_a_validation_split(with_val):
    history = [
        {"epoch": e, "train_loss": 1 / e, "test_loss": 1.1 / e, "train_accuracy": 0.5, "test_accuracy": 0.4}
        | ({"val_loss": 1.2 / e, "val_accuracy": 0.45} if with_val else {})
        for e in (1, 2)
    ]
    fig = history_figure(history)
    splits = ["train", "val", "test"] if with_val else ["train", "test"]
    for ax in fig.axes:
        assert [line.get_label() for line in ax.get_lines()] == splits
    val = fig.axes[0].get_lines()[1] if with_val else None
    assert val is None or list(val.get_ydata()) == [1.2, 0.6]
    plt.close(fig)


def test_confusion_matrix_counts_true_rows_against_predicted_columns():
    counts = confusion_matrix(np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 1, 2, 0, 2]), 3)
    np.testing.assert_array_equal(counts, [[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    with pytest.raises(ValueError, match=r"y_pred must hold classes in \[0, 3\), got values in \[0, 3\]"):
        confusion_matrix(np.array([0, 1]), np.array([0, 3]), 3)
    with pytest.raises(ValueError, match="same length"):
        confusion_matrix(np.array([0, 1]), np.array([0]), 3)


@pytest.mark.parametrize("num_classes", [2, 40], ids=["few-classes", "many-classes"])
def test_plot_confusion_writes_a_png_and_returns_the_counts(tmp_path, num_classes):
    rng = np.random.default_rng(0)
    y = rng.integers(0, num_classes, 200)
    predicted = np.where(rng.uniform(size=200) < 0.8, y, rng.integers(0, num_classes, 200))
    names = [f"class {i}" for i in range(num_classes)]
    counts = plot_confusion(y, predicted, num_classes, tmp_path / "confusion.png", names, title="t")
    assert counts.sum() == 200 and np.trace(counts) == np.sum(y == predicted)
    assert (tmp_path / "confusion.png").read_bytes().startswith(PNG)
    assert [p.name for p in tmp_path.iterdir()] == ["confusion.png"]
