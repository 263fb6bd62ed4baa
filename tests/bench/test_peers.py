"""mlp_jax.bench.peers: worker processes run by path, their rounds merged, failed rounds kept apart."""

import importlib.util

import pytest

from mlp_jax.bench import peers
from mlp_jax.bench.configs import STANDARD


def test_every_worker_script_is_in_the_package():
    scripts = {f"{p}_peer.py" for p in (*peers.PEERS, "sklearn")} | {"numpy_peak.py", "_common.py"}
    assert {p.name for p in peers.WORKER_DIR.glob("*.py")} >= scripts


def test_a_missing_worker_is_skipped_not_raised():
    assert "not found" in peers.run_worker("no_such_worker.py", {})["skipped"]


@pytest.mark.slow
def test_run_worker_answers_errors_and_timeouts(tmp_path, monkeypatch):
    (tmp_path / "echo.py").write_text(
        "import json, sys\nprint('noise')\nprint(json.dumps({'got': json.loads(sys.argv[1])}))\n"
    )
    (tmp_path / "fails.py").write_text("import sys\nsys.exit('it broke')\n")
    (tmp_path / "sleeps.py").write_text("import time\ntime.sleep(30)\n")
    monkeypatch.setattr(peers, "WORKER_DIR", tmp_path)
    assert peers.run_worker("echo.py", {"a": [1, 2]}) == {"got": {"a": [1, 2]}}  # the last line is the answer
    assert peers.run_worker("fails.py", {}) == {"error": "it broke", "returncode": 1}
    assert peers.run_worker("sleeps.py", {}, timeout=0.5) == {"error": "timed out after 0.5 s"}


def test_failed_peer_rounds_are_kept_apart(monkeypatch):
    answers = iter(
        [
            {"version": "1", "device": "cpu", "configs": {"small": {"samples": [0.2, 0.4], "first_step_s": 1.0}}},
            {"error": "Segmentation fault", "returncode": -11},
            {"version": "1", "device": "cpu", "configs": {"small": {"samples": [0.3], "first_step_s": 1.0}}},
        ]
    )
    monkeypatch.setattr(peers, "run_worker", lambda script, request, **kw: next(answers))
    out = peers.run_peers([STANDARD["small"]], ["torch"], rounds=3, repeats=1, min_sample=0.01)
    assert out["torch"]["configs"]["small"]["step_s"]["median"] == 0.3  # the good rounds only
    assert out["torch"]["errors"] == [{"error": "Segmentation fault", "returncode": -11}]


def test_peers_alternate_round_by_round(monkeypatch):
    calls = []

    def worker(script, request, **kw):
        calls.append(script)
        return {"error": "none here"}

    monkeypatch.setattr(peers, "run_worker", worker)
    out = peers.run_peers([STANDARD["small"]], ["torch", "flax"], rounds=2, repeats=1, min_sample=0.01)
    assert calls == ["torch_peer.py", "flax_peer.py"] * 2
    assert out == {"torch": {"error": "none here"}, "flax": {"error": "none here"}}  # no good round: the first failure


def test_failed_digits_rounds_are_kept_apart(monkeypatch):
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
    monkeypatch.setattr(peers, "run_worker", lambda script, request, **kw: next(runs))
    digits = peers.digits_time_to_accuracy(0.95, 100, rounds=3)
    assert digits["mlp_jax"]["seconds"] == 1.5 and digits["mlp_jax"]["errors"] == [{"error": "timeout"}]
    assert digits["sklearn"]["seconds"] == 0.2 and digits["sklearn"]["seconds_samples"] == [0.1, 0.3, 0.2]


def test_memory_workers_run_with_glibc_defaults(monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "1")
    seen = []

    def worker(script, request, *, env=None, **kw):
        seen.append((script, request["donate"], env))
        return {"rss_peak_bytes": 1}

    monkeypatch.setattr(peers, "run_worker", worker)
    out = peers.memory_peaks(STANDARD["large"])
    assert out == {"malloc": "glibc defaults", "donate": {"rss_peak_bytes": 1}, "no_donation": {"rss_peak_bytes": 1}}
    assert [(s, d) for s, d, _ in seen] == [("mlp_jax_peer.py", True), ("mlp_jax_peer.py", False)]
    assert all(not any(k.startswith("MALLOC_") for k in env) for _, _, env in seen)


def test_numpy_env_drops_the_openblas_overrides(monkeypatch):
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
    env = peers.numpy_env()
    assert "OPENBLAS_CORETYPE" not in env and env["OPENBLAS_NUM_THREADS"] == "2"


def test_missing_packages_are_the_ones_this_python_cannot_find(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else object())
    assert peers.missing_packages("torch") == ["torch"]
    assert peers.missing_packages("flax") == [] and peers.missing_packages("mlp_jax") == []
    assert set(peers.PEER_PACKAGES) == set(peers.PEERS) and "[bench]" in peers.BENCH_EXTRA
