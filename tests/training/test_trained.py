"""`mlp_jax.training.trained.load_trained`: a finished run loaded back with the params its metrics report, its
splits rebuilt to the same arrays, and clear errors for a directory that holds no usable run."""

import json

import jax
import numpy as np
import pytest

from mlp_jax.core.errors import UsageError
from mlp_jax.core.model import forward
from mlp_jax.training.fit import TrainConfig, fit
from mlp_jax.training.trained import load_trained


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two tiny moons runs: one plain, one with early stopping whose best epoch's params are restored."""
    root = tmp_path_factory.mktemp("runs")
    plain = fit(TrainConfig(dataset="moons", hidden=(8,), epochs=3), root / "plain", quiet=True)
    best = fit(TrainConfig(dataset="moons", hidden=(8,), epochs=6, patience=2), root / "best", quiet=True)
    return root, plain, best


@pytest.mark.parametrize("name", ["plain", "best"])
def test_the_loaded_params_are_those_the_metrics_report(runs, name):
    root, *_ = runs
    metrics = json.loads((root / name / "metrics.json").read_text())
    trained = load_trained(root / name)
    assert trained.epochs == len(metrics["history"])
    assert trained.restored_best == (name == "best")
    assert trained.sizes == [2, 8, 2]
    x_test, y_test = trained.splits.data.x_test, trained.splits.y_test
    logits = np.asarray(forward(trained.params, x_test, trained.config.activation))
    accuracy = float(np.mean(logits.argmax(1) == y_test))
    assert accuracy == pytest.approx(metrics["test_accuracy"], abs=1e-6)
    assert trained.splits.loss == "softmax_cross_entropy"
    if name == "best":  # the validation split is carved out again, the same rows
        assert len(trained.splits.x_val) == metrics["dataset"]["n_val"]
        assert len(trained.splits.x_train) == metrics["dataset"]["n_train"]


def test_the_params_are_device_arrays_of_the_run_dtype(runs):
    root, *_ = runs
    leaves = jax.tree.leaves(load_trained(root / "plain").params)
    assert all(isinstance(leaf, jax.Array) and leaf.dtype == np.float32 for leaf in leaves)


def test_a_directory_without_a_run_is_refused(tmp_path):
    with pytest.raises(UsageError, match=r"no trained run in .*checkpoint.npz not found"):
        load_trained(tmp_path)


def test_a_corrupt_checkpoint_is_refused(tmp_path):
    (tmp_path / "checkpoint.npz").write_bytes(b"not a zip")
    with pytest.raises(UsageError, match="checkpoint"):
        load_trained(tmp_path)


def test_a_user_data_file_that_changed_is_refused(tmp_path):
    data = tmp_path / "data.csv"
    rows = np.random.default_rng(0).normal(size=(40, 3))
    labels = (rows[:, 0] > 0).astype(int)
    data.write_text("a,b,c,label\n" + "\n".join(",".join(map(str, [*r, k])) for r, k in zip(rows, labels)))
    fit(TrainConfig(dataset=str(data), target="label", hidden=(4,), epochs=1), tmp_path / "run", quiet=True)
    assert load_trained(tmp_path / "run").sizes == [3, 4, 2]
    data.write_text(data.read_text().replace("a,b,c", "a,b,c", 1) + "\n0.1,0.2,0.3,1")
    with pytest.raises(UsageError, match="changed since the run started"):
        load_trained(tmp_path / "run")
