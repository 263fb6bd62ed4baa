"""`mlp-jax gradcheck` (mlp_jax.cli.gradcheck): a correct net passes (exit 0) and writes its JSON, a planted
wrong derivative exits 1, bad arguments exit 2 with one line on stderr."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import pytest

from mlp_jax.cli import main as cli


def test_cli_passes_and_writes_json(tmp_path, capsys):
    out = tmp_path / "report.json"
    code = cli.main(
        [
            "gradcheck",
            "--sizes",
            "4,16,16,3",
            "--activation",
            "tanh",
            "--loss",
            "softmax_cross_entropy",
            "--dtype",
            "float32",
            "--batch",
            "8",
            "--seed",
            "0",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    assert capsys.readouterr().out.rstrip().endswith("OK: every leaf is within tolerance")
    assert json.loads(out.read_text())["ok"] is True


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--sizes", "4,x"], "--sizes must be comma-separated positive integers such as 4,16,16,3, got '4,x'"),
        (["--sizes", "4"], "--sizes needs at least two positive integers"),
        (["--activation", "relu7"], "unknown activation 'relu7'"),
        (["--loss", "hinge"], "unknown loss 'hinge'"),
        (["--batch", "0"], "--batch and --fd-entries must be >= 1"),
        (["--dtype", "float16"], "invalid choice: 'float16'"),
        (["--sizes", "4,4611686018427387904"], "--sizes: layer_sizes[1] = 4611686018427387904 is over the limit of"),
        (["--sizes", "1048576,131072,1048576"], "over the limit of 68719476736 (MAX_PARAMETERS, 2**36)"),
        (["--batch", "4611686018427387904"], "--batch must be at most 2147483647"),
        (["--seed", "-1"], "--seed must be >= 0, got -1"),
    ],
    ids=[
        "sizes-x",
        "sizes-short",
        "activation",
        "loss",
        "batch",
        "dtype",
        "size-2**62",
        "size-total",
        "batch-2**62",
        "seed",
    ],
)
def test_cli_bad_arguments_exit_2_with_one_line(argv, message, capsys):
    try:
        code = cli.main(["gradcheck", *argv])
    except SystemExit as exit:  # argparse's own errors
        code = exit.code
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1 and message in captured.err


def run_cli(args, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "mlp_jax.cli.main", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.slow
def test_cli_bad_sizes_in_a_fresh_process(tmp_path):
    result = run_cli(["gradcheck", "--sizes", "4,x"], tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "mlp-jax gradcheck: error: --sizes must be comma-separated positive integers such as 4,16,16,3, got '4,x'"
    ]


@pytest.mark.slow
def test_cli_exits_1_on_a_planted_wrong_derivative(tmp_path):
    (tmp_path / "planted.py").write_text(
        textwrap.dedent("""
        import jax.numpy as jnp
        from mlp_jax.core.activations import register_activation

        register_activation(  # tanh' scaled by 1.01, not verified
            "planted_tanh", jnp.tanh, lambda z: 1.01 * (1 - jnp.tanh(z)) * (1 + jnp.tanh(z)), verify=False
        )
    """)
    )
    result = run_cli(
        [
            "--import",
            "planted",
            "gradcheck",
            "--activation",
            "planted_tanh",
            "--loss",
            "softmax_cross_entropy",
            "--dtype",
            "float32",
            "--batch",
            "8",
            "--seed",
            "0",
        ],
        tmp_path,
    )
    assert result.returncode == 1, result.stderr
    assert "FAIL (first from the output backwards): layer 1 w" in result.stdout


def test_cli_json_into_a_missing_directory_fails_before_the_check(tmp_path, capsys):
    code = cli.main(["gradcheck", "--sizes", "4,3", "--json", str(tmp_path / "nope" / "r.json")])
    assert code == 2 and "its directory does not exist" in capsys.readouterr().err


def test_cli_leaves_64_bit_mode_as_it_was(capsys):
    """The check runs its float64 parts in a block of 64-bit mode; the caller's setting is unchanged."""
    assert cli.main(["gradcheck", "--sizes", "3,4,2", "--batch", "4"]) == 0
    assert "OK: every leaf is within tolerance" in capsys.readouterr().out
    assert not jax.config.read("jax_enable_x64")


def test_cli_labels_need_two_outputs(capsys):
    code = cli.main(["gradcheck", "--sizes", "4,1", "--loss", "softmax_cross_entropy"])
    assert code == 2 and "takes class labels: the last size must be >= 2, got 1" in capsys.readouterr().err
