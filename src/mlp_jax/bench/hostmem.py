"""Keep freed host memory inside the process: a glibc malloc setting that makes large CPU steps faster.

XLA:CPU allocates an executable's temporaries with malloc on every call and frees them at the end.
With glibc's defaults, blocks that large are mapped fresh from the OS and unmapped on free, so every
step pays a page fault and a zeroed page for each 4 KiB it touches, a sizeable part of a large step's
time. `keep_freed_memory` sets one malloc arena, no mmap for large blocks and a high trim threshold, so
freed blocks are reused: no faults after the first step, and the process keeps its peak memory (it does
not shrink back).

The price: small steps get a little slower (one arena serialises small allocations across threads), and
so does XLA's compile (its compiler threads contend for that arena); docs/benchmarks.md has the
measurements with and without it. It is process-wide and must be called before JAX starts its threads:
called after ``jax.devices()`` it changes nothing, since the thread that allocates the temporaries
already has an arena of its own. ``mlp-jax bench`` uses it by default (``--malloc default`` turns it
off) and passes the same settings to its worker processes through `MALLOC_ENV`. Elsewhere than glibc it
does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import warnings

_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8  # glibc <malloc.h>
TRIM_THRESHOLD = 2**31 - 1  # bytes free at the top of the heap before any goes back (mallopt's int max)

SETTINGS = {"arena_max": 1, "mmap_max": 0, "trim_threshold": TRIM_THRESHOLD}
# the same settings for a process started with them (glibc reads these at start-up)
MALLOC_ENV = {
    "MALLOC_ARENA_MAX": str(SETTINGS["arena_max"]),
    "MALLOC_MMAP_MAX_": str(SETTINGS["mmap_max"]),
    "MALLOC_TRIM_THRESHOLD_": str(SETTINGS["trim_threshold"]),
}


def _jax_backend_started() -> bool:
    try:
        from jax._src import xla_bridge
    except ImportError:
        return False
    started = getattr(xla_bridge, "backends_are_initialized", None)
    return bool(started()) if started else False


def keep_freed_memory() -> dict[str, int]:
    """Apply `SETTINGS` to this process's malloc; returns what was applied ({} where not glibc).

    Warns (RuntimeWarning) when JAX's backend has already started: its threads then have their own
    malloc arenas and large steps keep their page faults."""
    if not sys.platform.startswith("linux"):
        return {}
    if _jax_backend_started():
        warnings.warn(
            "keep_freed_memory() was called after JAX started its backend; XLA's threads already "
            "have malloc arenas of their own, so large steps keep faulting in fresh pages. Call it "
            "before the first JAX computation, or start the process with mlp_jax.bench.hostmem.MALLOC_ENV "
            "in its environment.",
            RuntimeWarning,
            stacklevel=2,
        )
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return {}
    codes = {"arena_max": _M_ARENA_MAX, "mmap_max": _M_MMAP_MAX, "trim_threshold": _M_TRIM_THRESHOLD}
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    applied = {}
    for name, value in SETTINGS.items():
        if mallopt(codes[name], value) == 1:  # mallopt returns 1 on success
            applied[name] = value
    return applied
