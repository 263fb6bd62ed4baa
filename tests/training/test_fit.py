"""`mlp_jax.training.fit`: a run's outputs (metrics, plots, checkpoint), early stopping, a non-finite loss, strict
JSON, the checks made before any data is loaded, and the targets and validation split a run trains on."""

import json

import numpy as np
import pytest

import mlp_jax.training.fit as fit_module
from mlp_jax.core.errors import NonFiniteLoss, UsageError
from mlp_jax.training.checkpoint import load_checkpoint, read_metadata
from mlp_jax.training.data import load_dataset
from mlp_jax.training.fit import TrainConfig, fit, split_validation, targets_for_loss

# ------------------------------------------------------------------------------------------ unit checks


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


def test_an_out_path_naming_a_file_is_refused_before_loading_data(tmp_path, monkeypatch):
    monkeypatch.setattr(fit_module, "load_dataset", lambda *a, **k: pytest.fail("data loaded"))
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError, match="exists and is not a directory"):
        fit(TrainConfig(dataset="xor"), tmp_path / "file", quiet=True)


def test_a_bad_config_is_refused_before_loading_data(tmp_path, monkeypatch):
    monkeypatch.setattr(fit_module, "load_dataset", lambda *a, **k: pytest.fail("data loaded"))
    with pytest.raises(UsageError, match="--epochs must be >= 1"):
        fit(TrainConfig(dataset="xor", epochs=0), tmp_path / "run", quiet=True)
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------------------- trainings


@pytest.mark.slow
def test_fit_writes_metrics_plots_and_checkpoint(tmp_path):
    out = tmp_path / "moons"
    returned = fit(TrainConfig(dataset="moons", epochs=5), out, quiet=True)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(returned))  # what it returns is what it wrote
    for key in ("config", "history", "wall_time_s", "train_loss", "test_loss", "test_accuracy"):
        assert key in metrics
    assert len(metrics["history"]) == 5 and metrics["history"][-1]["epoch"] == 5
    assert metrics["config"]["dataset"] == "moons" and metrics["config"]["grad"] == "manual"
    assert metrics["config"]["loss"] == "softmax_cross_entropy"  # the task's default, recorded
    assert metrics["test_accuracy"] > 0.8
    for name in ("loss.png", "decision_boundary.png", "checkpoint.npz"):
        assert (out / name).stat().st_size > 0
    assert not list(out.glob(".*tmp*"))
    assert read_metadata(out / "checkpoint.npz")["epoch"] == 5


@pytest.mark.slow
def test_regression_reports_test_mse(tmp_path):
    out = tmp_path / "sine"
    metrics = fit(TrainConfig(dataset="sine", epochs=3), out, quiet=True)
    assert metrics["test_mse"] == metrics["test_loss"] and "test_accuracy" not in metrics
    assert metrics["test_mse_original_units"] > 0
    assert not (out / "decision_boundary.png").exists() or metrics["dataset"]["features"] == 2


@pytest.mark.slow
def test_early_stopping_on_validation_split(tmp_path):
    metrics = fit(TrainConfig(dataset="iris", epochs=200, lr=0.05, patience=3), tmp_path / "es", quiet=True)
    assert metrics["stopped_early"] and metrics["epochs"] < 200
    assert metrics["epochs"] - metrics["best"]["epoch"] == 3
    assert "val_loss" in metrics["history"][0] and metrics["dataset"]["n_val"] > 0


@pytest.mark.slow
def test_non_finite_loss_raises_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    real = fit_module.make_train_epoch

    def poisoned(*args, **kwargs):
        epoch_fn = real(*args, **kwargs)
        calls = []

        def wrapped(state, x, y):
            calls.append(1)
            state, losses = epoch_fn(state, x, y)
            return state, (losses.at[1].set(np.nan) if len(calls) == 3 else losses)

        return wrapped

    monkeypatch.setattr(fit_module, "make_train_epoch", poisoned)
    out = tmp_path / "nan"
    with pytest.raises(NonFiniteLoss, match=r"non-finite loss nan at epoch 3, step 2 of \d+ .*checkpoint is kept"):
        fit(TrainConfig(dataset="iris", epochs=5), out, quiet=True)
    _, meta = load_checkpoint(out / "checkpoint.npz", _template(out))
    assert meta["epoch"] == 2
    assert not (out / "metrics.json").exists()


def _template(out):
    """A TrainState template matching the run in `out`."""
    import jax

    from mlp_jax.core.params import init_params
    from mlp_jax.training.steps import init_train_state

    meta = json.loads(np.load(out / "checkpoint.npz")["__meta__"].tobytes())["metadata"]
    config = fit_module.TrainConfig(**{**meta["config"], "hidden": tuple(meta["config"]["hidden"])})
    opt = fit_module.make_optimizer(config, 1)
    return init_train_state(init_params(jax.random.key(0), [4, *config.hidden, 3]), opt, jax.random.key(0))


@pytest.mark.slow
@pytest.mark.parametrize("warmup", [0, 1], ids=["default-warmup", "warmup-1"])
def test_warmup_cosine_for_a_single_step(tmp_path, warmup):
    config = TrainConfig(dataset="xor", schedule="warmup-cosine", epochs=1, batch_size=4, warmup_epochs=warmup)
    assert fit(config, tmp_path / "w", quiet=True)["steps"] == 1


@pytest.mark.slow
def test_metrics_are_strict_json_and_classification_has_accuracy_for_any_loss(tmp_path):
    out = tmp_path / "iris"
    fit(TrainConfig(dataset="iris", loss="mse", epochs=2), out, quiet=True)

    def refuse(token):
        raise ValueError(f"not JSON: {token}")

    metrics = json.loads((out / "metrics.json").read_text(), parse_constant=refuse)
    assert metrics["best"] == {"val_loss": None, "epoch": 0}  # no validation split: no best loss
    assert 0 <= metrics["test_accuracy"] <= 1 and "test_accuracy" in metrics["history"][-1]


@pytest.mark.slow
def test_metrics_that_are_not_finite_are_null_with_a_warning(tmp_path, capsys):
    """A test row far outside the training range overflows the float32 forward pass: the run still
    writes strict JSON, with null for the non-finite values, and says so."""
    rng = np.random.default_rng(0)
    x_train, x_test = rng.normal(size=(40, 2)), rng.normal(size=(10, 2))
    x_test[3, 0] = 3e38
    np.savez(
        tmp_path / "outlier.npz", x_train=x_train, y_train=np.arange(40) % 2, x_test=x_test, y_test=np.arange(10) % 2
    )
    out = tmp_path / "o"
    fit(TrainConfig(dataset=str(tmp_path / "outlier.npz"), epochs=2), out)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_loss"] is None and metrics["history"][-1]["test_loss"] is None
    assert "warning: history[0].test_loss" in capsys.readouterr().err
