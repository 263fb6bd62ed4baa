"""The `mlp-jax` entry point (mlp_jax.cli.main): usage, subcommand dispatch (train when none is named),
--import before the command, and bad input as one line on stderr with exit code 2."""

import subprocess
import sys
import textwrap

import pytest

from mlp_jax.cli import main as cli


def test_help_lists_every_subcommand(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(
        "usage: mlp-jax [--import MODULE ...] [{train,gradcheck,curvcheck,bench,laplace,hessian}] [options]"
    )
    for name in cli.SUBCOMMANDS:
        assert f"  {name} " in out


@pytest.mark.parametrize(
    "argv,message",
    [
        (
            ["fit"],
            "mlp-jax: error: unknown command 'fit'; expected one of "
            "['train', 'gradcheck', 'curvcheck', 'bench', 'laplace', 'hessian']",
        ),
        (["--import"], "mlp-jax: error: --import needs a module name"),
        (["--import", "no_such_module_here", "gradcheck"], "mlp-jax: error: --import no_such_module_here: No module"),
        (["gradcheck", "--no-such-flag"], "mlp-jax gradcheck: error: unrecognized arguments: --no-such-flag"),
        (["--no-such-flag"], "mlp-jax train: error: unrecognized arguments: --no-such-flag"),  # no command: train
    ],
    ids=["unknown-command", "import-without-module", "import-missing", "bad-flag", "default-train"],
)
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1
    assert captured.err.startswith(message)


def test_a_subcommands_usage_error_is_one_line_naming_the_command(capsys):
    assert cli.main(["gradcheck", "--batch", "0"]) == 2
    assert capsys.readouterr().err.startswith("mlp-jax gradcheck: error: --batch and --fd-entries must be >= 1")


def test_subcommand_help_exits_0(capsys):
    assert cli.main(["gradcheck", "--help"]) == 0
    assert "--fd-mode" in capsys.readouterr().out


@pytest.mark.parametrize("form", ["two-words", "equals"])
def test_import_runs_before_the_command(form, tmp_path, monkeypatch, capsys, restored_registries):
    (tmp_path / "my_activation.py").write_text(
        textwrap.dedent("""
        import jax.numpy as jnp
        from mlp_jax.core.activations import register_activation

        register_activation("softsign", lambda z: z / (1 + jnp.abs(z)), lambda z: 1 / (1 + jnp.abs(z)) ** 2)
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_activation", raising=False)
    imports = ["--import", "my_activation"] if form == "two-words" else ["--import=my_activation"]
    code = cli.main([*imports, "gradcheck", "--sizes", "3,4,2", "--batch", "4", "--activation", "softsign"])
    assert code == 0 and "OK: every leaf is within tolerance" in capsys.readouterr().out


@pytest.mark.slow
def test_runs_as_a_module_in_a_fresh_process():
    result = subprocess.run(
        [sys.executable, "-m", "mlp_jax.cli.main", "fit"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "mlp-jax: error: unknown command 'fit'; expected one of "
        "['train', 'gradcheck', 'curvcheck', 'bench', 'laplace', 'hessian']"
    ]


def test_import_finds_a_module_in_the_current_directory(tmp_path, monkeypatch, capsys, restored_registries):
    """As documented, without PYTHONPATH: the console script's sys.path lacks the current directory, which
    `python -m` would put first. Once "No module named 'mymodule'" and exit 2."""
    (tmp_path / "mymodule.py").write_text(
        textwrap.dedent("""
        import jax.numpy as jnp
        from mlp_jax.core.activations import register_activation

        register_activation("softsign_cwd", lambda z: z / (1 + jnp.abs(z)), lambda z: 1 / (1 + jnp.abs(z)) ** 2)
    """)
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "mymodule", raising=False)
    code = cli.main(
        ["--import", "mymodule", "gradcheck", "--sizes", "3,4,2", "--batch", "4", "--activation", "softsign_cwd"]
    )
    assert code == 0, capsys.readouterr().err
    assert "OK: every leaf is within tolerance" in capsys.readouterr().out
