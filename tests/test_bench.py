"""`mlp-jax bench`: the FLOP formula by hand, a tiny run's outputs, and bad flags (exit 2).

A smoke test only: the real measurements are `mlp-jax bench --quick` and the full run (benchmarks/).
"""

import json

import pytest

from mlp_jax.bench import configs as bench_configs
from mlp_jax.bench import environment as bench_env
from mlp_jax.bench import peaks as bench_peaks
from mlp_jax.bench import peers as bench_peers
from mlp_jax.bench import report as bench_report
from mlp_jax.bench import run as bench
from mlp_jax.bench import targets as bench_targets
from mlp_jax.bench import timing as bench_timing
from mlp_jax.cli.main import main


def test_matmul_flops_matches_a_hand_count():
    # sizes 3 -> 4 -> 2, batch 5: forward 2*5*(3*4) + 2*5*(4*2) = 120 + 80; dW the same; delta only for
    # the second layer (the first layer's input needs none): 2*5*(4*2) = 80.
    assert bench_configs.matmul_flops([3, 4, 2], 5) == {
        "forward": 200,
        "backward_dw": 200,
        "backward_delta": 80,
        "step": 480,
    }


@pytest.mark.parametrize(
    "spec, expected",
    [("small", (784, 64, 64, 10)), ("2x16x32", (784, 16, 16, 10)), ("1x8x4:float64", (784, 8, 10))],
    ids=["standard", "grid", "dtype"],
)
def test_parse_config(spec, expected):
    assert bench_configs.parse_config(spec).sizes == expected


def test_tiny_run_writes_well_formed_outputs(tmp_path):
    config = bench_configs.parse_config("1x8x16")
    for stale in bench_report.PLOTS:  # a run before, with peaks and peers, into the same directory
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
    assert entry["flops"]["step"] == bench_configs.matmul_flops(config.sizes, config.batch)["step"]
    for kind in ("grad", "sgd"):
        for source in bench_configs.SOURCES:
            m = entry[kind][source]
            assert m["step_s"]["min"] <= m["step_s"]["median"] <= m["step_s"]["max"]
            assert (
                m["step_s"]["n"] == 2 * bench_timing.INSTANCES and m["compile_s"] > 0
            )  # samples pooled over instances
            assert len(m["instance_medians_s"]) == len(m["instance_compile_s"]) == bench_timing.INSTANCES
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


def test_float32_steps_are_timed_without_64_bit_mode():
    """The tests run with x64 on; a float32 config is still compiled as a user without it gets it (with
    x64 on, adam's bias correction runs in float64), and a float64 config gets float64."""
    import jax
    import optax

    from mlp_jax.training.steps import make_update

    for spec, wide in (("1x8x16", False), ("1x8x16:float64", True)):
        config = bench_configs.parse_config(spec)
        with bench_configs.x64_for(config.dtype):
            params, x, y = bench_configs.make_problem(config)
            update = make_update(optax.adam(1e-3), activation="relu", loss=config.loss)
            hlo = update.lower(params, optax.adam(1e-3).init(params), x, y).compile().as_text()
        assert ("f64[" in hlo) is wide and jax.config.read("jax_enable_x64")  # the global setting is kept


def test_cli_run_lets_every_process_allocate_as_it_goes(tmp_path, monkeypatch, capsys):
    """`mlp-jax bench` end to end on a tiny config; on a GPU its workers must not find 75 % of the
    device's memory already taken by the parent, so the CLI turns JAX's preallocation off."""
    monkeypatch.delenv("XLA_PYTHON_CLIENT_PREALLOCATE", raising=False)
    flags = [
        "--configs",
        "1x8x16",
        "--repeats",
        "1",
        "--min-sample",
        "0.001",
        "--no-peaks",
        "--peers",
        "none",
        "--no-memory",
        "--no-digits",
        "--no-plots",
        "--malloc",
        "default",
    ]
    assert main(["bench", "--out", str(tmp_path), *flags]) == 0
    assert "| 1x8x16 | float32 | sgd |" in capsys.readouterr().out
    assert (
        json.loads((tmp_path / "results.json").read_text())["environment"]["env"]["XLA_PYTHON_CLIENT_PREALLOCATE"]
        == "false"
    )


def test_jnp_dot_peak_is_positive():
    peak = bench_peaks.jnp_dot_peak(["float32"], min_sample=0.001, repeats=1, shapes=[(32, 32, 32)])
    assert peak["float32"]["gflops_per_s"] > 0


