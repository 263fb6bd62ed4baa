"""`mlp_jax.training.rundir`: the progress saved with a checkpoint read back and checked, metrics.json written as
strict JSON with null (and a warning) for what is not finite, and the plots of a run."""

import dataclasses
import hashlib
import json
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import mlp_jax as mj
from mlp_jax.core.errors import UsageError
from mlp_jax.core.params import init_params
from mlp_jax.training.checkpoint import save_checkpoint
from mlp_jax.training.config import TrainConfig
from mlp_jax.training.data import load_dataset
from mlp_jax.training.rundir import (
    CHECKPOINT,
    METRICS,
    check_saved_widths,
    dataset_sha256,
    finite_or_null,
    resumed_config,
    saved_progress,
    write_metrics,
    write_plots,
)
from mlp_jax.training.steps import init_train_state

HISTORY = [{"epoch": 1, "train_loss": 0.5}, {"epoch": 2, "train_loss": 0.25}]


def save_progress(path, **metadata):
    progress = {"epoch": 2, "history": HISTORY, "best": {"val_loss": 0.3, "epoch": 2}}
    save_checkpoint(path, {"x": jnp.zeros(1)}, progress | metadata)


def test_saved_progress_reads_epoch_history_and_best(tmp_path):
    save_progress(tmp_path / CHECKPOINT)
    assert saved_progress(tmp_path / CHECKPOINT) == {
        "epoch": 2,
        "history": HISTORY,
        "best": {"val_loss": 0.3, "epoch": 2},
        "best_params": False,  # no best epoch's params saved beside the state
    }


def test_an_infinite_best_reads_as_no_validation_loss(tmp_path):
    save_progress(tmp_path / CHECKPOINT, best={"val_loss": math.inf, "epoch": 0})
    assert saved_progress(tmp_path / CHECKPOINT)["best"] == {"val_loss": None, "epoch": 0}


@pytest.mark.parametrize(
    "metadata, field",
    [
        ({"epoch": -1}, "epoch"),
        ({"epoch": True}, "epoch"),
        ({"epoch": 3}, "history"),  # three epochs, two history lines
        ({"history": [{"epoch": 1}, {"epoch": "2"}]}, "history"),
        ({"best": {"val_loss": 0.3}}, "best"),
        ({"best": {"val_loss": "low", "epoch": 1}}, "best"),
    ],
    ids=["epoch-negative", "epoch-bool", "epoch-history-mismatch", "history-str", "best-no-epoch", "best-str"],
)
def test_saved_progress_names_the_malformed_field(tmp_path, metadata, field):
    save_progress(tmp_path / CHECKPOINT, **metadata)
    with pytest.raises(UsageError, match=f"cannot resume from .*: metadata '{field}': expected"):
        saved_progress(tmp_path / CHECKPOINT)


def test_saved_progress_without_a_checkpoint(tmp_path):
    with pytest.raises(UsageError, match=r"cannot resume: checkpoint .* not found"):
        saved_progress(tmp_path / CHECKPOINT)


def test_finite_or_null_replaces_nan_and_inf_and_names_their_paths():
    tree = {"a": 1.0, "history": [{"loss": math.nan}, {"loss": 2.0, "acc": -math.inf}], "n": 3, "s": "x"}
    cleaned, paths = finite_or_null(tree)
    assert cleaned == {"a": 1.0, "history": [{"loss": None}, {"loss": 2.0, "acc": None}], "n": 3, "s": "x"}
    assert paths == ["history[0].loss", "history[1].acc"]


