"""Where one compiled update step spends its time: XLA's thunks on a timeline, from `jax.profiler`.

    python benchmarks/experiments/step_timeline.py [CONFIG] [--grad manual|autodiff] [--optimizer sgd|adam]
                                                   [--steps N] [--min-ms T] [--malloc default]

CONFIG is a bench config (``large``, ``medium``, ``2x512x2048``...). The step is warmed up, then
``--steps`` steps are traced; the last full one is printed: each thunk (a fusion, a library matmul, a
copy) with its start and end in ms from the step's first thunk and the thread it ran on, thunks
shorter than ``--min-ms`` left out. Then the step's wall time split three ways: some matmul thunk
running, only other thunks running, nothing running. A thunk is a matmul when its HLO instruction is
or fuses a ``dot``. Library matmuls spread their work over XLA's thread pool; the timeline shows the
thread that started each one. Matmuls that XLA hands to Eigen (thunks named ``dot...``, such as the
batch layout's weight gradients) run asynchronously: their event covers only the launch, and their
work shows as idle time. The profiler adds a few percent; use the bench for times.

What it showed for ``large`` (4x1024, batch 4096, float32, manual sgd, 2-core CPU), 2026-11-28:
the forward pass runs one matmul at a time at 430-470 GFLOP/s with ~0.5 ms of bias + ReLU after
each; the backward pass runs each layer's weight-gradient matmul beside the next delta matmul (each
on about one core, ~430 GFLOP/s together); between them 1 ms ReLU masks, 0.5 ms bias sums, 0.2 ms
sgd updates; up front ~3 ms of transposes (``x.T``, ``W.T``); the loss head ~2 ms.
"""

from __future__ import annotations

import argparse
import collections
import glob
import re
import sys
import tempfile

import mlp_jax as mj


def dot_instructions(hlo_text: str) -> set[str]:
    """Names of the entry computation's instructions that are a dot or a fusion containing one."""
    bodies = dict(re.findall(r"^%?(\S+) [^\n]*\{\n(.*?)\n\}", hlo_text, flags=re.S | re.M))
    dotted = {name for name, body in bodies.items() if re.search(r"\bdot\(", body)}
    names = set()
    for line in hlo_text[hlo_text.index("ENTRY") :].splitlines():
        match = re.match(r"\s*(?:ROOT )?%?(\S+) = \S+ (\w+)\(", line)
        if not match:
            continue
        calls = re.search(r"calls=%?([\w.\-]+)", line)
        if match.group(2) == "dot" or (calls and calls.group(1) in dotted):
            names.add(match.group(1))
    return names


def thunk_events(trace_dir: str) -> tuple[list[float], list[tuple[float, float, str, str]]]:
    """(dispatch times of the step, in ns; every thunk event as (start, end, thread, name))."""
    from jax.profiler import ProfileData

    (path,) = glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True)
    dispatches, events = set(), []
    skip = (
        "Threadpool",
        "ThunkExecutor",
        "$",
        "Pjit",
        "Slinky",
        "end:",
        "Common",
        "Python",
        "Parse",
        "Handle",
        "Allocate",
        "Wait",
    )
    for plane in ProfileData.from_file(path).planes:
        for line in plane.lines:
            for ev in line.events:
                if ev.name.startswith("PjitFunction"):
                    dispatches.add(round(ev.start_ns, -5))
                elif ev.duration_ns > 0 and not ev.name.startswith(skip):
                    events.append(
                        (ev.start_ns, ev.start_ns + ev.duration_ns, line.name.rsplit("/", 1)[-1][-4:], ev.name)
                    )
    return sorted(dispatches), sorted(events)


def split_wall_time(events, is_matmul) -> dict[str, float]:
    """ms of the span with a matmul thunk running, with only other thunks, and with none."""
    points = sorted([(s, 1, is_matmul(n)) for s, _, _, n in events] + [(e, -1, is_matmul(n)) for _, e, _, n in events])
    out, running, last = collections.Counter(), collections.Counter(), points[0][0]
    for t, change, matmul in points:
        state = "matmul" if running[True] else "other only" if running[False] else "idle"
        out[state] += (t - last) / 1e6
        running[matmul] += change
        last = t
    return dict(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", default="large")
    parser.add_argument("--grad", default="manual", choices=["manual", "autodiff"])
    parser.add_argument("--optimizer", default="sgd", choices=["sgd", "adam"])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--min-ms", type=float, default=0.1)
    parser.add_argument("--malloc", default="keep-freed", choices=["keep-freed", "default"])
    args = parser.parse_args()
    if args.malloc == "keep-freed":
        mj.keep_freed_memory()  # as `mlp-jax bench` runs
    import jax
    import optax

    from mlp_jax.bench.configs import make_problem, parse_config
    from mlp_jax.training.steps import make_update

    config = parse_config(args.config)
    params, x, y = make_problem(config)
    optimizer = optax.sgd(0.01) if args.optimizer == "sgd" else optax.adam(1e-3)
    update = make_update(optimizer, grad=args.grad, activation="relu", loss=config.loss)
    matmul_names = dot_instructions(update.lower(params, optimizer.init(params), x, y).compile().as_text())
    state = (params, optimizer.init(params))
    for _ in range(3):
        *state, loss = update(*state, x, y)
        jax.block_until_ready(loss)
    with tempfile.TemporaryDirectory() as trace_dir:
        with jax.profiler.trace(trace_dir):
            for _ in range(args.steps):
                *state, loss = update(*state, x, y)
                jax.block_until_ready(loss)
        dispatches, events = thunk_events(trace_dir)
    if len(dispatches) < 2:
        sys.exit("the trace holds fewer than two step dispatches; try --steps 4")
    step = [e for e in events if dispatches[-2] <= e[0] < dispatches[-1]]
    if not step:
        sys.exit("no thunk events between the last two step dispatches; try more --steps")
    t0 = step[0][0]
    print(
        f"{config.name} {args.grad} {args.optimizer}: {len(step)} thunks, "
        f"{(max(e[1] for e in step) - t0) / 1e6:.2f} ms from first to last"
    )
    print(f"{'start':>8} {'end':>8} {'ms':>7} thread  thunk")
    for start, end, thread, name in step:
        if (end - start) / 1e6 >= args.min_ms:
            mark = " (matmul)" if name in matmul_names else ""
            print(
                f"{(start - t0) / 1e6:8.2f} {(end - t0) / 1e6:8.2f} {(end - start) / 1e6:7.2f} "
                f"{thread:>6}  {name}{mark}"
            )
    split = split_wall_time(step, lambda n: n in matmul_names)
    print("wall ms: " + ", ".join(f"{k} {v:.2f}" for k, v in split.items()))


if __name__ == "__main__":
    main()
