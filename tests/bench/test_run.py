"""mlp_jax.bench.run: one config timed, and a tiny whole run's outputs.

A smoke test only: the real measurements are `mlp-jax bench --quick` and the full run (benchmarks/).
"""

import json

import pytest

from mlp_jax.bench import run as bench
from mlp_jax.bench.configs import SOURCES, matmul_flops, parse_config
from mlp_jax.bench.report import PLOTS
from mlp_jax.bench.timing import INSTANCES


def test_bench_config_times_both_sources():
    config = parse_config("1x8x16")
    entry = bench.bench_config(config, repeats=2, min_sample=0.001, kinds=("grad",))
    assert entry["config"]["name"] == "1x8x16" and entry["flops"] == matmul_flops(config.sizes, config.batch)
    assert set(entry) == {"config", "flops", "grad"}  # only the kinds asked for
    grad = entry["grad"]
    assert "manual_no_donation" not in grad  # a gradient donates nothing
    assert grad["ratio_manual_over_autodiff"] == pytest.approx(
        grad["manual"]["step_s"]["median"] / grad["autodiff"]["step_s"]["median"]
    )


@pytest.mark.slow
def test_tiny_run_writes_well_formed_outputs(tmp_path):
    config = parse_config("1x8x16")
    for stale in PLOTS:  # a run before, with peaks and peers, into the same directory
        (tmp_path / stale).write_bytes(b"old")
    results = bench.run(
        tmp_path,
        [config],
        repeats=2,
        min_sample=0.001,
        kinds_for=lambda c: ("grad", "sgd"),
        peaks=False,
        peers=(),
        memory=False,
        digits=False,
        log=lambda message: None,
    )
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["environment"]["device"]["platform"] == results["environment"]["device"]["platform"]
    entry = saved["configs"]["1x8x16"]
    assert entry["flops"]["step"] == matmul_flops(config.sizes, config.batch)["step"]
    for kind in ("grad", "sgd"):
        for source in SOURCES:
            m = entry[kind][source]
            assert m["step_s"]["min"] <= m["step_s"]["median"] <= m["step_s"]["max"]
            assert m["step_s"]["n"] == 2 * INSTANCES and m["compile_s"] > 0  # samples pooled over instances
            assert len(m["instance_medians_s"]) == len(m["instance_compile_s"]) == INSTANCES
            assert m["xla_flops"] == pytest.approx(entry["flops"]["step"], rel=0.05)  # + the bias and loss ops
        assert entry[kind]["ratio_manual_over_autodiff"] > 0 and entry[kind]["noise_floor_ratio"] > 0
        lo, hi = entry[kind]["ratio_ci95"]
        assert 0 < lo <= hi
    assert entry["sgd"]["manual"]["memory"]["alias"] > 0  # params donated
    assert entry["sgd"]["manual_no_donation"]["memory"]["alias"] == 0
    markdown = (tmp_path / "results.md").read_text()
    assert "| 1x8x16 | float32 | sgd |" in markdown
    assert (tmp_path / "manual_vs_autodiff.png").read_bytes().startswith(b"\x89PNG")
    # no peaks and no peers measured: no plot of them, and none left from the run before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manual_vs_autodiff.png", "results.json", "results.md"]
    assert entry["jax_enable_x64"] is False
    assert list(saved) == ["environment", "settings", "configs", "targets", "wall_s"]
