"""`mlp-jax train`: outputs, resume bit for bit, early stopping, non-finite loss, bad input (exit 2)."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

import mlp_jax.training.fit as fit_module
from mlp_jax.cli.main import main
from mlp_jax.training.checkpoint import load_checkpoint


def train(*args: str) -> int:
    return main(["train", "--quiet", *args])


def test_train_writes_metrics_plots_and_checkpoint(tmp_path):
    out = tmp_path / "moons"
    assert train("--dataset", "moons", "--epochs", "5", "--out", str(out)) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("config", "history", "wall_time_s", "train_loss", "test_loss", "test_accuracy"):
        assert key in metrics
    assert len(metrics["history"]) == 5 and metrics["history"][-1]["epoch"] == 5
    assert metrics["config"]["dataset"] == "moons" and metrics["config"]["grad"] == "manual"
    assert metrics["test_accuracy"] > 0.8
    for name in ("loss.png", "decision_boundary.png", "checkpoint.npz"):
        assert (out / name).stat().st_size > 0
    assert not list(out.glob(".*tmp*"))


def test_regression_reports_test_mse(tmp_path):
    out = tmp_path / "sine"
    assert train("--dataset", "sine", "--epochs", "3", "--out", str(out)) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_mse"] == metrics["test_loss"] and "test_accuracy" not in metrics
    assert not (out / "decision_boundary.png").exists() or metrics["dataset"]["features"] == 2


def test_resume_equals_uninterrupted_bit_for_bit(tmp_path):
    common = ["--dataset", "iris", "--hidden", "8", "--batch-size", "16", "--seed", "3"]
    assert train(*common, "--epochs", "4", "--out", str(tmp_path / "full")) == 0
    assert train(*common, "--epochs", "2", "--out", str(tmp_path / "part")) == 0
    assert main(["train", "--quiet", "--resume", str(tmp_path / "part"), "--epochs", "4"]) == 0
    full = json.loads((tmp_path / "full" / "metrics.json").read_text())
    part = json.loads((tmp_path / "part" / "metrics.json").read_text())
    assert part["epochs"] == 4 and len(part["history"]) == 4
    for key in ("train_loss", "test_loss", "test_accuracy"):
        assert part[key] == full[key]
    a = np.load(tmp_path / "full" / "checkpoint.npz")
    b = np.load(tmp_path / "part" / "checkpoint.npz")
    for name in a.files:
        if name != "__meta__":
            np.testing.assert_array_equal(a[name], b[name])


def test_early_stopping_on_validation_split(tmp_path):
    out = tmp_path / "es"
    assert train("--dataset", "iris", "--epochs", "200", "--lr", "0.05", "--patience", "3", "--out", str(out)) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["stopped_early"] and metrics["epochs"] < 200
    assert metrics["epochs"] - metrics["best"]["epoch"] == 3
    assert "val_loss" in metrics["history"][0] and metrics["dataset"]["n_val"] > 0


def test_non_finite_loss_stops_with_exit_1_and_keeps_last_good_checkpoint(tmp_path, monkeypatch, capsys):
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
    assert train("--dataset", "iris", "--epochs", "5", "--out", str(out)) == 1
    err = capsys.readouterr().err
    assert "non-finite loss" in err and "epoch 3, step 2" in err
    _, meta = load_checkpoint(out / "checkpoint.npz", _template(out))
    assert meta["epoch"] == 2


def _template(out):
    """A TrainState template matching the run in `out`."""
    import jax

    from mlp_jax.core.params import init_params
    from mlp_jax.training.steps import init_train_state

    meta = json.loads(np.load(out / "checkpoint.npz")["__meta__"].tobytes())["metadata"]
    config = fit_module.TrainConfig(**{**meta["config"], "hidden": tuple(meta["config"]["hidden"])})
    opt = fit_module.make_optimizer(config, 1)
    return init_train_state(init_params(jax.random.key(0), [4, *config.hidden, 3]), opt, jax.random.key(0))


def test_real_divergence_exits_1(tmp_path, capsys):
    code = train(
        "--dataset", "sine", "--optimizer", "sgd", "--lr", "1e12", "--epochs", "3", "--out", str(tmp_path / "boom")
    )
    assert code == 1
    assert "non-finite loss" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args,message",
    [
        (["--dataset", "nosuchdata"], "nosuchdata"),
        (["--activation", "relu6"], "unknown activation 'relu6'"),
        (["--loss", "hinge"], "unknown loss 'hinge'"),
        (["--optimizer", "adagrad9"], "unknown optimizer 'adagrad9'"),
        (["--hidden", "12,x"], "12,x"),
        (["--dataset", "/no/such/file.csv"], "not found"),
        (["--dataset", "sine", "--loss", "softmax_cross_entropy"], "regression"),
        (["--grad", "numeric"], "unknown grad"),
        (["--epochs", "0"], "--epochs must be >= 1"),
    ],
)
def test_bad_input_one_line_exit_2(tmp_path, capsys, args, message):
    code = main(["train", "--quiet", "--epochs", "1", "--out", str(tmp_path / "x"), *args])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_bad_csv_files(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,label\n1,2,0\n3,oops,1\n")
    assert train("--dataset", str(bad), "--out", str(tmp_path / "o")) == 2
    assert "oops" in capsys.readouterr().err
    good = tmp_path / "good.csv"
    good.write_text("a,b,label\n1,2,0\n3,4,1\n5,6,0\n7,8,1\n9,1,0\n")
    assert train("--dataset", str(good), "--target", "klass", "--out", str(tmp_path / "o")) == 2
    assert "klass" in capsys.readouterr().err


def test_console_script_in_subprocess(tmp_path):
    """The real entry point: no traceback on bad input, results on success."""
    bad = subprocess.run(
        [sys.executable, "-m", "mlp_jax.cli.main", "train", "--hidden", "12,x"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and bad.stderr.count("\n") == 1
    ok = subprocess.run(
        [sys.executable, "-m", "mlp_jax.cli.main", "train", "--dataset", "xor", "--out", str(tmp_path / "xor")],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    assert "results in" in ok.stdout
    assert json.loads((tmp_path / "xor" / "metrics.json").read_text())["test_accuracy"] == 1.0


@pytest.mark.parametrize("schedule", fit_module.SCHEDULES)
@pytest.mark.parametrize("optimizer", fit_module.OPTIMIZERS)
def test_every_optimizer_and_schedule_builds_and_steps(optimizer, schedule):
    import jax
    import jax.numpy as jnp
    import optax

    from mlp_jax.core.params import init_params

    config = fit_module.TrainConfig(optimizer=optimizer, schedule=schedule, weight_decay=1e-3).resolved()
    opt = fit_module.make_optimizer(config, steps_per_epoch=10)
    params = init_params(jax.random.key(0), [3, 4, 2])
    grads = jax.tree.map(jnp.ones_like, params)
    updates, _ = opt.update(grads, opt.init(params), params)
    new = optax.apply_updates(params, updates)
    changed = [not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(params))]
    assert any(changed) or schedule == "warmup-cosine"  # warmup starts at lr 0


@pytest.mark.parametrize(
    "args,message",
    [
        (["--dataset", "xor", "--patience", "2", "--val-fraction", "0.9"], "leaves none to train on"),
        (["--weight-decay", "nan"], "--weight-decay must be a finite number >= 0"),
        (["--warmup-epochs", "-1"], "--warmup-epochs must be >= 0"),
    ],
    ids=["validation-takes-all", "weight-decay-nan", "negative-warmup"],
)
def test_more_bad_input_one_line_exit_2(tmp_path, capsys, args, message):
    test_bad_input_one_line_exit_2(tmp_path, capsys, args, message)


def test_out_naming_a_file_is_refused_before_loading_data(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(fit_module, "load_dataset", lambda *a, **k: pytest.fail("data loaded"))
    (tmp_path / "file").write_text("")
    assert train("--dataset", "xor", "--out", str(tmp_path / "file")) == 2
    assert "exists and is not a directory" in capsys.readouterr().err


@pytest.mark.parametrize("extra", [[], ["--warmup-epochs", "1"]], ids=["default-warmup", "warmup-1"])
def test_warmup_cosine_for_a_single_step(tmp_path, extra):
    assert (
        train(
            "--dataset",
            "xor",
            "--schedule",
            "warmup-cosine",
            "--epochs",
            "1",
            "--batch-size",
            "4",
            *extra,
            "--out",
            str(tmp_path / "w"),
        )
        == 0
    )


def test_metrics_are_strict_json_and_classification_has_accuracy_for_any_loss(tmp_path):
    out = tmp_path / "iris"
    assert train("--dataset", "iris", "--loss", "mse", "--epochs", "2", "--out", str(out)) == 0

    def refuse(token):
        raise ValueError(f"not JSON: {token}")

    metrics = json.loads((out / "metrics.json").read_text(), parse_constant=refuse)
    assert metrics["best"] == {"val_loss": None, "epoch": 0}  # no validation split: no best loss
    assert 0 <= metrics["test_accuracy"] <= 1 and "test_accuracy" in metrics["history"][-1]


def test_resume_with_nothing_left_to_do_exits_2(tmp_path, capsys, two_epochs_of_xor):
    shutil.copytree(two_epochs_of_xor, tmp_path / "r")
    before = (tmp_path / "r" / "metrics.json").read_text()
    assert main(["train", "--quiet", "--resume", str(tmp_path / "r"), "--epochs", "2"]) == 2
    assert "nothing to do: the run in" in capsys.readouterr().err
    assert (tmp_path / "r" / "metrics.json").read_text() == before


@pytest.fixture(scope="module")
def two_epochs_of_xor(tmp_path_factory):
    """A finished 2-epoch xor run, trained once for the tests that copy and then spoil it."""
    out = tmp_path_factory.mktemp("xor") / "run"
    assert train("--dataset", "xor", "--epochs", "2", "--out", str(out)) == 0
    return out


def _resave_with(path, change):
    """The checkpoint at `path` written again with `change(metadata)` applied to its saved metadata."""
    arrays = dict(np.load(path, allow_pickle=False))
    raw = json.loads(arrays["__meta__"].tobytes().decode())
    change(raw["metadata"])
    arrays["__meta__"] = np.frombuffer(json.dumps(raw).encode(), np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda m: m.pop("history"), "metadata 'history': expected a list of 2 dicts"),
        (lambda m: m.update(epoch="1"), "metadata 'epoch': expected an int >= 0, found '1'"),
        (lambda m: m["config"].update(lr="0.1"), "field 'lr': expected float | None, found '0.1'"),
        (lambda m: m["config"].update(dataset=["xor"]), "field 'dataset': expected str, found ['xor']"),
        (lambda m: m["config"].update(hidden="8"), "field 'hidden': expected tuple[int, ...] | None, found '8'"),
        (lambda m: m["config"].update(colour="red"), "unknown fields ['colour']"),
        (lambda m: m["config"].update(hidden=[0]), "hidden sizes must be >= 1, got [0]"),
        (lambda m: m.update(best={"val_loss": "low", "epoch": 0}), "metadata 'best'"),
    ],
    ids=["no-history", "epoch-str", "lr-str", "dataset-list", "hidden-str", "unknown-field", "hidden-0", "best"],
)
def test_resume_from_malformed_metadata_is_one_line_exit_2(tmp_path, capsys, two_epochs_of_xor, change, message):
    out = tmp_path / "r"
    shutil.copytree(two_epochs_of_xor, out)
    _resave_with(out / "checkpoint.npz", change)
    assert main(["train", "--quiet", "--resume", str(out), "--epochs", "4"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


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
    assert main(["train", "--dataset", str(tmp_path / "outlier.npz"), "--epochs", "2", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_loss"] is None and metrics["history"][-1]["test_loss"] is None
    assert "warning: history[0].test_loss" in capsys.readouterr().err
