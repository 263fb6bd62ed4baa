"""`mlp_jax.training.rundir`: the progress saved with a checkpoint read back and checked, metrics.json written as
strict JSON with null (and a warning) for what is not finite, and the plots of a run."""

import json
import math

import jax
import jax.numpy as jnp
import pytest

from mlp_jax.core.errors import UsageError
from mlp_jax.core.params import init_params
from mlp_jax.training.checkpoint import save_checkpoint
from mlp_jax.training.config import TrainConfig
from mlp_jax.training.data import load_dataset
from mlp_jax.training.rundir import CHECKPOINT, METRICS, finite_or_null, saved_progress, write_metrics, write_plots

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


@pytest.mark.parametrize("dataset, plots", [("moons", {"loss.png", "decision_boundary.png"}), ("sine", {"loss.png"})])
def test_write_plots_draws_a_decision_boundary_for_two_feature_classification(tmp_path, dataset, plots):
    data = load_dataset(dataset)
    config = TrainConfig(dataset=dataset, hidden=(4,)).resolved()
    params = init_params(jax.random.key(0), [data.num_features, 4, data.num_outputs])
    history = [{"epoch": 1, "train_loss": 1.0, "test_loss": 1.1}, {"epoch": 2, "train_loss": 0.5, "test_loss": 0.6}]
    write_plots(tmp_path, history, data, params, config)
    assert {p.name for p in tmp_path.iterdir()} == plots
    assert all((tmp_path / name).stat().st_size > 0 for name in plots)
