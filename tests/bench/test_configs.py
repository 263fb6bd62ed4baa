"""mlp_jax.bench.configs: config specs, the analytic FLOP count, the problems timed, and each config's 64-bit mode."""

import jax
import numpy as np
import pytest

from mlp_jax.bench.configs import (
    DTYPES,
    GRID,
    STANDARD,
    copy_tree,
    grid_configs,
    make_problem,
    matmul_flops,
    parse_config,
    x64_for,
)
from mlp_jax.core.errors import UsageError
from mlp_jax.core.x64 import x64_mode


def test_matmul_flops_matches_a_hand_count():
    # sizes 3 -> 4 -> 2, batch 5: forward 2*5*(3*4) + 2*5*(4*2) = 120 + 80; dW the same; delta only for
    # the second layer (the first layer's input needs none): 2*5*(4*2) = 80.
    assert matmul_flops([3, 4, 2], 5) == {"forward": 200, "backward_dw": 200, "backward_delta": 80, "step": 480}


# each case one tuple: conftest reads a string parameter as a possible dtype name (for x64), and numpy
# raises ValueError, not TypeError, on a spec like "1x8x4:float64"
@pytest.mark.parametrize(
    "case",
    [
        ("small", (784, 64, 64, 10), "float32"),
        ("2x16x32", (784, 16, 16, 10), "float32"),
        ("1x8x4:float64", (784, 8, 10), "float64"),
    ],
    ids=["standard", "grid", "dtype"],
)
def test_parse_config(case):
    spec, sizes, dtype = case
    config = parse_config(spec)
    assert config.sizes == sizes and config.dtype == dtype
    assert config.fused_steps >= 2


def test_bad_config_is_a_usage_error():
    for spec in ("huge", "2x8x8:int8", "0x8x8", "2x8"):  # a name, a dtype, a zero, too few numbers
        with pytest.raises(UsageError):
            parse_config(spec)


def test_grid_is_every_combination_once():
    configs = grid_configs()
    assert len(configs) == len({c.name for c in configs}) == np.prod([len(v) for v in GRID.values()])
    assert {c.dtype for c in configs} == set(DTYPES)


def test_problems_have_the_config_shapes():
    config = parse_config("2x16x32")
    params, x, y = make_problem(config)
    assert [layer.w.shape for layer in params] == [(784, 16), (16, 16), (16, 10)]
    assert x.shape == (32, 784) and x.dtype == np.float32 and y.shape == (32,)
    params, x, y = make_problem(STANDARD["xor"])
    assert x.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]] and y.ravel().tolist() == [0, 1, 1, 0]


def test_copy_tree_gives_fresh_buffers():
    params, _, _ = make_problem(parse_config("1x4x2"))
    copied = copy_tree(params)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(copied)):
        assert a is not b and np.array_equal(a, b)


@pytest.mark.parametrize("global_x64", [False, True], ids=["x64-off", "x64-on"])
def test_each_config_is_compiled_in_its_own_64_bit_mode(global_x64):
    """A float32 config is compiled as a user without 64-bit mode gets it (with it on, adam's bias
    correction runs in float64), a float64 config in float64, whatever the process's setting, which is
    kept."""
    import optax

    from mlp_jax.training.steps import make_update

    with x64_mode(global_x64):
        for spec, wide in (("1x8x16", False), ("1x8x16:float64", True)):
            config = parse_config(spec)
            with x64_for(config.dtype):
                params, x, y = make_problem(config)
                update = make_update(optax.adam(1e-3), activation="relu", loss=config.loss)
                hlo = update.lower(params, optax.adam(1e-3).init(params), x, y).compile().as_text()
            assert ("f64[" in hlo) is wide
            assert jax.config.values["jax_enable_x64"] is global_x64
