"""Where a bench run ran: the device, CPU, versions, XLA and allocator settings, and the load average
(other work on the machine skews every number)."""

from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path
from typing import Any


def load_average() -> float | None:
    """The 1-minute load average (other work on the machine skews every number), None where unknown."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo, else what `platform` says."""
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return cpu


def environment() -> dict[str, Any]:
    import jax
    import jaxlib
    import numpy as np
    import optax

    device = jax.devices()[0]
    return {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": {"platform": device.platform, "kind": device.device_kind, "count": jax.device_count()},
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "versions": {
            "jax": jax.__version__,
            "jaxlib": jaxlib.__version__,
            "numpy": np.__version__,
            "optax": optax.__version__,
        },
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "env": {
            k: v
            for k, v in os.environ.items()
            if k.startswith(("OPENBLAS_", "OMP_", "MKL_", "XLA_", "JAX_", "MALLOC_"))
        },
        "jax_enable_x64": bool(jax.config.values["jax_enable_x64"]),
        # None = each backend's default; on recent NVIDIA GPUs that lets float32 matmuls use TF32
        "jax_default_matmul_precision": jax.config.values["jax_default_matmul_precision"],
        "load_average_1min": load_average(),
    }
