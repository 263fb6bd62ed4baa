"""`mlp-jax bench` (mlp_jax.cli.bench): a tiny run end to end, and bad flags (exit 2)."""

import importlib.util
import json

import pytest

import mlp_jax.cli.bench as cli_bench
from mlp_jax.cli.main import main


@pytest.mark.slow
def test_cli_run_lets_every_process_allocate_as_it_goes(tmp_path, monkeypatch, capsys):
    """`mlp-jax bench` end to end on a tiny config; on a GPU its workers must not find 75 % of the
    device's memory already taken by the parent, so the CLI turns JAX's preallocation off."""
    monkeypatch.delenv("XLA_PYTHON_CLIENT_PREALLOCATE", raising=False)
    flags = [
        "--configs",
        "1x8x16",
        "--repeats",
        "1",
        "--min-sample",
        "0.001",
        "--no-peaks",
        "--peers",
        "none",
        "--no-memory",
        "--no-digits",
        "--no-plots",
        "--malloc",
        "default",
    ]
    assert main(["bench", "--out", str(tmp_path), *flags]) == 0
    assert "| 1x8x16 | float32 | sgd |" in capsys.readouterr().out
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["environment"]["env"]["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
    assert saved["settings"] == {"repeats": 1, "min_sample_s": 0.001, "peers": [], "peer_rounds": 3}
    assert set(saved["configs"]["1x8x16"]) >= {"grad", "sgd", "adam", "fused"}  # every config: all four kinds
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json", "results.md"]


@pytest.mark.parametrize(
    "flags",
    [
        ["--repeats", "0"],
        ["--min-sample", "0"],
        ["--configs", "huge"],
        ["--configs", "2x8x8:int8"],
        ["--configs", ","],
        ["--peers", "tensorflow"],
        ["--curvature-configs", ","],
        ["--curvature-configs", "huge"],
    ],
    ids=["repeats", "min-sample", "config", "dtype", "no-configs", "peer", "no-curvature-configs", "curvature-config"],
)
def test_bad_flags_exit_2(flags, tmp_path, capsys):
    assert main(["bench", "--out", str(tmp_path), *flags]) == 2
    assert "error" in capsys.readouterr().err


def test_out_must_be_a_directory(tmp_path, capsys):
    out = tmp_path / "a-file"
    out.write_text("")
    assert main(["bench", "--out", str(out), "--configs", "xor"]) == 2
    assert "not a directory" in capsys.readouterr().err


@pytest.fixture
def torch_missing(monkeypatch):
    """This Python as one without torch and with the other peers, whatever is installed; a bench run that
    records its peers and times nothing."""
    real = importlib.util.find_spec
    installed = {"equinox": object(), "flax": object(), "torch": None}  # the other peers as if installed
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: installed.get(name, real(name, *a)))
    monkeypatch.delenv("XLA_PYTHON_CLIENT_PREALLOCATE", raising=False)  # restored after the test
    started = []

    def run(out, configs, **kw):
        started.append(kw["peers"])
        (out / "results.md").write_text("results\n")

    monkeypatch.setattr(cli_bench, "run", run)
    return started


def test_a_requested_peer_that_is_not_installed_fails_before_any_timing(torch_missing, tmp_path, capsys):
    """Once exit 0 with the ImportError only inside results.md."""
    flags = ["--configs", "xor", "--peers", "mlp_jax,torch", "--malloc", "default"]
    assert main(["bench", "--out", str(tmp_path), *flags]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "mlp-jax bench: error: --peers torch needs the package torch, which is not installed: "
        'pip install -e ".[bench]" installs it'
    ]
    assert torch_missing == []  # nothing timed


def test_the_default_peers_leave_out_the_ones_not_installed_and_say_so(torch_missing, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    assert main(["bench", "--out", str(tmp_path / "out"), "--configs", "xor", "--malloc", "default"]) == 0
    assert torch_missing == [("mlp_jax", "equinox", "flax")]
    assert capsys.readouterr().err.strip().splitlines() == [
        'mlp-jax bench: peers left out, their packages not installed: torch (pip install -e ".[bench]")'
    ]


def test_curvature_stage_defaults_to_the_standard_configs_run():
    from mlp_jax.bench.configs import STANDARD, parse_config
    from mlp_jax.cli.bench import _curvature_configs

    run = [STANDARD[n] for n in ("small", "medium", "large", "xor")] + [parse_config("1x8x16")]
    assert [c.name for c in _curvature_configs(None, run, quick=False)] == ["small", "medium", "large"]
    assert [c.name for c in _curvature_configs(None, run, quick=True)] == ["small"]
    assert _curvature_configs("none", run, quick=False) == []
    assert _curvature_configs("1x2x4", run, quick=False) == [parse_config("1x2x4")]


def test_gpu_run_includes_the_curvature_stage():
    from pathlib import Path

    script = (Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_run.sh").read_text()
    assert "--configs small,medium,large,xor --curvature-configs small,medium,large" in script
