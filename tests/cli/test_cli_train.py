"""`mlp-jax train` (`mlp_jax.cli.train`): flags into a TrainConfig, resume bit for bit, the exit codes (1 for a
non-finite loss, 2 for bad input, one line and no traceback), the console script, and --devices."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mlp_jax.cli.train as cli_train
import mlp_jax.training.splits as splits_module
from mlp_jax.cli.main import main
from mlp_jax.training.checkpoint import save_checkpoint
from mlp_jax.training.config import TrainConfig


def train(*args: str) -> int:
    return main(["train", "--quiet", *args])


@pytest.mark.slow
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


@pytest.mark.slow
def test_kfac_trains_and_resumes_bit_for_bit(tmp_path):
    """--optimizer kfac: its state (averaged factors, eigendecompositions) checkpoints and resumes exactly."""
    common = ["--dataset", "iris", "--hidden", "8", "--batch-size", "16", "--optimizer", "kfac"]
    assert train(*common, "--kfac-update-every", "3", "--epochs", "4", "--out", str(tmp_path / "full")) == 0
    assert train(*common, "--kfac-update-every", "3", "--epochs", "2", "--out", str(tmp_path / "part")) == 0
    assert main(["train", "--quiet", "--resume", str(tmp_path / "part"), "--epochs", "4"]) == 0
    full = json.loads((tmp_path / "full" / "metrics.json").read_text())
    part = json.loads((tmp_path / "part" / "metrics.json").read_text())
    assert full["config"]["optimizer"] == "kfac" and full["config"]["lr"] == 0.3
    assert part["test_accuracy"] == full["test_accuracy"] > 0.8 and part["train_loss"] == full["train_loss"]


@pytest.mark.slow
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
        (["--hidden", "4611686018427387904"], "hidden[0] = 4611686018427387904 is over the limit of 2147483647 units"),
        (["--hidden", "1048576,1048576"], "over the limit of 68719476736 (MAX_PARAMETERS, 2**36)"),
        (["--dataset", "digits", "--hidden", "1073741824"], "[64, 1073741824, 10] make 80530636810 parameters"),
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


def test_npz_without_rows_exits_2_with_one_line(tmp_path, capsys):
    np.savez(tmp_path / "empty.npz", x=np.ones((0, 3)), y=np.ones(0))
    assert train("--dataset", str(tmp_path / "empty.npz"), "--out", str(tmp_path / "o")) == 2
    err = capsys.readouterr().err
    assert "expected at least one example (row), got features of shape (0, 3)" in err
    assert err.count("\n") == 1 and "Traceback" not in err


def _labelled_csvs(tmp_path):
    """codes.csv: a target of 60 distinct integers; animals.csv: text labels."""
    (tmp_path / "codes.csv").write_text("a,b,code\n" + "".join(f"{i},{i % 7},{i % 60}\n" for i in range(120)))
    animals = "".join(f"{i},{i % 7},{['cat', 'dog', 'bird'][i % 3]}\n" for i in range(120))
    (tmp_path / "animals.csv").write_text("a,b,animal\n" + animals)
    return tmp_path / "codes.csv", tmp_path / "animals.csv"


def test_task_flag_reaches_the_data(tmp_path, capsys):
    codes, animals = _labelled_csvs(tmp_path)
    out = ["--epochs", "1", "--out", str(tmp_path / "o")]
    assert train("--dataset", str(codes), *out) == 2  # 60 distinct integers: which task?
    err = capsys.readouterr().err
    assert "60 distinct integer values" in err and "--task" in err and err.count("\n") == 1
    assert train("--dataset", str(codes), "--task", "ranking", *out) == 2
    assert "--task" in capsys.readouterr().err
    assert train("--dataset", str(animals), "--task", "regression", *out) == 2
    assert "regression targets must be numbers, got text labels such as 'cat'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_task_flag_becomes_the_config_field(tmp_path, captured):
    assert train("--dataset", "x.csv", "--task", "classification", "--out", str(tmp_path / "o")) == 0
    ((config, *_),) = captured
    assert config.task == "classification"


@pytest.mark.slow  # trains
def test_text_labels_train_and_their_classes_are_in_metrics(tmp_path):
    _, animals = _labelled_csvs(tmp_path)
    assert train("--dataset", str(animals), "--epochs", "1", "--hidden", "4", "--out", str(tmp_path / "t")) == 0
    dataset = json.loads((tmp_path / "t" / "metrics.json").read_text())["dataset"]
    assert dataset["task"] == "classification" and dataset["classes"] == ["bird", "cat", "dog"]


@pytest.mark.slow  # subprocesses, one trains
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


@pytest.mark.parametrize(
    "args,message",
    [
        (["--dataset", "xor", "--patience", "2", "--val-fraction", "0.9"], "leaves none to train on"),
        (["--dataset", "xor", "--optimizer", "kfac", "--dropout", "0.2"], "--optimizer kfac takes its factors"),
        (["--dataset", "xor", "--optimizer", "kfac", "--kfac-decay", "1"], "--kfac-decay must be in [0, 1)"),
        (["--weight-decay", "nan"], "--weight-decay must be a finite number >= 0"),
        (["--warmup-epochs", "-1"], "--warmup-epochs must be >= 0"),
        (["--dropout", "1"], "--dropout must be in [0, 1), got 1.0"),
        (["--dropout", "-0.5"], "--dropout must be in [0, 1), got -0.5"),
    ],
    ids=[
        "validation-takes-all",
        "kfac-dropout",
        "kfac-decay",
        "weight-decay-nan",
        "negative-warmup",
        "dropout-1",
        "dropout-negative",
    ],
)
def test_more_bad_input_one_line_exit_2(tmp_path, capsys, args, message):
    test_bad_input_one_line_exit_2(tmp_path, capsys, args, message)


@pytest.mark.slow  # its fixture trains
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


@pytest.mark.slow  # its fixture trains
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


class _Calls(list):
    """The calls `captured` saw, and the `overwrite` each was given."""

    overwrites: list[bool]


@pytest.fixture
def captured(monkeypatch):
    """The (config, out, resume, quiet) each `fit` call gets, with made-up metrics returned instead of a run."""
    calls, overwrites = _Calls(), []
    calls.overwrites = overwrites

    def fake_fit(config, out, *, resume=False, quiet=False, overwrite=False):
        calls.append((config, out, resume, quiet))
        overwrites.append(overwrite)
        return {"dataset": {"name": "fake"}, "epochs": 1, "wall_time_s": 0.5, "train_loss": 0.25, "test_loss": 0.5}

    monkeypatch.setattr(cli_train, "fit", fake_fit)
    return calls


def test_flags_become_a_train_config(tmp_path, captured):
    flags = ["--dataset", "iris", "--hidden", "8,4", "--activation", "tanh", "--loss", "mse", "--optimizer", "sgd"]
    flags += [
        "--lr",
        "0.1",
        "--schedule",
        "cosine",
        "--warmup-epochs",
        "2",
        "--weight-decay",
        "0.01",
        "--dropout",
        "0.2",
    ]
    flags += ["--epochs", "7", "--batch-size", "16", "--grad", "autodiff", "--seed", "3", "--patience", "4"]
    flags += ["--val-fraction", "0.2", "--devices", "1", "--init", "glorot_uniform", "--out", str(tmp_path / "o")]
    assert train(*flags) == 0
    ((config, out, resume, quiet),) = captured
    assert config == TrainConfig(
        dataset="iris", hidden=(8, 4), activation="tanh", loss="mse", optimizer="sgd", lr=0.1, schedule="cosine",
        warmup_epochs=2, weight_decay=0.01, dropout=0.2, epochs=7, batch_size=16, grad="autodiff", seed=3, patience=4,
        val_fraction=0.2, devices=1, init="glorot_uniform",
    )  # fmt: skip
    assert (out, resume, quiet) == (tmp_path / "o", False, True)


def test_defaults_leave_the_data_sets_defaults_to_fit_and_name_the_run_after_the_data(
    tmp_path, monkeypatch, captured, capsys
):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--hidden", "none"]) == 0
    assert main(["train", "--dataset", "data/my.csv", "--target", "label"]) == 0
    (digits, out, _, quiet), (csv, csv_out, _, _) = captured
    assert digits == TrainConfig(hidden=()) and out == Path("runs", "digits") and not quiet
    assert csv == TrainConfig(dataset="data/my.csv", target="label") and csv_out == Path("runs", "my")
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "fake: 1 epochs in 0.5 s; train_loss 0.2500, test_loss 0.5000"
    assert printed[1] == f"results in {os.path.join('runs', 'digits')}/ (metrics.json, loss.png, checkpoint.npz)"


def test_resume_hands_fit_the_saved_config_with_the_given_options_over_it(tmp_path, captured):
    saved = TrainConfig(dataset="iris", hidden=(8,), lr=0.5, epochs=2, seed=3)
    save_checkpoint(tmp_path / "checkpoint.npz", {"x": np.zeros(1)}, {"config": dataclasses.asdict(saved)})
    assert train("--resume", str(tmp_path), "--epochs", "5", "--devices", "1", "--lr", "9") == 0
    ((config, out, resume, _),) = captured  # fit checks them against the saved run (the next tests)
    assert config == dataclasses.replace(saved, epochs=5, devices=1, lr=9.0) and out == tmp_path and resume


def _crafted_run(out, **config):
    """A checkpoint in `out` of a 1-epoch xor run with TrainConfig(**config), as fit saves it, and no training."""
    import jax
    import optax

    from mlp_jax.core.params import init_params
    from mlp_jax.training.steps import init_train_state

    resolved = TrainConfig(**{"dataset": "xor", "hidden": (2,), "epochs": 1, **config}).resolved()
    resolved = dataclasses.replace(resolved, loss="softmax_cross_entropy")
    params = init_params(jax.random.key(0), [2, 2, 2])  # what xor with hidden (2,) has, whatever config says
    progress = {"epoch": 1, "history": [{"epoch": 1, "train_loss": 0.5}], "best": {"val_loss": None, "epoch": 0}}
    out.mkdir(parents=True, exist_ok=True)
    state = init_train_state(params, optax.adam(1e-3), jax.random.key(1))
    save_checkpoint(out / "checkpoint.npz", state, {"config": dataclasses.asdict(resolved), **progress})


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--hidden", "4,4"], "--hidden 4,4 contradicts the run in DIR, which has --hidden 2; what may change"),
        (["--lr", "9"], "--lr 9.0 contradicts the run in DIR, which has --lr 0.05"),
        (["--dataset", "moons"], "--dataset moons contradicts the run in DIR, which has --dataset xor"),
        (["--optimizer", "sgd"], "--optimizer sgd contradicts the run in DIR, which has --optimizer adam"),
        (["--out", "elsewhere"], "--out elsewhere contradicts --resume DIR"),
    ],
    ids=["hidden", "lr", "dataset", "optimizer", "out"],
)
def test_resume_with_an_option_that_contradicts_the_run_exits_2_naming_it(
    tmp_path, capsys, monkeypatch, flags, message
):

    monkeypatch.setattr(splits_module, "load_dataset", lambda *a, **k: pytest.fail("data loaded"))
    _crafted_run(tmp_path)
    assert train("--resume", str(tmp_path), "--epochs", "3", *flags) == 2
    err = capsys.readouterr().err
    assert message.replace("DIR", str(tmp_path)) in err and err.count("\n") == 1


def test_resume_with_the_runs_own_options_goes_ahead(tmp_path, monkeypatch):

    def loaded(*args, **kwargs):
        raise LookupError("loading")

    monkeypatch.setattr(splits_module, "load_dataset", loaded)
    _crafted_run(tmp_path)
    with pytest.raises(LookupError, match="loading"):  # past every check
        train("--resume", str(tmp_path), "--epochs", "3", "--hidden", "2", "--lr", "0.05", "--dataset", "xor",
              "--out", str(tmp_path), "--devices", "1")  # fmt: skip


def test_resume_help_lists_what_may_change(capsys):
    assert main(["train", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split()).replace("- ", "-")  # argparse wraps at hyphens
    assert "--epochs, --patience, --restore-best/--no-restore-best, --devices, --quiet" in text


def test_a_crafted_checkpoint_asking_for_a_huge_net_is_refused_before_anything_is_built(tmp_path, capsys, monkeypatch):
    import mlp_jax.training.fit as fit_module

    monkeypatch.setattr(splits_module, "load_dataset", lambda *a, **k: pytest.fail("data loaded"))
    monkeypatch.setattr(fit_module, "init_params", lambda *a, **k: pytest.fail("net built"))
    _crafted_run(tmp_path, hidden=(30000, 30000))
    assert main(["train", "--quiet", "--resume", str(tmp_path), "--epochs", "3"]) == 2
    err = capsys.readouterr().err
    assert "its config says hidden [30000, 30000] but its saved weights have [2]" in err and err.count("\n") == 1


@pytest.mark.slow  # three tiny trainings
def test_a_run_on_a_relative_csv_path_resumes_from_elsewhere_and_after_the_file_moved(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    rows = "\n".join(f"{i % 7},{(i * 3) % 5},{i % 2}" for i in range(40))
    (tmp_path / "a" / "data.csv").write_text("u,v,label\n" + rows + "\n")
    monkeypatch.chdir(tmp_path / "a")
    assert train("--dataset", "data.csv", "--hidden", "2", "--epochs", "1", "--out", str(tmp_path / "run")) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["config"]["dataset"] == str(tmp_path / "a" / "data.csv") and len(metrics["dataset"]["sha256"]) == 64
    monkeypatch.chdir(tmp_path)
    assert train("--resume", "run", "--epochs", "2") == 0
    (tmp_path / "a" / "data.csv").rename(tmp_path / "moved.csv")
    assert train("--resume", "run", "--epochs", "3") == 2  # not there any more: says to pass --dataset
    assert train("--resume", "run", "--epochs", "3", "--dataset", "moved.csv") == 0
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["epochs"] == 3


CLI = """
import json, sys
from mlp_jax.cli.main import main
out = {}
for grad in ("manual",):
    for devices in ("4", "1"):
        run = f"{sys.argv[1]}/{grad}-{devices}"
        code = main(["train", "--quiet", "--dataset", "iris", "--epochs", "3", "--batch-size", "16",
                     "--grad", grad, "--devices", devices, "--out", run])
        metrics = json.load(open(f"{run}/metrics.json")) if code == 0 else {}
        out[f"{grad}-{devices}"] = {"code": code, "train_loss": metrics.get("train_loss"),
                                    "devices": metrics.get("devices")}
