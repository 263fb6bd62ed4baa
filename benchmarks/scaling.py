"""Data-parallel throughput: fused training epochs on 1, 2 and 4 devices (`mlp_jax.training.distributed`).

Each device count runs in its own subprocess. On CPU the devices are simulated with
``XLA_FLAGS=--xla_force_host_platform_device_count=N``: they share the host's cores, so this measures the
overhead of the sharded program (partitioned matmuls plus all-reduces), not a speed-up. With
``--platform gpu`` the real local GPUs are used (device counts above what exists are skipped).

    python benchmarks/scaling.py                      # CPU, 1 2 4 simulated devices
    python benchmarks/scaling.py --platform gpu       # real GPUs

Writes ``benchmarks/results/scaling.json`` and ``scaling.md`` (``--out`` to change). Every row: one
warm-up epoch (compile), then ``--epochs`` epochs timed one by one (`block_until_ready` before reading the
clock); the row reports the median epoch.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path


def worker(args: argparse.Namespace) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    from mlp_jax.core.params import init_params
    from mlp_jax.training import distributed as dist
    from mlp_jax.training.steps import init_train_state, make_train_epoch

    sizes = [args.features, *args.hidden, args.classes]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.examples, args.features)).astype(np.float32)
    y = rng.integers(0, args.classes, args.examples).astype(np.int32)
    optimizer = optax.adam(1e-3)
    state = init_train_state(init_params(jax.random.key(0), sizes), optimizer, jax.random.key(1))
    common = dict(loss="softmax_cross_entropy", grad=args.grad, batch_size=args.batch_size)
    if args.devices == 0:  # the plain single-device epoch, no mesh: the baseline
        epoch = make_train_epoch(optimizer, **common)
        xs, ys = jnp.asarray(x), jnp.asarray(y)
    else:
        mesh = dist.make_mesh(args.devices)
        epoch = dist.make_sharded_train_epoch(optimizer, mesh, **common)
        state = dist.replicate(state, mesh)
        xs, ys = dist.place_dataset(x, mesh), dist.place_dataset(y, mesh)
    state, losses = epoch(state, xs, ys)  # warm-up: compile
    jax.block_until_ready((state, losses))
    seconds = []
    for _ in range(args.epochs):
        start = time.perf_counter()
        state, losses = epoch(state, xs, ys)
        jax.block_until_ready((state, losses))
        seconds.append(time.perf_counter() - start)
    epoch_s = float(np.median(seconds))  # the median epoch: robust to a busy shared host
    steps = len(losses)
    return {
        "devices": args.devices or 1,
        "mesh": args.devices != 0,
        "grad": args.grad,
        "platform": jax.devices()[0].platform,
        "device_kind": jax.devices()[0].device_kind,
        "steps_per_s": steps / epoch_s,
        "examples_per_s": steps * args.batch_size / epoch_s,
        "epoch_seconds": seconds,
        "final_loss": float(losses[-1]),
    }


def run_worker(devices: int, grad: str, args: argparse.Namespace) -> dict | None:
    env = dict(os.environ)
    if args.platform == "cpu":
        env["JAX_PLATFORMS"] = "cpu"
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={max(devices, 1)}"
    command = [
        sys.executable,
        __file__,
        "--worker",
        "--devices",
        str(devices),
        "--grad",
        grad,
        *(
            f"--{k.replace('_', '-')}={v}"
            for k, v in dict(
                batch_size=args.batch_size,
                examples=args.examples,
                features=args.features,
                classes=args.classes,
                epochs=args.epochs,
            ).items()
        ),
        "--hidden",
        ",".join(map(str, args.hidden)),
    ]
    proc = subprocess.run(command, env=env, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT")]
    if proc.returncode != 0 or not lines:
        print(f"devices={devices} grad={grad}: skipped ({proc.stderr.strip().splitlines()[-1:]})", file=sys.stderr)
        return None
    return json.loads(lines[-1][len("RESULT") :])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--platform", default="cpu", choices=["cpu", "gpu"])
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--grad", default=None, help="manual or autodiff (default: both)")
    parser.add_argument("--batch-size", type=int, default=512)  # global: split over the devices
    parser.add_argument("--examples", type=int, default=16384)
    parser.add_argument("--features", type=int, default=784)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--hidden", type=lambda s: [int(p) for p in s.split(",")], default=[512, 512])
    parser.add_argument("--epochs", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    if args.worker:
        args.devices = args.devices[0]
        print("RESULT" + json.dumps(worker(args)), flush=True)
        return

    load_before = [round(v, 2) for v in os.getloadavg()]
    rows = []
    for grad in [args.grad] if args.grad else ["manual", "autodiff"]:
        for devices in [0, *args.devices]:  # 0: the plain epoch without a mesh
            row = run_worker(devices, grad, args)
            if row is not None:
                rows.append(row)
                print(
                    f"{grad:8s} devices={row['devices']} mesh={row['mesh']!s:5s} {row['steps_per_s']:9.1f} steps/s",
                    file=sys.stderr,
                )
    setup = {
        "layer_sizes": [args.features, *args.hidden, args.classes],
        "global_batch": args.batch_size,
        "examples": args.examples,
        "timed_epochs": args.epochs,
        "platform": args.platform,
        "host": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "simulated_devices": args.platform == "cpu",
        "load_average_before_after": [load_before, [round(v, 2) for v in os.getloadavg()]],
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "versions": {"python": platform.python_version(), **{lib: version(lib) for lib in ("jax", "jaxlib")}},
        "command": shlex.join(["python", "benchmarks/scaling.py", *sys.argv[1:]]),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "scaling" if args.platform == "cpu" else f"scaling_{args.platform}"
    (args.out / f"{stem}.json").write_text(json.dumps({"setup": setup, "rows": rows}, indent=2))
    baseline = {r["grad"]: r["steps_per_s"] for r in rows if not r["mesh"]}
    simulated = ", simulated devices" if setup["simulated_devices"] else ""
    lines = [
        f"# Data-parallel throughput ({args.platform}{simulated})",
        "",
        f"MLP {setup['layer_sizes']}, global batch {args.batch_size}, Adam, fused epochs of "
        f"{args.examples // args.batch_size} steps, median of {args.epochs} timed epochs after a warm-up; "
        f"{setup['host']}.",
        "",
        f"{setup['date_utc']}; " + ", ".join(f"{k} {v}" for k, v in setup["versions"].items()) + ".",
        f"Reproduce with `{setup['command']}`.",
        "",
        "| grad | devices | steps/s | examples/s | vs. no mesh |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        label = f"{r['devices']}" if r["mesh"] else "1 (no mesh)"
        lines.append(
            f"| {r['grad']} | {label} | {r['steps_per_s']:.1f} | {r['examples_per_s']:.0f} | "
            f"{r['steps_per_s'] / baseline.get(r['grad'], r['steps_per_s']):.2f}x |"
        )
    if setup["simulated_devices"]:
        lines += [
            "",
            "Simulated CPU devices share the same cores, so more devices cannot be faster here: the rows "
            "show what sharding costs (partitioned matmuls, an all-reduce per step), not a speed-up.",
            f"Host load average (1, 5, 15 min) before / after: {setup['load_average_before_after'][0]} / "
            f"{setup['load_average_before_after'][1]}; on a busy shared host the rows vary by tens of percent "
            "from run to run.",
        ]
    (args.out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
