"""mlp_jax.bench.report: results.md from a results dict, and the files a run writes."""

import json
from pathlib import Path

import pytest

from mlp_jax.bench.report import PLOTS, markdown, write_outputs

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
ENVIRONMENT = {
    "date_utc": "2026-01-01T00:00:00+00:00",
    "device": {"platform": "cpu", "kind": "cpu", "count": 1},
    "cpu": "a CPU",
    "cpu_count": 2,
    "python": "3.11.0",
    "versions": {"jax": "0.1"},
    "xla_flags": "",
    "env": {},
    "jax_default_matmul_precision": None,
    "load_average_1min": 0.5,
}


def _results(**sections) -> dict:
    return {"environment": ENVIRONMENT, "settings": {}, "configs": {}, **sections}


@pytest.mark.parametrize("name", ["cpu/results", "cpu"])
def test_committed_results_md_is_the_markdown_of_its_json(name):
    """The committed runs' results.md, written by the bench, come back byte for byte from their JSON."""
    results = json.loads((RESULTS / f"{name}.json").read_text())
    assert markdown(results) == (RESULTS / f"{name}.md").read_text()


def test_header_says_where_the_run_ran():
    text = markdown(_results(wall_s=12.3))
    assert text.startswith("# mlp-jax benchmark\n\n2026-01-01T00:00:00+00:00; device cpu (cpu); CPU a CPU, 2 cores")
    assert "XLA_FLAGS=(none); malloc glibc defaults; matmul precision backend default" in text
    assert "wall 12 s." in text and text.endswith("|---|---|---|---|---|---|---|---|---|\n")


def test_peers_table_says_where_each_library_ran():
    peers = {
        "mlp_jax": {"version": "0.1.0", "device": "gpu", "configs": {"large": {"step_s": {"median": 0.01}}}},
        "torch": {"version": "2.x", "device": "cpu", "configs": {"large": {"step_s": {"median": 0.4}}}},
    }
    text = markdown(_results(peers=peers))
    assert "| library | version | device | large |" in text
    assert "| mlp_jax | 0.1.0 | gpu | 100.0 (10) |" in text and "| torch | 2.x | cpu |" in text


def test_failed_peer_and_digits_rounds_are_counted():
    peers = {
        "torch": {
            "version": "1",
            "device": "cpu",
            "configs": {"small": {"step_s": {"median": 0.3}}},
            "errors": [{"error": "Segmentation fault", "returncode": -11}],
        }
    }
    digits = {
        "mlp_jax": {"seconds": 1.5, "seconds_samples": [2.0, 1.0], "epochs": 9, "accuracy": 0.96, "errors": [{}]},
        "sklearn": {"error": "timeout"},
    }
    text = markdown(_results(peers=peers, digits=digits))
    assert "Failed rounds (left out of the medians; their errors are in results.json): torch 1." in text
    assert "| mlp_jax | 1.50 | 2.00, 1.00; 1 failed | 9 | 0.960 |" in text
    assert "| sklearn | {'error': 'timeout'} | | | |" in text


def test_side_by_side_section_splits_the_gap():
    side = {
        "config": "large",
        "dtype": "float32",
        "step_gflops_per_s": 90.0,
        "jnp_dot_gflops_per_s": {"16x8x8": 100.0},
        "fraction_of_jnp_dot": 0.9,
        "step_s": 0.002,
        "matmuls_alone_s": 0.0019,
        "matmul_count": 11,
        "matmuls_alone_gflops_per_s": 95.0,
        "matmuls_alone_fraction_of_jnp_dot": 0.95,
        "step_over_matmuls_alone": 1.0526,
    }
    text = markdown(_results(peak_side_by_side=side))
    assert "the step is 90.0 % of the best dot." in text
    assert "The step's own 11 matmuls alone" in text and "1.053x its matmuls" in text


def test_targets_table_shows_the_noise_and_unmeasured_ones():
    targets = [
        {"target": "small sgd: manual / autodiff step time <= 1.00", "value": 1.004, "met": False}
        | {"noise_floor": 1.031, "ci95": [0.991, 1.021]},
        {"target": "large sgd: mlp-jax step time <= PyTorch eager's (ratio <= 1)", "met": None, "value": "n/a"},
    ]
    text = markdown(_results(targets=targets))
    assert (
        "| small sgd: manual / autodiff step time <= 1.00 | 1.004 (A/A 1.031; 95 % CI 0.991-1.021) | **no** |" in text
    )
    assert text.endswith("| n/a | not measured |\n")


def test_outputs_are_written_and_stale_plots_removed(tmp_path):
    for stale in PLOTS:  # a run before, with plots, into the same directory
        (tmp_path / stale).write_bytes(b"old")
    results = _results(targets=[])
    write_outputs(results, tmp_path, plots=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json", "results.md"]
    assert json.loads((tmp_path / "results.json").read_text()) == results
    assert (tmp_path / "results.md").read_text() == markdown(results)
