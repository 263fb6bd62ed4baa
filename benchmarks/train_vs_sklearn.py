"""`mlp-jax train` with its defaults against scikit-learn's MLPClassifier with its own defaults, on the same
split of each data set, and against the MLP result published with MNIST-1D.

    python benchmarks/train_vs_sklearn.py [--datasets mnist1d,digits] [--out benchmarks/results]

Ours: ``mlp-jax train --dataset NAME`` (the CLI, in this process), its wall time from the command's start to
its end (data, compilation, every epoch's evaluation and checkpoint, the plots). scikit-learn: the same
standardised train and test arrays (`mlp_jax.training.data.load_dataset`), ``MLPClassifier(max_iter=1000,
random_state=0)`` with every other setting its default (one hidden layer of 100 relu units, adam 1e-3,
batch 200, stopping when the training loss stops improving), so it runs until it converges; its time is
``fit`` alone. The machine's load average is recorded before and after, as other work slows both.

Writes train_vs_sklearn.json and train_vs_sklearn.md into --out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import tempfile
import time
import warnings
from pathlib import Path

import jax
import sklearn

from mlp_jax.cli.main import main as mlp_jax_main
from mlp_jax.training.data import load_dataset
from mlp_jax.training.files import write_text

CONFIG_KEYS = ("activation", "optimizer", "lr", "schedule", "epochs", "batch_size", "dropout")
# The published test accuracy of an MLP on each data set, where there is one, with its source.
PUBLISHED = {
    "mnist1d": {
        "test_accuracy": 0.68,
        "source": "Greydanus & Kobak, Scaling Down Deep Learning with MNIST-1D (arXiv:2011.14439, 2020), "
        "the MLP column of the results table, also in the README of github.com/greydanus/mnist1d",
    },
}


def ours(name: str, runs: Path) -> dict:
    """`mlp-jax train --dataset NAME` with its defaults; its metrics and its wall time."""
    out = runs / name
    start = time.perf_counter()
    code = mlp_jax_main(["train", "--dataset", name, "--quiet", "--out", str(out)])
    wall = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"mlp-jax train --dataset {name} exited with {code}")
    metrics = json.loads((out / "metrics.json").read_text())
    config = metrics["config"]
    return {
        "test_accuracy": metrics["test_accuracy"],
        "wall_time_s": wall,
        "layer_sizes": metrics["layer_sizes"],
        "config": {k: config[k] for k in CONFIG_KEYS},
    }


def sklearn_mlp(name: str) -> dict:
    """scikit-learn's MLPClassifier with its defaults (and max_iter enough to converge) on the same split."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    data = load_dataset(name, seed=0)
    model = MLPClassifier(max_iter=1000, random_state=0)
    start = time.perf_counter()
    with warnings.catch_warnings():  # a ConvergenceWarning at max_iter is recorded as converged: false
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(data.x_train, data.y_train)
    wall = time.perf_counter() - start
    return {
        "test_accuracy": float(model.score(data.x_test, data.y_test)),
        "wall_time_s": wall,
        "hidden": list(model.hidden_layer_sizes) if isinstance(model.hidden_layer_sizes, tuple) else [100],
        "epochs": int(model.n_iter_),
        "converged": int(model.n_iter_) < model.max_iter,  # else its training loss was still falling slowly
        "n_train": len(data.x_train),
        "n_test": len(data.x_test),
    }


def markdown(result: dict) -> str:
    info = result["info"]
    lines = [
        f"`mlp-jax train` against scikit-learn's MLPClassifier ({info['date']}, {info['machine']}, load average "
        f"{info['load_before']:.1f} before and {info['load_after']:.1f} after, {info['device']}, jax {info['jax']}, "
        f"scikit-learn {info['sklearn']}). Test accuracy on each data set's own test split; wall time of the "
        "whole `mlp-jax train` run (compilation, per-epoch evaluation and checkpoints, plots included) and of "
        "scikit-learn's `fit`.",
        "",
        f"Reproduce with `{info['command']}`.",
        "",
        "| data set | mlp-jax train (defaults) | time | scikit-learn MLPClassifier (defaults) | time | published MLP |",
        "|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        o, s, p = row["ours"], row["sklearn"], row["published"]
        arch = "-".join(map(str, o["layer_sizes"]))
        lines.append(
            f"| {row['dataset']} | {o['test_accuracy']:.2%} ({arch}, dropout {o['config']['dropout']:g}, "
            f"{o['config']['epochs']} epochs) | {o['wall_time_s']:.1f} s | {s['test_accuracy']:.2%} "
            f"(hidden {s['hidden']}, {s['epochs']} epochs{'' if s['converged'] else ', max_iter'}) | "
            f"{s['wall_time_s']:.1f} s | " + (f"{p['test_accuracy']:.0%} |" if p else "none |")
        )
    sources = [f"{row['dataset']}: {row['published']['source']}." for row in result["rows"] if row["published"]]
    if sources:
        lines += ["", "Published figures: " + " ".join(sources)]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="mnist1d,digits")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as runs:
        for name in args.datasets.split(","):
            row = {"dataset": name, "ours": ours(name, Path(runs)), "sklearn": sklearn_mlp(name)}
            row["published"] = PUBLISHED.get(name)
            rows.append(row)
            print(json.dumps(row), flush=True)
    info = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores",
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "device": str(jax.devices()[0]),
        "jax": jax.__version__,
        "sklearn": sklearn.__version__,
        "python": platform.python_version(),
        "command": shlex.join(["python", "benchmarks/train_vs_sklearn.py", *sys.argv[1:]]),
    }
    result = {"info": info, "rows": rows}
    write_text(out / "train_vs_sklearn.json", json.dumps(result, indent=2))
    write_text(out / "train_vs_sklearn.md", markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