@pytest.mark.parametrize(
    "flags",
    [["--repeats", "0"], ["--configs", "huge"], ["--configs", "2x8x8:int8"], ["--peers", "tensorflow"]],
    ids=["repeats", "config", "dtype", "peer"],
)
def test_bad_flags_exit_2(flags, tmp_path, capsys):
    assert main(["bench", "--out", str(tmp_path), *flags]) == 2
    assert "error" in capsys.readouterr().err


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

    config = bench_configs.parse_config(spec)
    params, x, y = bench_configs.make_problem(config)
    optimizer = optax.sgd(0.01)
    step = make_step(optimizer, activation="relu", loss=config.loss)
    matmuls = bench_peaks.step_matmuls(step, params, optimizer.init(params), x, y)
    layers = len(config.sizes) - 1
    parts = choose_batch_parts("auto", choose_layout("auto", config.sizes, config.batch, "float32"), config.batch)
    assert len(matmuls) == parts * (3 * layers - 1)  # per part: forward and dW every layer, delta all but the first
    assert sum(m.flops for m in matmuls) == bench_configs.matmul_flops(config.sizes, config.batch)["step"]


def test_side_by_side_peak_compares_like_with_like():
    config = bench_configs.parse_config("1x8x16")
    side = bench_peaks.side_by_side_peak(config, repeats=2, min_sample=0.001, shapes=((16, 8, 8), (8, 8, 8)))
    assert set(side["jnp_dot_gflops_per_s"]) == {"16x8x8", "8x8x8"}
    assert side["step_gflops_per_s"] > 0 and all(v > 0 for v in side["jnp_dot_gflops_per_s"].values())
    assert side["fraction_of_jnp_dot"] == pytest.approx(
        side["step_gflops_per_s"] / max(side["jnp_dot_gflops_per_s"].values())
    )
    assert side["matmul_count"] >= 1 and side["matmuls_alone_s"] > 0
    assert side["step_over_matmuls_alone"] == pytest.approx(side["step_s"] / side["matmuls_alone_s"])
    assert "matmuls alone" in bench_report.markdown(
        {"environment": bench_env.environment(), "settings": {}, "configs": {}, "peak_side_by_side": side}
    )
    results = {"configs": {}, "peak_side_by_side": side}
    (target,) = [t for t in bench_targets.check_targets(results) if "side by side" in t["target"]]
    assert target["met"] == (side["fraction_of_jnp_dot"] >= 0.95)


@pytest.mark.parametrize(
    "device_bytes, train_bytes, where, met",
    [
        (None, None, "process", False),  # the CPU: no allocator stats, the RSS decides (more with donation here)
        ((300, 300), (100, 200), "device", True),  # an accelerator: training's own device peak decides
        ((300, 300), None, "device", False),  # its peak was set before training: not seen, so not met
    ],
)
def test_donation_target_reads_the_device_memory_where_measured(device_bytes, train_bytes, where, met):
    donate = {"rss_peak_bytes": 5 << 20, "train_peak_bytes": 3 << 20}
    keep = {"rss_peak_bytes": 4 << 20, "train_peak_bytes": 2 << 20}
    if device_bytes:
        donate["device_peak_bytes"], keep["device_peak_bytes"] = (n << 20 for n in device_bytes)
    if train_bytes:
        donate["device_train_peak_bytes"], keep["device_train_peak_bytes"] = (n << 20 for n in train_bytes)
    results = {"configs": {}, "memory_peak": {"config": "large", "donate": donate, "no_donation": keep}}
    (target,) = [t for t in bench_targets.check_targets(results) if "donation" in t["target"]]
    assert f"peak {where} memory" in target["target"] and target["met"] is met
    assert ("not seen" in str(target["value"])) == (device_bytes is not None and train_bytes is None)


def test_peers_table_says_where_each_library_ran():
    peers = {
        "mlp_jax": {"version": "0.1.0", "device": "gpu", "configs": {"large": {"step_s": {"median": 0.01}}}},
        "torch": {"version": "2.x", "device": "cpu", "configs": {"large": {"step_s": {"median": 0.4}}}},
    }
    text = bench_report.markdown(
        {"environment": bench_env.environment(), "settings": {}, "configs": {}, "peers": peers}
    )
    assert "| library | version | device | large |" in text
    assert "| mlp_jax | 0.1.0 | gpu | 100.0 (10) |" in text and "| torch | 2.x | cpu |" in text


def test_peak_shapes_grow_on_an_accelerator():
    assert bench_peaks.peak_shapes_for("cpu") == bench_peaks.PEAK_SHAPES
    assert bench_peaks.peak_shapes_for("cpu", quick=True) == bench_peaks.PEAK_SHAPES[::2]
    assert bench_peaks.peak_shapes_for("gpu")[-1] == (8192, 8192, 8192)


@pytest.mark.parametrize(
    "platform, torch_device, practical",
    [
        ("cpu", "cpu", 300.0),  # the best of numpy's and torch's
        ("gpu", "cuda", 200.0),  # torch on the same GPU
        ("gpu", "cpu", None),  # a CPU-only torch says nothing about the GPU, and neither does numpy
    ],
)
def test_practical_peak_is_measured_on_the_same_device(platform, torch_device, practical):
    results = {
        "environment": {"device": {"platform": platform}},
        "peaks": {
            "jnp_dot": {"float32": {"gflops_per_s": 250.0}},
            "numpy": {"float32": {"gflops_per_s": 300.0}},
            "torch": {"device": torch_device, "float32": {"gflops_per_s": 200.0}},
        },
    }
    assert bench_targets.practical_peak(results, "float32") == (250.0, practical)


