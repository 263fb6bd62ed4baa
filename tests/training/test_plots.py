"""`mlp_jax.training.plots`: loss and accuracy curves, and a decision boundary, each written whole as a PNG."""

import numpy as np
import pytest

from mlp_jax.training.plots import plot_decision_boundary, plot_history

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
