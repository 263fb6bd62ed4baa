"""JAX's 64-bit mode for a block of code: ``with x64_mode(True): ...`` makes float64 arrays possible there
and leaves the process's setting as it was afterwards."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any


def x64_mode(on: bool) -> AbstractContextManager[Any]:
    """A context with ``jax_enable_x64`` set to `on` (``jax.enable_x64``, or its older home in
    ``jax.experimental`` on JAX releases before 0.7)."""
    try:
        from jax import enable_x64  # type: ignore[attr-defined,unused-ignore]
    except ImportError:  # pragma: no cover - older JAX
        from jax.experimental import enable_x64  # type: ignore[attr-defined,no-redef,unused-ignore]
    return enable_x64(on)
