"""``mlp-jax curvcheck``: the table, the JSON, the exit codes."""

from __future__ import annotations

import json

import jax.numpy as jnp
import pytest

import mlp_jax as mj
from helpers import SOFTSIGN
from mlp_jax.cli.main import main


def test_curvcheck_passes_and_writes_json(tmp_path, capsys):
    out = tmp_path / "curv.json"
    code = main(["curvcheck", "--sizes", "3,4,3", "--batch", "3", "--activation", "tanh", "--json", str(out)])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "all checks pass" in text and "diag_hessian" in text and "kfac_factors" in text
    report = json.loads(out.read_text())
    assert report["ok"] is True
    names = {c["quantity"] for c in report["checks"]}
    assert {"diag_ggn", "batch_diag_ggn", "diag_hessian", "kfac_factors", "sum_grad_squared", "grad_variance"} <= names
    assert {"per_example_grad_norms", "ggn_vector_product", "hessian_vector_product"} <= names


def test_curvcheck_float32_passes(capsys):
    assert main(["curvcheck", "--sizes", "3,4,2", "--batch", "2", "--dtype", "float32", "--loss", "mse"]) == 0


def test_a_wrong_second_derivative_fails_with_exit_1(restored_registries, capsys):
    wrong = lambda z: 1.01 * (-2 * z / (1 + jnp.abs(z)) ** 3)
    mj.register_activation("bad_softsign", *SOFTSIGN, second_derivative=wrong, verify=False)
    code = main(["curvcheck", "--sizes", "3,4,2", "--batch", "3", "--activation", "bad_softsign", "--loss", "mse"])
    text = capsys.readouterr().out
    assert code == 1
    assert "checks FAIL" in text
    failing = {line.split()[0] for line in text.splitlines() if line.endswith("NO")}
    assert failing == {"diag_hessian", "hessian_vector_product"}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--sizes", "3,x"], "--sizes must be comma-separated positive integers"),
        (["--sizes", "3"], "at least two positive integers"),
        (["--sizes", "100,100,100"], "at most 4096 parameters"),
        (["--batch", "0"], "--batch must be in [1, 4096]"),
        (["--seed", "-1"], "--seed must be >= 0"),
        (["--activation", "nope"], "unknown activation 'nope'"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(args, message, capsys):
    assert main(["curvcheck", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
