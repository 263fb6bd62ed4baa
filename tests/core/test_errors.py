"""The error types (mlp_jax.core.errors): one place, the built-in bases callers already catch, and the
public names."""

import pytest

import mlp_jax as mj
from mlp_jax.core import errors, verify


@pytest.mark.parametrize(
    "error,base",
    [
        (errors.UsageError, ValueError),
        (errors.DerivativeError, ValueError),
        (errors.DataError, ValueError),
        (errors.NpzError, ValueError),
        (errors.CheckpointError, ValueError),
        (errors.NonFiniteLoss, RuntimeError),
        (errors.TrainingInterrupted, KeyboardInterrupt),
    ],
)
def test_each_error_is_a_builtin_error_exported_by_mlp_jax(error, base):
    assert issubclass(error, base)
    assert getattr(mj, error.__name__) is error


def test_derivative_error_is_the_one_verify_raises():
    assert verify.DerivativeError is errors.DerivativeError
