"""Process-level guards around a training run: SIGTERM stops it the way Ctrl-C does (`terminate_as_interrupt`),
and ``quiet`` silences numpy's floating-point warnings of the run (`numpy_warnings_silenced`). Both restore what
they changed when the run ends."""

from __future__ import annotations

import contextlib
import signal
import threading
import warnings
from collections.abc import Iterator

import numpy as np


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Inside, SIGTERM raises KeyboardInterrupt in the main thread, as SIGINT (Ctrl-C) does, so that a run
    stopped either way unwinds through the same ``except KeyboardInterrupt``. The previous handler comes
    back afterwards; off the main thread (where Python cannot set handlers) nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def numpy_warnings_silenced(quiet: bool) -> Iterator[None]:
    """With `quiet`, numpy's floating-point RuntimeWarnings (overflow, invalid casts, ...) are not printed:
    numpy's error state ignores them, and a RuntimeWarning raised from mlp_jax's or numpy's own code is
    filtered out. Other warnings, and other code's RuntimeWarnings, still show; all is restored after."""
    if not quiet:
        yield
        return
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"(mlp_jax|numpy)(\.|$)")
        yield
