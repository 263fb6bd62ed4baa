"""`mlp_jax.training.guards`: SIGTERM raises KeyboardInterrupt inside a run and its handler comes back after;
quiet silences numpy's floating-point warnings only inside."""

import os
import signal
import warnings

import numpy as np
import pytest

from mlp_jax.training.guards import numpy_warnings_silenced, terminate_as_interrupt


def test_sigterm_is_a_keyboard_interrupt_inside_and_the_old_handler_returns():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), terminate_as_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(10**6):  # the handler runs between bytecodes
            pass
    assert signal.getsignal(signal.SIGTERM) is before


def test_numpy_warnings_are_silenced_only_when_quiet_and_only_inside():
    for quiet in (True, False):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with numpy_warnings_silenced(quiet):
                np.float32(3e38) * np.float32(10)
        assert bool(caught) == (not quiet)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with numpy_warnings_silenced(True):
            pass
        np.float32(3e38) * np.float32(10)
    assert caught and issubclass(caught[0].category, RuntimeWarning)
