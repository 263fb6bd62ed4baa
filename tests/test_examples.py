"""Each script under examples/ runs as a user runs it (``python examples/NAME.py``) and says what it promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PROMISES = {  # the line each script's own docstring or comment promises
    "quickstart.py": "accuracy 100%",
    "xor.py": "a single linear layer fails on XOR; one hidden layer solves it",
}


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
