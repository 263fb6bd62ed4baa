"""Test configuration: 64-bit mode per test, silent rank promotion an error, a shared hypothesis profile.

JAX's 64-bit mode is off, as a user has it, unless a test needs float64: a test marked ``x64``, or one
parametrized with a float64 dtype, runs with it on (`_x64_per_test`). A hypothesis test that draws its
dtype turns it on in its body with ``helpers.x64_for(dtype)``. So every float32 path is tested with 64-bit
mode off, and every float64 one with it on.
"""

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from mlp_jax.core.x64 import x64_mode

jax.config.update("jax_numpy_rank_promotion", "raise")


def _is_float64(value) -> bool:
    """A dtype, scalar type or dtype name that means float64 (``jnp.float64``, ``np.float64``, "float64")."""
    if not isinstance(value, (str, type, np.dtype)):
        return False
    try:
        return np.dtype(value) == np.float64
    except (TypeError, ValueError):  # not a dtype name: "a, b" and other comma strings raise ValueError
        return False


def _wants_x64(item: pytest.Item) -> bool:
    if item.get_closest_marker("x64") is not None:
        return True
    params = getattr(getattr(item, "callspec", None), "params", {})
    return any(_is_float64(value) for value in params.values())


@pytest.fixture(autouse=True)
def _x64_per_test(request):
    with x64_mode(_wants_x64(request.node)):
        yield


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

    registries = (activations._REGISTRY, activations._SECOND, losses._REGISTRY, losses._LABEL_TARGETS)
    saved = [type(r)(r) for r in registries]
    yield
    for registry, old in zip(registries, saved):
        registry.clear()
        registry.update(old)


@pytest.fixture
def key():
    return jax.random.key(0)


def pytest_addoption(parser, pluginmanager):
    """``-n auto --dist worksteal`` from pyproject's addopts, accepted and ignored when xdist is off
    (``-p no:xdist``)."""
    if not pluginmanager.hasplugin("xdist"):
        # pytest reserves lowercase short options for plugins; xdist registers its own -n the same way
        parser.getgroup("xdist")._addoption("-n", dest="numprocesses", default=None, help="ignored: xdist is off")
        parser.getgroup("xdist").addoption("--dist", dest="dist", default=None, help="ignored: xdist is off")
