"""mlp_jax.bench.peaks: the jnp.dot peak, the step's own matmuls, and the step timed side by side with jnp.dot."""

import pytest

from mlp_jax.bench.configs import make_problem, matmul_flops, parse_config
from mlp_jax.bench.peaks import PEAK_SHAPES, jnp_dot_peak, peak_shapes_for, side_by_side_peak, step_matmuls


def test_peak_shapes_grow_on_an_accelerator():
    assert peak_shapes_for("cpu") == PEAK_SHAPES
    assert peak_shapes_for("cpu", quick=True) == PEAK_SHAPES[::2]
    assert peak_shapes_for("gpu")[-1] == (8192, 8192, 8192)


def test_jnp_dot_peak_is_positive():
    peak = jnp_dot_peak(["float32", "bfloat16"], min_sample=0.001, repeats=1, shapes=[(32, 32, 32), (16, 32, 8)])
    for dtype in ("float32", "bfloat16"):
        assert set(peak[dtype]["per_shape"]) == {"32x32x32", "16x32x8"}
        assert peak[dtype]["gflops_per_s"] == max(peak[dtype]["per_shape"].values()) > 0


@pytest.mark.parametrize(
    "spec", ["2x32x64", "2x512x1024", "2x512x4096"], ids=["batch-layout", "feature-layout", "feature-layout-in-parts"]
)
def test_step_matmuls_are_the_analytic_count(spec):
    """The dot_generals traced out of a manual sgd step carry exactly `matmul_flops`' count, in both
    layouts and with the batch in parts (every dot here is above `TINY_DOT`, so none is a broadcast
    product)."""
    import optax

    from mlp_jax.core.matmul import choose_batch_parts, choose_layout
    from mlp_jax.training.steps import make_step

    config = parse_config(spec)
    params, x, y = make_problem(config)
    optimizer = optax.sgd(0.01)
    step = make_step(optimizer, activation="relu", loss=config.loss)
    matmuls = step_matmuls(step, params, optimizer.init(params), x, y)
    layers = len(config.sizes) - 1
    parts = choose_batch_parts("auto", choose_layout("auto", config.sizes, config.batch, "float32"), config.batch)
    assert len(matmuls) == parts * (3 * layers - 1)  # per part: forward and dW every layer, delta all but the first
    assert sum(m.flops for m in matmuls) == matmul_flops(config.sizes, config.batch)["step"]


def test_side_by_side_peak_compares_like_with_like():
    config = parse_config("1x8x16")
    side = side_by_side_peak(config, repeats=2, min_sample=0.001, shapes=((16, 8, 8), (8, 8, 8)))
    assert side["config"] == "1x8x16" and side["dtype"] == "float32"
    assert set(side["jnp_dot_gflops_per_s"]) == {"16x8x8", "8x8x8"}
    assert side["step_gflops_per_s"] > 0 and all(v > 0 for v in side["jnp_dot_gflops_per_s"].values())
    assert side["fraction_of_jnp_dot"] == pytest.approx(
        side["step_gflops_per_s"] / max(side["jnp_dot_gflops_per_s"].values())
    )
    assert side["matmul_count"] >= 1 and side["matmuls_alone_s"] > 0
    assert side["step_over_matmuls_alone"] == pytest.approx(side["step_s"] / side["matmuls_alone_s"])
    assert side["matmuls_alone_fraction_of_jnp_dot"] == pytest.approx(
        side["matmuls_alone_gflops_per_s"] / max(side["jnp_dot_gflops_per_s"].values())
    )
