"""mlp_jax.bench.environment: what a run records about the machine it ran on."""

import jax
import pytest

from mlp_jax.bench.environment import environment, load_average


def test_environment_names_the_device_versions_and_settings(monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "1")
    monkeypatch.setenv("UNRELATED_SETTING", "x")
    env = environment()
    assert env["device"]["platform"] == jax.devices()[0].platform and env["device"]["count"] >= 1
    assert set(env["versions"]) == {"jax", "jaxlib", "numpy", "optax"}
    assert env["env"]["MALLOC_ARENA_MAX"] == "1" and "UNRELATED_SETTING" not in env["env"]
    assert env["jax_enable_x64"] is False and env["jax_default_matmul_precision"] is None
    assert isinstance(env["cpu"], str) and env["cpu_count"] >= 1


@pytest.mark.x64
def test_environment_records_64_bit_mode():
    assert environment()["jax_enable_x64"] is True


def test_load_average():
    load = load_average()
    assert load is None or load >= 0
