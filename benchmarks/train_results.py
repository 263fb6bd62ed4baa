"""Full training runs behind the README's results table: every built-in data set with its defaults,
manual gradients, on this machine; plus scikit-learn's MLPClassifier on mnist1d's split for comparison.

    python benchmarks/train_results.py [--out benchmarks/results]

Writes training.json and training.md into --out (run directories go to a temporary folder).
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from mlp_jax.training.data import load_dataset
from mlp_jax.training.files import write_text
from mlp_jax.training.fit import TrainConfig, fit

DATASETS = [
    "xor",
    "moons",
    "circles",
    "spirals",
    "iris",
    "wine",
    "breast_cancer",
    "digits",
    "mnist1d",
    "sine",
    "diabetes",
]


def sklearn_mnist1d(hidden: tuple[int, ...], epochs: int, seed: int = 0) -> dict:
    """scikit-learn's MLPClassifier (adam, relu, the same widths and epochs) on mnist1d's own split."""
    from sklearn.neural_network import MLPClassifier

    data = load_dataset("mnist1d", seed=seed)
    start = time.perf_counter()
    model = MLPClassifier(
        hidden_layer_sizes=hidden,
        max_iter=epochs,
        batch_size=128,
        learning_rate_init=1e-3,
        random_state=seed,
        n_iter_no_change=epochs + 1,
        tol=0.0,
    )
    model.fit(data.x_train, data.y_train)
    wall = time.perf_counter() - start
    return {
        "test_accuracy": float(model.score(data.x_test, data.y_test)),
        "wall_time_s": wall,
        "epochs": int(model.n_iter_),
        "hidden": list(hidden),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--datasets", default=",".join(DATASETS))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as runs:
        for name in args.datasets.split(","):
            metrics = fit(TrainConfig(dataset=name), Path(runs) / name, quiet=True)
            config = metrics["config"]
            metric = (
                ("test_accuracy", metrics["test_accuracy"])
                if "test_accuracy" in metrics
                else ("test_mse", metrics["test_mse"])
            )
            rows.append(
                {
                    "dataset": name,
                    "layer_sizes": metrics["layer_sizes"],
                    "activation": config["activation"],
                    "optimizer": f"{config['optimizer']} {config['lr']:g}"
                    + (f" {config['schedule']}" if config["schedule"] != "constant" else ""),
                    "epochs": metrics["epochs"],
                    "batch_size": config["batch_size"],
                    "metric": metric[0],
                    "value": metric[1],
                    "wall_time_s": metrics["wall_time_s"],
                }
            )
            print(rows[-1], flush=True)
    peers = {}
    if "mnist1d" in args.datasets:
        mnist1d = next(r for r in rows if r["dataset"] == "mnist1d")
        peers["sklearn_mnist1d"] = sklearn_mnist1d(tuple(mnist1d["layer_sizes"][1:-1]), mnist1d["epochs"])
        print(peers, flush=True)
    info = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.processor() or platform.machine()}, {len(__import__('os').sched_getaffinity(0))} cores",
        "device": str(jax.devices()[0]),
        "jax": jax.__version__,
        "python": platform.python_version(),
        "command": shlex.join(["python", "benchmarks/train_results.py", *sys.argv[1:]]),
    }
    write_text(out / "training.json", json.dumps({"info": info, "rows": rows, "peers": peers}, indent=2))
    lines = [
        f"Training results ({info['date']}, {info['machine']}, {info['device']}, jax {info['jax']}; "
        "manual gradients, test split, defaults of `mlp-jax train --dataset NAME`)",
        "",
        f"Reproduce with `{info['command']}`.",
        "",
        "| data set | architecture | activation | optimizer | epochs | batch | test metric | wall time |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        value = f"{r['value']:.2%}" if r["metric"] == "test_accuracy" else f"{r['value']:.4f}"
        lines.append(
            f"| {r['dataset']} | {'-'.join(map(str, r['layer_sizes']))} | {r['activation']} | "
            f"{r['optimizer']} | {r['epochs']} | {r['batch_size']} | {r['metric'].replace('test_', '')} "
            f"{value} | {r['wall_time_s']:.1f} s |"
        )
    if peers:
        p = peers["sklearn_mnist1d"]
        lines += [
            "",
            f"scikit-learn MLPClassifier on the same mnist1d split (hidden {p['hidden']}, adam 1e-3, "
            f"{p['epochs']} epochs, batch 128): accuracy {p['test_accuracy']:.2%} in {p['wall_time_s']:.1f} s.",
        ]
    write_text(out / "training.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
