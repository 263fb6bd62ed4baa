"""``mlp-jax laplace`` on tiny trained runs: laplace.json and reliability.png, the numbers equal to the library
called directly, a given prior, regression, and one-line errors."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import pytest

import mlp_jax as mj
from mlp_jax.cli.main import main
from mlp_jax.core.x64 import x64_mode
from mlp_jax.training.fit import TrainConfig, fit
from mlp_jax.training.trained import load_trained

RUNS = {  # each trained once per module, when a test first asks for it
    "moons": TrainConfig(dataset="moons", hidden=(6,), epochs=3),
    "sine": TrainConfig(dataset="sine", hidden=(6,), epochs=1),
    "mse": TrainConfig(dataset="moons", hidden=(4,), epochs=1, loss="mse"),  # no Laplace likelihood for it
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("laplace-runs")

    def run(name: str):
        if not (root / name).exists():
            fit(RUNS[name], root / name, quiet=True)
        return root / name

    return run


def test_writes_the_report_and_the_diagram_with_the_library_s_numbers(runs, tmp_path, capsys):
    out = tmp_path / "kron"
    assert main(["laplace", "--resume", str(runs("moons")), "--structure", "kron", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "log marginal likelihood" in printed and "laplace.json" in printed
    report = json.loads((out / "laplace.json").read_text())
    assert (out / "reliability.png").stat().st_size > 0
    assert report["structure"] == "kron" and report["subset"] == "all" and report["prior_precision_optimized"]
    assert set(report["test"]["map"]) == {"nll", "accuracy", "ece", "brier"} == set(report["test"]["laplace"])
    assert sum(report["reliability"]["laplace"]["counts"]) == report["n_test"]
    trained = load_trained(runs("moons"))
    with x64_mode(True):
        params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), trained.params)
        x = jnp.asarray(trained.splits.x_train, jnp.float64)
        post = mj.laplace(params, x, jnp.asarray(trained.splits.y_train), activation="relu", structure="kron")
        best = mj.optimize_prior_precision(post)
        assert report["prior_precision"] == pytest.approx(float(best.prior_precision), rel=1e-10)
        assert report["log_marginal_likelihood"] == pytest.approx(float(best.log_marginal_likelihood()), rel=1e-10)


def test_a_given_prior_regression_and_the_default_out(runs, capsys):
    sine = runs("sine")
    code = main(["laplace", "--resume", str(sine), "--subset", "last_layer", "--prior-precision", "2"])
    assert code == 0, capsys.readouterr().err
    report = json.loads((sine / "laplace.json").read_text())
    assert report["likelihood"] == "regression" and report["prior_precision"] == 2.0
    assert not report["prior_precision_optimized"] and report["sigma_noise"] > 0
    assert set(report["test"]["laplace"]) == {"nll", "mse", "coverage_95"}
    assert len(report["coverage"]["laplace"]) == len(report["coverage"]["levels"])
    assert (sine / "reliability.png").stat().st_size > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--resume", "{tmp}/nowhere"], "no trained run in"),
        pytest.param(
            ["--resume", "{mse}"], "laplace needs a run trained with softmax_cross_entropy", marks=pytest.mark.slow
        ),
        (["--resume", "{tmp}", "--batch-size", "0"], "--batch-size must be >= 1"),
        (["--resume", "{tmp}", "--prior-precision", "-1"], "--prior-precision must be a positive number"),
        (["--resume", "{tmp}", "--out", "{tmp}/file"], "is not a directory"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(runs, tmp_path, args, message, capsys):
    (tmp_path / "file").write_text("")
    mse = runs("mse") if any("{mse}" in a for a in args) else None
    assert main(["laplace", *(a.format(tmp=tmp_path, mse=mse) for a in args)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
