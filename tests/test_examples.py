"""Each script under examples/ runs as a user runs it (``python examples/NAME.py``) and says what it promises."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PROMISES = {  # the line each script's own docstring or comment promises
    "backprop_by_hand.py": "every quantity agrees with jax.grad and mj.backprop",
    "quickstart.py": "accuracy 100%",
    "xor.py": "a single linear layer fails on XOR; one hidden layer solves it",
}
OUTPUTS = {"xor.py": {"xor_hidden_space.png"}}  # what each script writes into its working directory


def load(name: str) -> ModuleType:
    """An example as a module, without running its ``__main__`` part."""
    spec = importlib.util.spec_from_file_location(f"example_{Path(name).stem}", EXAMPLES / name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_example_has_a_promise():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(PROMISES)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PROMISES))
def test_example_runs(name: str, tmp_path: Path):
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name)], capture_output=True, text=True, cwd=tmp_path, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert PROMISES[name] in proc.stdout, proc.stdout
    assert {p.name for p in tmp_path.iterdir()} == OUTPUTS.get(name, set())
    for output in OUTPUTS.get(name, ()):
        assert (tmp_path / output).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.x64
def test_backprop_by_hand_checks_every_quantity(capsys):
    assert load("backprop_by_hand.py").main() == 0
    out = capsys.readouterr().out
    assert out.count(" ok: ") == 15 and "MISMATCH" not in out
    assert "mj.backprop" in out and "jax.grad" in out


@pytest.mark.x64
def test_backprop_by_hand_exits_nonzero_on_a_wrong_derivative(monkeypatch, capsys):
    module = load("backprop_by_hand.py")
    monkeypatch.setattr(module, "sigmoid_derivative", lambda z: 1.01 * module.sigmoid(z) * (1 - module.sigmoid(z)))
    assert module.main() == 1
    captured = capsys.readouterr()
    wrong = [line.split()[0] for line in captured.out.splitlines() if "MISMATCH" in line]
    assert wrong == ["delta_0", "dW_0", "db_0", "new", "new"], captured.out  # layer 0 and its update only
    assert "MISMATCH" in captured.err


def test_backprop_by_hand_needs_64_bit_mode():
    with pytest.raises(SystemExit, match="64-bit"):
        load("backprop_by_hand.py").main()


def test_xor_no_line_gets_more_than_three_of_four_points():
    accuracy, lines = load("xor.py").best_line_accuracy()
    assert accuracy == 0.75 and lines > 100_000


def test_xor_hidden_space_is_the_nets_own_forward_pass():
    import jax
    import numpy as np

    import mlp_jax as mj

    xor = load("xor.py")
    params = mj.init_params(jax.random.key(1), [2, 2, 1])
    points = np.random.default_rng(0).normal(size=(16, 2)).astype(np.float32)
    expected = jax.nn.sigmoid(mj.forward(params, points, activation=xor.ACTIVATION))[:, 0]
    np.testing.assert_allclose(xor.output_probability(params, xor.hidden(params, points)), expected, rtol=1e-5)
