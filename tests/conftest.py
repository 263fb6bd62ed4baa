"""Test configuration: float64 available, silent rank promotion an error, a shared hypothesis profile."""

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, settings

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")

settings.register_profile(
    "mlp", deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
settings.load_profile("mlp")


def tree_max_rel_error(a, b) -> float:
    """Largest over leaves of max|a - b| / max|b| (max|a - b| where b is all zero)."""
    worst = 0.0
    for leaf_a, leaf_b in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        leaf_a = np.asarray(leaf_a, np.float64)
        leaf_b = np.asarray(leaf_b, np.float64)
        assert leaf_a.shape == leaf_b.shape
        scale = np.max(np.abs(leaf_b)) if leaf_b.size else 0.0
        err = np.max(np.abs(leaf_a - leaf_b)) if leaf_a.size else 0.0
        worst = max(worst, err / scale if scale > 0 else err)
    return worst


@pytest.fixture
def restored_registries():
    """The activation and loss registries as they were before the test, whatever it registers."""
    from mlp_jax.core import activations, losses

    registries = (activations._REGISTRY, losses._REGISTRY, losses._LABEL_TARGETS)
    saved = [type(r)(r) for r in registries]
    yield
    for registry, old in zip(registries, saved):
        registry.clear()
        registry.update(old)


@pytest.fixture
def key():
    return jax.random.key(0)