def test_write_metrics_is_strict_json_with_null_and_a_warning(tmp_path, capsys):
    written = write_metrics(tmp_path, {"test_loss": math.inf, "history": [{"test_loss": math.nan}]}, quiet=False)
    assert written == {"test_loss": None, "history": [{"test_loss": None}]}
    assert json.loads((tmp_path / METRICS).read_text()) == written
    assert "warning: test_loss, history[0].test_loss not finite (null in metrics.json)" in capsys.readouterr().err
    write_metrics(tmp_path, {"test_loss": math.inf}, quiet=True)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    "dataset, plots",
    [
        ("moons", {"loss.png", "confusion.png", "decision_boundary.png"}),
        ("iris", {"loss.png", "confusion.png"}),
        ("sine", {"loss.png"}),
    ],
)
def test_write_plots_draws_a_decision_boundary_for_two_feature_classification(tmp_path, dataset, plots):
    data = load_dataset(dataset)
    config = TrainConfig(dataset=dataset, hidden=(4,)).resolved()
    params = init_params(jax.random.key(0), [data.num_features, 4, data.num_outputs])
    history = [{"epoch": 1, "train_loss": 1.0, "test_loss": 1.1}, {"epoch": 2, "train_loss": 0.5, "test_loss": 0.6}]
    write_plots(tmp_path, history, data, params, config)
    assert {p.name for p in tmp_path.iterdir()} == plots
    assert all((tmp_path / name).stat().st_size > 0 for name in plots)


# ------------------------------------------------------------------------------------------ resuming


def saved_run(out, *, sha256=None, **config):
    """A checkpoint in `out` of a 1-epoch run with TrainConfig(**config), as fit saves it (a tiny state)."""
    resolved = TrainConfig(**{"dataset": "xor", "hidden": (2,), "epochs": 1, **config}).resolved()
    resolved = dataclasses.replace(resolved, loss="softmax_cross_entropy")
    params = init_params(jax.random.key(0), [2, *resolved.hidden, 2])
    metadata = {
        "config": dataclasses.asdict(resolved),
        "epoch": 1,
        "history": [{"epoch": 1, "train_loss": 0.5}],
        "best": {"val_loss": None, "epoch": 0},
        "dataset_sha256": sha256,
    }
    out.mkdir(parents=True, exist_ok=True)
    state = init_train_state(params, optax.adam(1e-3), jax.random.key(1))
    save_checkpoint(out / CHECKPOINT, state, metadata)
    return resolved


def test_a_resume_with_the_saved_options_takes_the_saved_config_and_the_new_epochs(tmp_path):
    saved = saved_run(tmp_path, lr=0.25, seed=3, patience=2)
    given = TrainConfig(dataset="xor", hidden=(2,), lr=0.25, seed=3, epochs=5, patience=4, devices=1)
    expected = dataclasses.replace(saved, epochs=5, patience=4, devices=1)
    assert dataclasses.asdict(resumed_config(given, tmp_path)) == dataclasses.asdict(expected)
    assert resumed_config(TrainConfig(dataset="xor", seed=3, epochs=5), tmp_path).lr == 0.25  # None: the saved


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(hidden=(4, 4)), "--hidden 4,4 contradicts the run in DIR, which has --hidden 2"),
        (dict(lr=0.5), "--lr 0.5 contradicts the run in DIR, which has --lr 0.05"),
        (dict(optimizer="sgd"), "--optimizer sgd contradicts the run in DIR, which has --optimizer adam"),
        (dict(dataset="moons"), "--dataset moons contradicts the run in DIR, which has --dataset xor"),
        (dict(seed=1), "--seed 1 contradicts"),
        (dict(target="label"), "--target label contradicts the run in DIR, which has --target None"),
        (dict(patience=3), "--patience 3: the run in DIR was started without --patience"),
    ],
    ids=["hidden", "lr", "optimizer", "dataset", "seed", "target", "patience-on"],
)
def test_an_option_that_contradicts_the_saved_run_is_an_error_naming_it(tmp_path, change, message):
    saved_run(tmp_path)
    with pytest.raises(UsageError, match=re.escape(message.replace("DIR", str(tmp_path)))) as error:
        resumed_config(TrainConfig(**{"dataset": "xor", "epochs": 3, **change}), tmp_path)
    assert "may change on resume: --epochs, --patience" in str(error.value) or "patience" in change