def test_pytorch_target_needs_both_libraries_on_the_same_device():
    def targets(jax_device, torch_device):
        peers = {
            "mlp_jax": {"device": jax_device, "configs": {"large": {"step_s": {"median": 0.1}}}},
            "torch": {"device": torch_device, "configs": {"large": {"step_s": {"median": 0.4}}}},
        }
        results = {"configs": {}, "peers": peers}
        (target,) = [t for t in bench_targets.check_targets(results) if "PyTorch" in t["target"]]
        return target

    assert targets("cpu", "cpu")["met"] is True and targets("gpu", "cuda")["value"] == 0.25
    mixed = targets("gpu", "cpu")  # a CPU-only PyTorch beside JAX on a GPU
    assert mixed["met"] is None and "not comparable" in mixed["value"]
    text = bench_report.markdown(
        {"environment": bench_env.environment(), "settings": {}, "configs": {}, "targets": [mixed]}
    )
    assert "| not measured |" in text


def test_failed_peer_and_digits_rounds_are_kept(monkeypatch):
    answers = iter(
        [
            {"version": "1", "device": "cpu", "configs": {"small": {"samples": [0.2, 0.4], "first_step_s": 1.0}}},
            {"error": "Segmentation fault", "returncode": -11},
            {"version": "1", "device": "cpu", "configs": {"small": {"samples": [0.3], "first_step_s": 1.0}}},
        ]
    )
    monkeypatch.setattr(bench_peers, "run_worker", lambda script, request, **kw: next(answers))
    out = bench_peers.run_peers([bench_configs.STANDARD["small"]], ["torch"], rounds=3, repeats=1, min_sample=0.01)
    assert out["torch"]["configs"]["small"]["step_s"]["median"] == 0.3  # the good rounds only
    assert out["torch"]["errors"] == [{"error": "Segmentation fault", "returncode": -11}]
    assert "Failed rounds" in bench_report.markdown(
        {"environment": bench_env.environment(), "settings": {}, "configs": {}, "peers": out}
    )

    runs = iter(
        [
            {"seconds": 2.0, "epochs": 9, "accuracy": 0.96},
            {"seconds": 0.1, "epochs": 30, "accuracy": 0.95},
            {"error": "timeout"},
            {"seconds": 0.3, "epochs": 30, "accuracy": 0.95},
            {"seconds": 1.0, "epochs": 9, "accuracy": 0.96},
            {"seconds": 0.2, "epochs": 30, "accuracy": 0.95},
        ]
    )
    monkeypatch.setattr(bench_peers, "run_worker", lambda script, request, **kw: next(runs))
    digits = bench_peers.digits_time_to_accuracy(0.95, 100, rounds=3)
    assert digits["mlp_jax"]["seconds"] == 1.5 and digits["mlp_jax"]["errors"] == [{"error": "timeout"}]
    assert digits["sklearn"]["seconds"] == 0.2 and digits["sklearn"]["seconds_samples"] == [0.1, 0.3, 0.2]


def test_ratio_targets_carry_their_noise():
    results = {
        "configs": {
            "small": {
                "sgd": {
                    "ratio_manual_over_autodiff": 1.004,
                    "noise_floor_ratio": 1.031,
                    "ratio_ci95": [0.9912, 1.0213],
                    "manual": {"compile_s": 0.2},
                    "autodiff": {"compile_s": 0.2},
                }
            }
        }
    }
    targets = bench_targets.check_targets(results)
    (ratio,) = [t for t in targets if "manual / autodiff" in t["target"]]
    assert ratio == {
        "target": "small sgd: manual / autodiff step time <= 1.00",
        "value": 1.004,
        "met": False,
        "noise_floor": 1.031,
        "ci95": [0.991, 1.021],
    }
    text = bench_report.markdown(
        {"environment": bench_env.environment(), "settings": {}, "configs": {}, "targets": targets}
    )
    assert (
        "| small sgd: manual / autodiff step time <= 1.00 | 1.004 (A/A 1.031; 95 % CI 0.991-1.021) | **no** |" in text
    )


def test_ratio_interval():
    assert bench_timing.ratio_ci95([1.0] * 5, [2.0] * 5) == [0.5, 0.5]  # no spread: the ratio itself
    same = [0.20, 0.21, 0.22, 0.21, 0.20, 0.23, 0.21]
    lo, hi = bench_timing.ratio_ci95(same, same[::-1])
    assert lo < 1.0 < hi and bench_timing.ratio_ci95(same, same[::-1]) == [lo, hi]  # seeded
    lo, hi = bench_timing.ratio_ci95([2 * v for v in same], same)
    assert 1.8 < lo <= 2.0 <= hi < 2.2
