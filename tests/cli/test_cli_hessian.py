"""``mlp-jax hessian`` on a tiny trained run: hessian.json and the density plot, the top eigenvalues equal to
the dense Hessian's, and one-line errors."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import mlp_jax as mj
from mlp_jax.cli.main import main
from mlp_jax.core.x64 import x64_mode
from mlp_jax.training.fit import TrainConfig, fit
from mlp_jax.training.trained import load_trained


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("hessian-run")
    fit(TrainConfig(dataset="moons", hidden=(5,), epochs=2, activation="tanh"), root / "moons", quiet=True)
    return root / "moons"


def test_writes_the_spectrum_and_its_plot_with_the_dense_hessian_s_eigenvalues(run, tmp_path, capsys):
    argv = ["hessian", "--resume", str(run), "--top", "3", "--trace", "--density", "--samples", "16"]
    assert main([*argv, "--probes", "2", "--out", str(tmp_path)]) == 0
    assert "top eigenvalues" in capsys.readouterr().out
    report = json.loads((tmp_path / "hessian.json").read_text())
    assert (tmp_path / "hessian_density.png").stat().st_size > 0
    assert report["num_parameters"] == 2 * 5 + 5 + 5 * 2 + 2 and report["matrix"] == "hessian"
    assert report["trace"]["num_samples"] == 16 and len(report["density"]["nodes"]) == 2
    trained = load_trained(run)
    with x64_mode(True):  # 27 weights: the default 27 Lanczos steps give the eigenvalues
        params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), trained.params)
        theta, unravel = ravel_pytree(params)
        x, y = jnp.asarray(trained.splits.x_train, jnp.float64), jnp.asarray(trained.splits.y_train)
        dense = jax.hessian(lambda t: mj.loss(unravel(t), x, y, activation="tanh", loss="softmax_cross_entropy"))(theta)
        expected = np.sort(np.linalg.eigvalsh(np.asarray(dense)))[::-1][:3]
    assert np.allclose(report["top_eigenvalues"], expected, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--top", "0"], "nothing to compute"),
        (["--samples", "0", "--trace"], "--samples must be >= 1"),
        (["--iterations", "0"], "--iterations must be >= 1"),
        (["--top", "1000"], "k must be at most the number of parameters"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(run, args, message, capsys):
    assert main(["hessian", "--resume", str(run), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
