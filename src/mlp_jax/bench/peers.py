"""The parts of `mlp-jax bench` that run in other processes (``mlp_jax/bench/workers/``): the peer
libraries' steps, the numpy and PyTorch matmul peaks, the training memory with and without donation,
and time to accuracy on digits. Each library runs in its own process, the processes alternating round
by round: thread pools of different libraries slow each other down when they share one.
"""

from __future__ import annotations

import importlib.util
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlp_jax.bench.configs import Config
from mlp_jax.bench.timing import summary

PEERS = ("mlp_jax", "torch", "equinox", "flax")  # steps/s on the same configs, each its own process
WORKER_DIR = Path(__file__).resolve().parent / "workers"  # run by path, so a worker imports only its own library
# The packages each peer's worker imports beyond mlp-jax's own dependencies: all in the bench extra.
PEER_PACKAGES: dict[str, tuple[str, ...]] = {
    "mlp_jax": (),
    "torch": ("torch",),
    "equinox": ("equinox",),
    "flax": ("flax",),
}
BENCH_EXTRA = 'pip install -e ".[bench]"'


def missing_packages(peer: str) -> list[str]:
    """The packages peer `peer`'s worker imports that this Python cannot find. The workers run in this
    Python (`sys.executable`), so a package found here is found there."""
    return [name for name in PEER_PACKAGES.get(peer, ()) if importlib.util.find_spec(name) is None]


def run_worker(script: str, request: dict, *, env: dict | None = None, timeout: float = 600) -> dict[str, Any]:
    """Run ``mlp_jax/bench/workers/<script>`` with a JSON request; its last stdout line is the JSON answer."""
    path = WORKER_DIR / script
    if not path.exists():
        return {"skipped": f"{path} not found (an incomplete installation)"}
    try:
        proc = subprocess.run(
            [sys.executable, str(path), json.dumps(request)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1], "returncode": proc.returncode}
    return json.loads(lines[-1])


def numpy_env() -> dict:
    env = dict(os.environ)
    for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):  # both slow numpy on this machine
        env.pop(name, None)
    return env


def memory_peaks(config: Config) -> dict[str, Any]:
    """Peak RSS of a process training `config` with adam, with and without donation (own processes).

    Always with glibc's default malloc: under `mlp_jax.bench.hostmem.MALLOC_ENV` the heap never shrinks and
    its high-water mark follows fragmentation as much as live buffers (it changed sides from one run to the
    next), which is not what this compares."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out: dict[str, Any] = {"malloc": "glibc defaults"}
    for donate in (True, False):
        out["donate" if donate else "no_donation"] = run_worker(
            "mlp_jax_peer.py", {"mode": "memory", "config": config._asdict(), "donate": donate, "steps": 3}, env=env
        )
    return out


def run_peers(
    configs: Sequence[Config],
    peers: Sequence[str],
    *,
    rounds: int,
    repeats: int,
    min_sample: float,
    torch_device: str = "cpu",
) -> dict[str, Any]:
    """Steps/s of an sgd step per config for each library, its processes alternating round by round
    (PyTorch on `torch_device` where it has it). A round that failed is kept under ``"errors"``."""
    request = {
        "mode": "steps",
        "configs": [c._asdict() for c in configs],
        "repeats": repeats,
        "min_sample": min_sample,
        "device": torch_device,
    }
    out: dict[str, Any] = {}
    for peer, (good, failed) in _alternating_rounds(peers, request, rounds, "configs").items():
        if not good:
            out[peer] = failed[0]
            continue
        merged: dict[str, Any] = {"version": good[0].get("version"), "device": good[0].get("device"), "configs": {}}
        if failed:
            merged["errors"] = failed
        for config in configs:
            samples = [s for a in good for s in a["configs"].get(config.name, {}).get("samples", [])]
            if samples:
                merged["configs"][config.name] = {
                    "step_s": summary(samples),
                    "first_step_s": good[0]["configs"][config.name]["first_step_s"],
                }
        out[peer] = merged
    return out


def digits_time_to_accuracy(target: float, max_epochs: int, rounds: int = 3) -> dict[str, Any]:
    """Seconds of training to reach `target` test accuracy on sklearn's digits: mlp-jax vs MLPClassifier,
    each in its own process, the two alternating for `rounds` rounds. Per library: the first good
    round's answer, with ``seconds`` the median over good rounds and ``seconds_samples`` all of them
    (a failed round is kept under ``"errors"``)."""
    request = {"mode": "digits", "target": target, "max_epochs": max_epochs, "hidden": [64, 64], "batch": 128}
    out: dict[str, Any] = {}
    for lib, (good, failed) in _alternating_rounds(("mlp_jax", "sklearn"), request, rounds, "seconds").items():
        if not good:
            out[lib] = failed[0]
            continue
        samples = [a["seconds"] for a in good]
        out[lib] = dict(good[0], seconds=statistics.median(samples), seconds_samples=samples)
        if failed:
            out[lib]["errors"] = failed
    return out


def _alternating_rounds(
    libs: Sequence[str], request: dict, rounds: int, answer_key: str
) -> dict[str, tuple[list[dict], list[dict]]]:
    """Each library's worker (``workers/<lib>_peer.py``) run `rounds` times on `request`, the
    libraries' processes alternating; per library, (the answers holding `answer_key`, the failed ones)."""
    answers: dict[str, list[dict]] = {lib: [] for lib in libs}
    for _ in range(rounds):
        for lib in libs:
            answers[lib].append(run_worker(f"{lib}_peer.py", request))
    return {
        lib: ([a for a in runs if answer_key in a], [a for a in runs if answer_key not in a])
        for lib, runs in answers.items()
    }
