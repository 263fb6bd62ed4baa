"""The check of a hand-written derivative against jax.grad (mlp_jax.core.verify): its dtype, tolerance,
shape check and the message that names the worst point; in float32 with 64-bit mode off, too."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlp_jax.core.verify import DerivativeError, check_derivative, check_same_shape, tolerance, verify_dtype


def test_verify_dtype_follows_64_bit_mode():
    assert verify_dtype() == jnp.float32


@pytest.mark.x64
def test_verify_dtype_is_float64_with_64_bit_mode():
    assert verify_dtype() == jnp.float64


def test_tolerance_is_sqrt_eps_relative_and_64_eps_absolute():
    for dtype in (jnp.float32, np.float64):
        eps = float(np.finfo(dtype).eps)
        assert tolerance(dtype) == (eps**0.5, 64 * eps)


def where(i: int) -> str:
    return f"point {i}"


@pytest.mark.x64
def test_check_derivative_names_the_worst_point():
    expected = jnp.asarray([1.0, 2.0, 3.0, 0.0])
    check_derivative("d", expected, expected * (1 + 1e-9), where)  # within sqrt(eps) relative
    with pytest.raises(DerivativeError) as error:
        check_derivative("d", expected, expected * jnp.asarray([1.0, 1.01, 1.02, 1.0]), where)
    message = str(error.value)
    assert message.startswith("d does not match jax.grad: at point 2: expected 3 (jax.grad), given 3.06")
    assert "relative difference 0.02" in message and "in float64" in message and "2 of 4 points differ" in message


def test_check_derivative_skips_nan_and_needs_infinities_equal():
    expected = jnp.asarray([jnp.nan, jnp.inf, 1.0])
    check_derivative("d", expected, jnp.asarray([5.0, jnp.inf, 1.0]), where)  # NaN in jax.grad: skipped
    with pytest.raises(DerivativeError, match="at point 1: expected inf"):
        check_derivative("d", expected, jnp.asarray([5.0, 1e30, 1.0]), where)
    with pytest.raises(DerivativeError, match=r"at point 2: expected 1 .*given nan"):
        check_derivative("d", expected, jnp.asarray([5.0, jnp.inf, jnp.nan]), where)


def test_check_same_shape_refuses_other_shapes_and_dtypes():
    returned = jax.ShapeDtypeStruct((3,), jnp.float32)
    check_same_shape("f", returned, (3,), jnp.float32)
    with pytest.raises(DerivativeError, match=r"f returned shape \(3,\), expected \(2,\)"):
        check_same_shape("f", returned, (2,), jnp.float32)
    with pytest.raises(DerivativeError, match="f returned dtype float32 for bfloat16 input; keep the input's dtype"):
        check_same_shape("f", returned, (3,), jnp.bfloat16)


@pytest.mark.slow
def test_one_percent_off_is_refused_without_float64_too(tmp_path):
    """With jax_enable_x64 off the check runs in float32: it still refuses 1 % and a formula that
    overflows to NaN, and still accepts a correct one computed with cancellation (1 - tanh(z)**2)."""
    script = textwrap.dedent("""
        import jax, jax.numpy as jnp, optax
        from mlp_jax.core.activations import register_activation
        from mlp_jax.core.losses import register_loss
        from mlp_jax.core.verify import DerivativeError
        assert not jax.config.read("jax_enable_x64")
        register_activation("tanh_naive", jnp.tanh, lambda z: 1 - jnp.tanh(z) ** 2)
        register_loss("ce", lambda l, y: optax.softmax_cross_entropy_with_integer_labels(l, y),
                      lambda l, y: jax.nn.softmax(l) - jax.nn.one_hot(y, l.shape[-1], dtype=l.dtype), targets="labels")
        for register, args in [
            (register_activation, ("tanh_101", jnp.tanh, lambda z: 1.01 * (1 - jnp.tanh(z) ** 2))),
            (register_loss, ("mse_101", lambda l, y: ((l - y) ** 2).mean(-1),
                             lambda l, y: 2.02 * (l - y) / l.shape[-1])),
        ]:
            try:
                register(*args)
            except DerivativeError as error:
                assert "float32" in str(error) and "relative difference 0.01" in str(error), error
            else:
                raise AssertionError(f"{args[0]} was accepted")
        try:  # exp(100) overflows in float32: inf / inf = NaN where jax.grad says 0
            register_activation("sigmoid_naive", jax.nn.sigmoid, lambda z: jnp.exp(-z) / (1 + jnp.exp(-z)) ** 2)
        except DerivativeError as error:
            assert "at z = -100: expected 0 (jax.grad), given nan" in str(error), error
        else:
            raise AssertionError("sigmoid_naive was accepted")
        print("ok")
    """)
    env = {**os.environ, "JAX_ENABLE_X64": "0"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
