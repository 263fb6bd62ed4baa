"""``mlp-jax bench``: which configs, peers and measurements to run, and where the results go
(`mlp_jax.bench.run`)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from mlp_jax.bench.configs import QUICK_GRID, STANDARD, grid_configs, parse_config
from mlp_jax.bench.peaks import peak_shapes_for
from mlp_jax.bench.peers import BENCH_EXTRA, PEERS, missing_packages
from mlp_jax.bench.run import run
from mlp_jax.core.errors import UsageError


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="bench-out", help="output directory (default bench-out)")
    parser.add_argument("--quick", action="store_true", help="a short run (< 3 minutes on 2 cores)")
    parser.add_argument(
        "--configs", default=None, help="comma-separated: small, medium, large, xor, grid, or DEPTHxWIDTHxBATCH[:DTYPE]"
    )
    parser.add_argument("--repeats", type=int, default=None, help="timed samples per measurement")
    parser.add_argument("--min-sample", type=float, default=None, help="seconds per sample (calls repeated)")
    parser.add_argument("--peers", default=None, help=f"comma-separated subset of {','.join(PEERS)}, or none")
    parser.add_argument(
        "--curvature-configs",
        default=None,
        help="configs of the curvature stage (each quantity against a gradient, autodiff and BackPACK), or none; "
        "default: small, medium and large among --configs (--quick: small)",
    )
    parser.add_argument("--no-peaks", action="store_true", help="skip the matmul peak measurements")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-RSS donation processes")
    parser.add_argument("--no-digits", action="store_true", help="skip the digits time-to-accuracy run")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument(
        "--malloc",
        choices=("keep", "default"),
        default="keep",
        help="keep: reuse freed host memory (mlp_jax.bench.hostmem) in this and every worker process, "
        "default: glibc's own settings (default keep)",
    )


def _peers(flag: str | None) -> tuple[str, ...]:
    """The peers to time. Named in `flag`: each must be installed, or a UsageError names the missing package
    and the extra, before any timing. By default: every peer whose packages are installed, the others left
    out with a note on stderr."""
    if flag is None:
        missing = {peer: missing_packages(peer) for peer in PEERS}
        left_out = [name for names in missing.values() for name in names]
        if left_out:
            print(
                f"mlp-jax bench: peers left out, their packages not installed: {', '.join(left_out)} ({BENCH_EXTRA})",
                file=sys.stderr,
            )
        return tuple(peer for peer in PEERS if not missing[peer])
    peers = () if flag == "none" else tuple(p.strip() for p in flag.split(",") if p.strip())
    unknown = [p for p in peers if p not in PEERS]
    if unknown:
        raise UsageError(f"unknown peers {unknown}; expected a subset of {list(PEERS)} or none")
    for peer in peers:
        for name in missing_packages(peer):
            raise UsageError(
                f"--peers {peer} needs the package {name}, which is not installed: {BENCH_EXTRA} installs it"
            )
    return peers


def run_cli(args: argparse.Namespace) -> int:
    quick = args.quick
    repeats = args.repeats if args.repeats is not None else (3 if quick else 7)
    min_sample = args.min_sample if args.min_sample is not None else (0.02 if quick else 0.1)
    if repeats < 1:
        raise UsageError(f"--repeats must be >= 1, got {repeats}")
    if min_sample <= 0:
        raise UsageError(f"--min-sample must be > 0, got {min_sample}")
    if args.configs is None:
        specs = ["small", "medium", "xor", "large", *QUICK_GRID] if quick else [*STANDARD, "grid"]
    else:
        specs = [s.strip() for s in args.configs.split(",") if s.strip()]
    configs = []
    for spec in specs:
        configs += grid_configs() if spec == "grid" else [parse_config(spec)]
    if not configs:
        raise UsageError("--configs is empty")
    peers = _peers(args.peers)
    curvature = _curvature_configs(args.curvature_configs, configs, quick)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a directory")
    # On a GPU, JAX grabs 75 % of its memory at start by default; the bench's worker processes (peers,
    # memory, digits) run while it holds that, so every process here allocates as it goes instead.
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    if args.malloc == "keep":  # before JAX starts its threads; the workers inherit the environment
        from mlp_jax.bench.hostmem import MALLOC_ENV, keep_freed_memory

        keep_freed_memory()
        os.environ.update(MALLOC_ENV)
    import jax

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    run(
        out,
        configs,
        repeats=repeats,
        min_sample=min_sample,  # every config: all four kinds
        peaks=not args.no_peaks,
        peers=peers,
        peer_rounds=1 if quick else 3,
        peer_configs=("small", "medium") if quick else ("small", "medium", "large"),
        curvature_configs=curvature,
        peak_shapes=peak_shapes_for(jax.default_backend(), quick),
        memory=not args.no_memory,
        memory_config="large",
        digits=not args.no_digits,
        plots=not args.no_plots,
        log=log,
        command=getattr(args, "command_line", None),
    )
    print((out / "results.md").read_text())
    return 0


def _curvature_configs(spec: str | None, configs: list, quick: bool) -> list:
    """The curvature stage's configs: those `spec` names (``none``: no stage), or by default the standard
    small, medium and large among the run's `configs` (small alone for --quick)."""
    if spec is None:
        names = ("small",) if quick else ("small", "medium", "large")
        return [c for c in configs if c.name in names and c == STANDARD[c.name]]
    if spec == "none":
        return []
    chosen = [parse_config(s.strip()) for s in spec.split(",") if s.strip()]
    if not chosen:
        raise UsageError("--curvature-configs is empty; expected configs or none")
    return chosen
