"""`mlp_jax.training.fit`: a run's outputs (metrics, plots, checkpoint), early stopping, a non-finite loss, strict
JSON, the checks made before any data is loaded (the config, the output directory, a run already there), stale
temporaries removed, and numpy's warnings silenced under quiet."""

import dataclasses
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import mlp_jax.training.fit as fit_module
import mlp_jax.training.splits as splits_module
from mlp_jax.core.errors import NonFiniteLoss, UsageError
from mlp_jax.training.checkpoint import load_checkpoint, read_metadata
from mlp_jax.training.fit import TrainConfig, fit

# ------------------------------------------------------------------------------------------ unit checks


def test_an_out_path_naming_a_file_is_refused_before_loading_data(tmp_path, monkeypatch):
    monkeypatch.setattr(splits_module, "load_dataset", lambda *a, **k: pytest.fail("data loaded"))
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError, match="exists and is not a directory"):
        fit(TrainConfig(dataset="xor"), tmp_path / "file", quiet=True)


def test_a_bad_config_is_refused_before_loading_data(tmp_path, monkeypatch):
    monkeypatch.setattr(splits_module, "load_dataset", lambda *a, **k: pytest.fail("data loaded"))
    with pytest.raises(UsageError, match="--epochs must be >= 1"):
        fit(TrainConfig(dataset="xor", epochs=0), tmp_path / "run", quiet=True)
    assert not (tmp_path / "run").exists()


class _Loaded(Exception):
    """Raised by a stand-in for load_dataset: the run got as far as loading the data."""


def _stop_at_loading(*args, **kwargs):
    raise _Loaded


@pytest.mark.parametrize("existing", ["checkpoint.npz", "metrics.json"])
def test_a_new_run_into_a_directory_holding_a_run_is_refused_before_loading_data(tmp_path, monkeypatch, existing):
    monkeypatch.setattr(splits_module, "load_dataset", lambda *a, **k: pytest.fail("data loaded"))
    (tmp_path / existing).write_text("the old run")
    with pytest.raises(UsageError, match=rf"{tmp_path} already holds a run \({existing}\).*--overwrite.*--resume"):
        fit(TrainConfig(dataset="xor"), tmp_path, quiet=True)
    assert (tmp_path / existing).read_text() == "the old run"
    monkeypatch.setattr(splits_module, "load_dataset", _stop_at_loading)
    with pytest.raises(_Loaded):  # asked for: goes ahead
        fit(TrainConfig(dataset="xor"), tmp_path, quiet=True, overwrite=True)
    with pytest.raises(UsageError, match="overwrite=True starts a new run; resume=True continues"):
        fit(TrainConfig(dataset="xor"), tmp_path, quiet=True, overwrite=True, resume=True)


@pytest.mark.parametrize("where", ["/dev/null/x", "file/sub/run"])
def test_an_out_path_that_cannot_be_created_is_refused_before_loading_data(tmp_path, monkeypatch, where):
    monkeypatch.setattr(splits_module, "load_dataset", lambda *a, **k: pytest.fail("data loaded"))
    (tmp_path / "file").write_text("")
    out = Path(where) if where.startswith("/") else tmp_path / where
    with pytest.raises(UsageError, match=rf"cannot create output directory '{out}': '.*' is not a directory"):
        fit(TrainConfig(dataset="xor"), out, quiet=True)


def test_stale_temporaries_are_removed_when_a_run_starts(tmp_path, monkeypatch):
    monkeypatch.setattr(splits_module, "load_dataset", _stop_at_loading)
    stale, other = tmp_path / ".checkpoint.npz.k2j_x9ab.tmp", tmp_path / "notes.txt"
    for path in (stale, other):
        path.write_bytes(b"x")
        os.utime(path, (time.time() - 60, time.time() - 60))
    with pytest.raises(_Loaded):
        fit(TrainConfig(dataset="xor"), tmp_path, quiet=True)
    assert not stale.exists() and other.exists()


def test_quiet_silences_numpy_runtime_warnings_of_the_run(tmp_path, monkeypatch):
    def overflow_then_stop(*args, **kwargs):
        np.float32(3e38) * np.float32(10)  # overflows: a numpy RuntimeWarning
        raise _Loaded

    monkeypatch.setattr(splits_module, "targets_for_loss", overflow_then_stop)
    for quiet in (True, False):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(_Loaded):
                fit(TrainConfig(dataset="xor"), tmp_path / str(quiet), quiet=quiet)
        assert any(issubclass(w.category, RuntimeWarning) for w in caught) == (not quiet)


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