out["bad-batch"] = main(["train", "--quiet", "--dataset", "iris", "--epochs", "1", "--batch-size", "18",
                         "--devices", "4", "--out", f"{sys.argv[1]}/bad"])
print("RESULT" + json.dumps(out))
"""


def _run_with_devices(script: str, *args: str, devices: int, timeout: float) -> dict:
    """Run `script` in a fresh process that sees `devices` CPU devices; the JSON it printed after RESULT."""
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu")
    for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        env.pop(name, None)
    proc = subprocess.run(
        [sys.executable, "-c", script, *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT")]
    assert lines, f"no result; stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    return json.loads(lines[-1][len("RESULT") :])


@pytest.mark.slow  # a subprocess with 4 devices, three trainings
def test_cli_devices_4_equals_devices_1(tmp_path):
    """`mlp-jax train --devices 4` and `--devices 1` end with the same train_loss (needs the fit.py wiring)."""
    result = _run_with_devices(CLI, str(tmp_path), devices=4, timeout=180)
    for grad in ("manual",):
        four, one = result[f"{grad}-4"], result[f"{grad}-1"]
        assert four["code"] == 0 and one["code"] == 0, result
        assert (four["devices"], one["devices"]) == (4, 1)
        assert abs(four["train_loss"] - one["train_loss"]) <= 1e-5 * abs(one["train_loss"]), result
    assert result["bad-batch"] == 2  # batch 18 over 4 devices: a usage error, exit code 2


@pytest.mark.parametrize("existing", ["metrics.json", "checkpoint.npz"])
def test_a_new_run_into_a_directory_holding_a_run_exits_2_and_keeps_it(tmp_path, capsys, existing):
    (tmp_path / existing).write_text("the old run")
    assert train("--dataset", "xor", "--out", str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert f"already holds a run ({existing}); pass --overwrite" in err and err.count("\n") == 1
    assert (tmp_path / existing).read_text() == "the old run"


def test_the_default_out_of_two_runs_on_files_of_the_same_name_is_refused_the_second_time(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "data").mkdir(parents=True)
    (tmp_path / "runs" / "data" / "metrics.json").write_text("{}")  # a run on a/data.csv
    assert train("--dataset", "b/data.csv") == 2


def test_overwrite_is_passed_to_fit_and_refused_with_resume(tmp_path, captured, capsys):
    assert train("--dataset", "xor", "--out", str(tmp_path), "--overwrite") == 0
    assert captured.overwrites == [True]
    assert train("--resume", str(tmp_path), "--overwrite") == 2
    assert "--overwrite starts a new run; --resume continues one" in capsys.readouterr().err


def test_an_out_dir_that_cannot_be_created_exits_2_before_loading_data(tmp_path, capsys, monkeypatch):

    monkeypatch.setattr(splits_module, "load_dataset", lambda *a, **k: pytest.fail("data loaded"))
    assert train("--dataset", "xor", "--out", "/dev/null/x") == 2
    err = capsys.readouterr().err
    assert "cannot create output directory '/dev/null/x': '/dev/null' is not a directory" in err
    assert err.count("\n") == 1


@pytest.mark.slow  # two tiny trainings
def test_overwrite_replaces_the_old_run_whole(tmp_path):
    out = tmp_path / "run"
    assert train("--dataset", "moons", "--hidden", "2", "--epochs", "1", "--out", str(out)) == 0
    assert (out / "decision_boundary.png").exists()
    assert train("--dataset", "sine", "--hidden", "2", "--epochs", "1", "--out", str(out), "--overwrite") == 0
    assert json.loads((out / "metrics.json").read_text())["dataset"]["name"] == "sine"
    assert not (out / "decision_boundary.png").exists()  # the moons run's plot is not left to mix in


@pytest.mark.slow  # two subprocesses, trained until signalled
def test_sigint_and_sigterm_stop_with_one_line_exit_130_and_the_checkpoint_intact(tmp_path):
    import re
    import signal
    import time

    from mlp_jax.training.checkpoint import read_metadata

    runs = {signal.SIGINT: tmp_path / "int", signal.SIGTERM: tmp_path / "term"}
    command = [sys.executable, "-m", "mlp_jax.cli.main", "train", "--quiet", "--dataset", "xor", "--epochs", "1000000"]
    procs = {
        sig: subprocess.Popen([*command, "--out", str(out)], stderr=subprocess.PIPE, text=True)
        for sig, out in runs.items()
    }
    try:
        deadline = time.monotonic() + 120
        while not all((out / "checkpoint.npz").exists() for out in runs.values()) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # a few more epochs: signalled mid-run
        for sig, proc in procs.items():
            proc.send_signal(sig)
        results = {sig: (proc.wait(timeout=60), proc.stderr.read()) for sig, proc in procs.items()}
    finally:
        for proc in procs.values():
            proc.kill() if proc.poll() is None else None
    for sig, (code, err) in results.items():
        out = runs[sig]
        assert code == 130, (sig, err)
        assert "Traceback" not in err and err.count("\n") == 1, err
        found = re.fullmatch(
            r"mlp-jax train: interrupted at epoch (\d+); checkpoint of epoch (\d+) kept in (.*)\n", err
        )
        assert found, err
        at, kept = int(found[1]), int(found[2])
        assert found[3] == str(out / "checkpoint.npz") and 1 <= kept <= at <= kept + 1
        assert read_metadata(out / "checkpoint.npz")["epoch"] == kept  # intact, and the epoch it says
        assert sorted(p.name for p in out.iterdir()) == ["checkpoint.npz"]  # no temporary, no metrics


def test_no_restore_best_reaches_the_config(tmp_path, captured):
    assert train("--dataset", "iris", "--patience", "3", "--no-restore-best", "--out", str(tmp_path / "o")) == 0
    assert train("--dataset", "iris", "--patience", "3", "--out", str(tmp_path / "p")) == 0
    (first, *_), (second, *_) = captured
    assert first.restore_best is False and second.restore_best is True
