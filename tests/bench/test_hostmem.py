"""mlp_jax.bench.hostmem: keep_freed_memory reuses freed XLA:CPU buffers instead of fresh pages, and warns when late."""

import subprocess
import sys

import pytest

import mlp_jax as mj
from mlp_jax.bench.hostmem import MALLOC_ENV, SETTINGS

FAULTS = """
import resource, sys
import mlp_jax as mj
if sys.argv[1] == "keep":
    assert mj.keep_freed_memory() == mj.bench.hostmem.SETTINGS
import jax
params = mj.init_params(jax.random.key(0), [256, 1024, 1024, 10])
x, y = jax.random.normal(jax.random.key(1), (4096, 256)), jax.random.randint(jax.random.key(2), (4096,), 0, 10)
f = jax.jit(lambda p, x, y: mj.backprop(p, x, y, "relu", "softmax_cross_entropy"))  # temporaries > 32 MiB
for _ in range(3):
    jax.block_until_ready(f(params, x, y))
per_call = []
for _ in range(7):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    jax.block_until_ready(f(params, x, y))
    per_call.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(sorted(per_call)[len(per_call) // 2])  # the median call: one call that grows the heap is not the rule
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
def test_keep_freed_memory_stops_page_faults_per_call():
    faults = {
        mode: float(
            subprocess.run(
                [sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, check=True
            ).stdout.split()[-1]
        )
        for mode in ("keep", "default")
    }
    assert faults["default"] > 8000  # tens of MiB of fresh 4 KiB pages per call
    assert faults["keep"] < faults["default"] / 4, faults  # usually 0 once warm


LATE = """
import warnings, sys
import jax, mlp_jax as mj
if sys.argv[1] == "late":
    jax.devices()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    mj.keep_freed_memory()
print(sum(issubclass(w.category, RuntimeWarning) and "before the first JAX" in str(w.message) for w in caught))
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
@pytest.mark.parametrize("when, warned", [("early", 0), ("late", 1)])
def test_warns_when_called_after_jax_started(when, warned):
    out = subprocess.run([sys.executable, "-c", LATE, when], capture_output=True, text=True, check=True).stdout
    assert int(out.split()[-1]) == warned


def test_env_matches_settings():
    assert {
        "MALLOC_ARENA_MAX": str(SETTINGS["arena_max"]),
        "MALLOC_MMAP_MAX_": str(SETTINGS["mmap_max"]),
        "MALLOC_TRIM_THRESHOLD_": str(SETTINGS["trim_threshold"]),
    } == MALLOC_ENV
    assert callable(mj.keep_freed_memory)