def _poison(monkeypatch, at_call: int) -> None:
    """make_train_epoch's epochs, with a NaN in the second minibatch loss of the `at_call`-th epoch."""
    real = fit_module.make_train_epoch

    def poisoned(*args, **kwargs):
        epoch_fn, calls = real(*args, **kwargs), []

        def wrapped(state, x, y):
            calls.append(1)
            state, losses = epoch_fn(state, x, y)
            return state, (losses.at[1].set(np.nan) if len(calls) == at_call else losses)

        return wrapped

    monkeypatch.setattr(fit_module, "make_train_epoch", poisoned)


@pytest.mark.slow  # a (tiny) training
def test_a_non_finite_loss_in_the_first_epoch_says_no_checkpoint_was_written(tmp_path, monkeypatch):
    _poison(monkeypatch, at_call=1)
    out = tmp_path / "nan"
    with pytest.raises(NonFiniteLoss, match=r"at epoch 1, step 2 of \d+ .*; no checkpoint was written") as error:
        fit(TrainConfig(dataset="xor", hidden=(2,), epochs=2, batch_size=2), out, quiet=True)
    assert "kept" not in str(error.value)
    assert not (out / "checkpoint.npz").exists() and not (out / "metrics.json").exists()


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


@pytest.mark.slow  # a (tiny) training
def test_a_run_with_dropout_and_a_validation_split_records_them_and_draws_its_plots(tmp_path):
    config = TrainConfig(dataset="iris", hidden=(16, 16), epochs=3, dropout=0.3, patience=5)
    metrics = fit(config, tmp_path / "run", quiet=True)
    assert metrics["config"]["dropout"] == 0.3
    assert all("val_loss" in record and "val_accuracy" in record for record in metrics["history"])
    for name in ("loss.png", "confusion.png"):
        assert (tmp_path / "run" / name).read_bytes().startswith(b"\x89PNG")
    plain = fit(dataclasses.replace(config, dropout=0.0), tmp_path / "plain", quiet=True)
    assert plain["history"][0]["batch_loss_mean"] != metrics["history"][0]["batch_loss_mean"]


@pytest.mark.slow  # two tiny trainings
def test_early_stopping_ends_with_the_best_validation_weights_unless_told_not_to(tmp_path):
    config = TrainConfig(dataset="iris", hidden=(8,), epochs=40, lr=0.3, batch_size=16, patience=2)
    best = fit(config, tmp_path / "best", quiet=True)
    assert best["stopped_early"] and best["restored_best"] is True
    epoch = best["best_epoch"]
    assert epoch == best["best"]["epoch"] < best["epochs"]
    at_best, last = best["history"][epoch - 1], best["history"][-1]
    for key in ("train_loss", "test_loss", "test_accuracy", "train_accuracy"):
        assert best[key] == at_best[key]  # the best epoch's weights, evaluated again: the same numbers
    assert best["test_loss"] != last["test_loss"]
    meta = read_metadata(tmp_path / "best" / "checkpoint.npz")
    assert meta["best_params"] is True and meta["best"]["epoch"] == epoch
    kept = fit(dataclasses.replace(config, restore_best=False), tmp_path / "last", quiet=True)
    assert kept["restored_best"] is False and kept["best_epoch"] == epoch
    assert kept["test_loss"] == last["test_loss"]
    assert [h["test_loss"] for h in kept["history"]] == [h["test_loss"] for h in best["history"]]  # same training


@pytest.mark.slow  # three tiny trainings
def test_a_resumed_run_keeps_the_best_weights_of_before_the_resume(tmp_path):
    config = TrainConfig(dataset="iris", hidden=(4,), epochs=6, lr=0.3, batch_size=16, patience=50)
    full = fit(config, tmp_path / "full", quiet=True)
    fit(dataclasses.replace(config, epochs=3), tmp_path / "part", quiet=True)
    part = fit(config, tmp_path / "part", resume=True, quiet=True)
    for key in ("best_epoch", "restored_best", "train_loss", "test_loss", "test_accuracy"):
        assert part[key] == full[key], key
    assert part["test_loss"] == part["history"][part["best_epoch"] - 1]["test_loss"]
