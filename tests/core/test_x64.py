"""x64_mode: JAX's 64-bit mode for a block of code, the process's setting unchanged afterwards."""

import jax
import jax.numpy as jnp

from mlp_jax.core.x64 import x64_mode


def test_x64_mode_turns_float64_on_for_a_block_only():
    assert not jax.config.read("jax_enable_x64")
    with x64_mode(True):
        assert jax.config.read("jax_enable_x64")
        assert jnp.zeros(2, jnp.float64).dtype == jnp.float64
        with x64_mode(False):
            assert jnp.zeros(2).dtype == jnp.float32
        assert jax.config.read("jax_enable_x64")
    assert not jax.config.read("jax_enable_x64")