def test_a_run_on_a_relative_path_resumes_from_anywhere_and_after_the_file_moved(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "data.csv").write_text("x,y\n1,0\n2,1\n")
    sha = dataset_sha256(str(tmp_path / "a" / "data.csv"))
    saved_run(tmp_path / "run", dataset=str(tmp_path / "a" / "data.csv"), sha256=sha)
    monkeypatch.chdir(tmp_path)  # elsewhere, the saved (resolved) path still finds the file
    resumed = resumed_config(TrainConfig(dataset=str(tmp_path / "a" / "data.csv"), epochs=2), tmp_path / "run")
    assert resumed.dataset == str(tmp_path / "a" / "data.csv")
    monkeypatch.chdir(tmp_path / "a")
    assert resumed_config(TrainConfig(dataset="data.csv", epochs=2), tmp_path / "run").epochs == 2  # the same file
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "data.csv").rename(tmp_path / "b" / "moved.csv")
    saved_path = str(tmp_path / "a" / "data.csv")
    with pytest.raises(
        UsageError, match=rf"data file '{saved_path}', which is not there.*pass its new path with --dataset"
    ):
        resumed_config(TrainConfig(dataset=saved_path, epochs=2), tmp_path / "run")
    moved = resumed_config(TrainConfig(dataset="../b/moved.csv", epochs=2), tmp_path / "run")
    assert moved.dataset == str(tmp_path / "b" / "moved.csv")  # the same content: taken, resolved
    (tmp_path / "b" / "other.csv").write_text("x,y\n1,1\n2,0\n")
    with pytest.raises(UsageError, match=r"--dataset ../b/other.csv contradicts .* its content differs"):
        resumed_config(TrainConfig(dataset="../b/other.csv", epochs=2), tmp_path / "run")
    (tmp_path / "a" / "data.csv").write_text("x,y\n1,1\n2,0\n")  # back where it was, changed
    with pytest.raises(UsageError, match=r"data file '.*data.csv' changed since the run started"):
        resumed_config(TrainConfig(dataset=saved_path, epochs=2), tmp_path / "run")


def test_dataset_sha256_hashes_files_and_the_idx_files_of_a_folder(tmp_path):
    assert dataset_sha256("digits") is None and dataset_sha256(str(tmp_path / "missing.csv")) is None
    (tmp_path / "d.csv").write_bytes(b"x,y\n1,2\n")
    assert dataset_sha256(str(tmp_path / "d.csv")) == hashlib.sha256(b"x,y\n1,2\n").hexdigest()
    (tmp_path / "idx").mkdir()
    (tmp_path / "idx" / "train-images-idx3-ubyte.gz").write_bytes(b"1")
    before = dataset_sha256(str(tmp_path / "idx"))
    (tmp_path / "idx" / "notes.txt").write_text("not read")
    assert dataset_sha256(str(tmp_path / "idx")) == before
    (tmp_path / "idx" / "train-images-idx3-ubyte.gz").write_bytes(b"2")
    assert dataset_sha256(str(tmp_path / "idx")) != before


def test_saved_widths_are_checked_against_the_config_before_anything_is_allocated(tmp_path):
    saved_run(tmp_path, hidden=(3, 5))
    check_saved_widths(tmp_path / CHECKPOINT, (3, 5))
    with pytest.raises(UsageError, match=r"config says hidden \[30000, 30000\] but its saved weights have \[3, 5\]"):
        check_saved_widths(tmp_path / CHECKPOINT, (30000, 30000))
    with pytest.raises(UsageError, match=r"hidden \[3\] but its saved weights have \[3, 5\]"):
        check_saved_widths(tmp_path / CHECKPOINT, (3,))


def test_the_confusion_matrix_is_of_the_test_split(tmp_path, monkeypatch):
    import mlp_jax.training.plots as plots

    data = load_dataset("iris")
    config = TrainConfig(dataset="iris", hidden=(4,)).resolved()
    params = init_params(jax.random.key(0), [data.num_features, 4, data.num_outputs])
    drawn = []
    monkeypatch.setattr(plots, "plot_confusion", lambda *args: drawn.append(args))
    write_plots(tmp_path, [{"epoch": 1, "train_loss": 1.0, "test_loss": 1.1}], data, params, config)
    ((y_true, y_pred, num_classes, path, classes, _),) = drawn
    predicted = np.asarray(mj.forward(params, jnp.asarray(data.x_test), "relu")).argmax(1)
    np.testing.assert_array_equal(y_true, data.y_test)
    np.testing.assert_array_equal(y_pred, predicted)
    assert (num_classes, path, classes) == (3, tmp_path / "confusion.png", data.class_names)
