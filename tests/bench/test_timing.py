"""mlp_jax.bench.timing: cases, alternating comparison with pooled instances, the ratio's interval, XLA's view."""

import gc

import jax
import jax.numpy as jnp
import pytest

from mlp_jax.bench import timing
from mlp_jax.bench.timing import INSTANCES, Case, compare, gc_paused, ratio_ci95, summary, xla_analysis


def test_ratio_interval():
    assert ratio_ci95([1.0] * 5, [2.0] * 5) == [0.5, 0.5]  # no spread: the ratio itself
    same = [0.20, 0.21, 0.22, 0.21, 0.20, 0.23, 0.21]
    lo, hi = ratio_ci95(same, same[::-1])
    assert lo < 1.0 < hi and ratio_ci95(same, same[::-1]) == [lo, hi]  # seeded
    lo, hi = ratio_ci95([2 * v for v in same], same)
    assert 1.8 < lo <= 2.0 <= hi < 2.2


def test_summary():
    assert summary([3.0, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0, "n": 3}


def test_a_carrying_case_feeds_its_outputs_back():
    step = jax.jit(lambda p, s, x: (p + x, s + 1, p.sum()))
    case = Case(step, (jnp.zeros(2), jnp.zeros(()), jnp.ones(2)), carry=2)
    first = case.first()
    assert set(first) == {"trace_lower_s", "xla_compile_s", "compile_s", "first_call_s"}
    assert first["compile_s"] == pytest.approx(first["trace_lower_s"] + first["xla_compile_s"])
    (loss,) = case.call()  # the second call sees the first one's outputs
    assert float(loss) == 2.0 and float(case.args[1]) == 2.0


def test_compare_pools_every_instance_alternately():
    x = jnp.ones((8, 8))
    cases = {name: [Case(jax.jit(fn), (x,)) for _ in range(INSTANCES)] for name, fn in (("a", jnp.sin), ("b", jnp.cos))}
    timed = compare(cases, repeats=3, min_sample=0.001)
    for name in ("a", "b"):
        m = timed[name]
        assert m["step_s"]["n"] == 3 * INSTANCES and m["step_s"]["min"] <= m["step_s"]["median"] <= m["step_s"]["max"]
        assert len(m["instance_medians_s"]) == len(m["instance_samples_s"]) == len(m["instance_compile_s"]) == INSTANCES
        assert m["calls_per_sample"] >= 1 and m["compile_s"] > 0


def test_compare_needs_as_many_instances_of_each():
    with pytest.raises(ValueError, match="same number of instances"):
        compare({"a": [object(), object()], "b": [object()]}, repeats=1, min_sample=0.001)


def test_gc_is_paused_then_restored():
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_xla_analysis_counts_a_matmul():
    a = jnp.ones((16, 32))
    out = xla_analysis(jax.jit(jnp.dot), (a, a.T))
    assert out["xla_flops"] == pytest.approx(2 * 16 * 32 * 16, rel=0.05)
    assert out["memory"]["argument"] == 2 * 16 * 32 * 4


def test_clock():
    assert timing.now() <= timing.now()
