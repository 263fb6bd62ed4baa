"""``mlp-jax train``: the flags of a training run, and the run itself (`mlp_jax.training.fit`)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from mlp_jax.core.errors import CheckpointError, NonFiniteLoss, TrainingInterrupted, UsageError
from mlp_jax.core.params import check_size_limits
from mlp_jax.training import distributed
from mlp_jax.training.checkpoint import read_metadata
from mlp_jax.training.config import OPTIMIZERS, SCHEDULES, TrainConfig, config_from_saved
from mlp_jax.training.fit import fit
from mlp_jax.training.rundir import CHECKPOINT, METRICS


def _hidden(text: str) -> tuple[int, ...]:
    if text.strip() in ("", "none"):
        return ()
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive integers like 128,128, got {text!r}"
        ) from None
    if any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"hidden sizes must be >= 1, got {text!r}")
    try:  # the widths alone; the whole net, with its input and output, is checked once the data is known
        check_size_limits(sizes, "hidden")
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return sizes


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("--dataset", default=None, help="a built-in name (digits, xor, spirals, ...), PATH.csv, PATH.npz or an IDX dir")
    a("--target", default=None, help="label column (CSV) or key (NPZ) of your own file")
    a("--task", choices=("classification", "regression"), default=None, help="default: inferred from the target")
    a("--hidden", type=_hidden, default=None, help="hidden layer widths, e.g. 128,128")
    a("--activation", default=None)
    a("--loss", default=None, help="default: softmax_cross_entropy or mse, from the data set")
    a("--init", default=None, help="weight init (default he_normal)")
    a("--optimizer", default=None, help=f"one of {', '.join(OPTIMIZERS)}")
    a("--lr", type=float, default=None, help="learning rate (default: the data set's; 0.3 with --optimizer kfac)")
    a("--schedule", default=None, help=f"one of {', '.join(SCHEDULES)} (default: constant)")
    a("--warmup-epochs", type=int, default=None, help="warmup of warmup-cosine (default 0: 5 %% of the steps)")
    a("--weight-decay", type=float, default=None, help="decoupled weight decay (default 0)")
    a("--kfac-damping", type=float, default=None, help="--optimizer kfac: damping of kron(a, g) (default 1e-3)")
    a("--kfac-decay", type=float, default=None, help="--optimizer kfac: factors' moving average (default 0.95)")
    a("--kfac-update-every", type=int, default=None, help="--optimizer kfac: steps between inversions (default 10)")
    a("--dropout", type=float, default=None, metavar="RATE", help="dropout rate after each hidden layer, in [0, 1)")
    a("--epochs", type=int, default=None, help="total epochs (with --resume: up to this many in total)")
    a("--batch-size", type=int, default=None)
    a("--grad", default=None, help="manual (hand-written backprop, the default) or autodiff (jax.grad)")
    a("--seed", type=int, default=None, help="seed of the init, the shuffles and the splits (default 0)")
    a("--patience", type=int, default=None, help="stop after K epochs without a better validation loss")
    a(
        "--restore-best",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="with --patience: end with the weights of the best validation loss (the default); "
        "--no-restore-best keeps the last",
    )
    a("--val-fraction", type=float, default=None, help="validation share with --patience (default 0.1)")
    a("--out", default=None, help="output directory (default runs/<dataset>)")
    a("--overwrite", action="store_true", help="replace the run already in --out (refused otherwise)")
    a(
        "--resume",
        default=None,
        metavar="DIR",
        help="continue the run in DIR with its saved config; an option that contradicts it is an error, while "
        "--epochs, --patience, --restore-best/--no-restore-best, --devices, --quiet and the multi-host options "
        "may change",
    )
    a("--quiet", action="store_true", help="print nothing but errors")
    a("--devices", type=int, default=None, help="data-parallel devices per process (default: all local devices)")
    a(
        "--coordinator",
        default=None,
        metavar="HOST:PORT",
        help="multi-host: address of process 0 (or $JAX_COORDINATOR_ADDRESS)",
    )
    a("--num-processes", type=int, default=None, help="multi-host: number of processes (or $JAX_NUM_PROCESSES)")
    a("--process-id", type=int, default=None, help="multi-host: this process's index (or $JAX_PROCESS_ID)")


def run_cli(args: argparse.Namespace) -> int:
    try:  # before anything else touches JAX; a no-op without flags or environment variables
        distributed.initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    except ValueError as error:
        raise UsageError(str(error)) from None
    args.quiet = args.quiet or not distributed.is_primary()  # one process prints
    if args.resume is not None and args.overwrite:
        raise UsageError("--overwrite starts a new run; --resume continues one: pass one of them")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    given = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    if args.resume is not None:
        out = Path(args.resume)
        if args.out is not None and Path(args.out).resolve() != out.resolve():
            raise UsageError(
                f"--out {args.out} contradicts --resume {args.resume}: a run continues in its own directory"
            )
        try:
            saved = read_metadata(out / CHECKPOINT).get("config")
        except CheckpointError as error:
            raise UsageError(f"cannot resume: {error}") from None
        # the saved config with the options given over it: fit refuses those that contradict it
        config = dataclasses.replace(config_from_saved(saved, str(out / CHECKPOINT)), **given)
    else:
        given.setdefault("dataset", "digits")
        config = TrainConfig(**given)
        out = Path(args.out) if args.out else Path("runs") / Path(config.dataset).stem
    try:
        metrics = fit(config, out, resume=args.resume is not None, quiet=args.quiet, overwrite=args.overwrite)
    except NonFiniteLoss as error:
        print(f"mlp-jax train: {error}", file=sys.stderr)
        return 1
    except TrainingInterrupted as interrupt:  # Ctrl-C or SIGTERM: what was kept, and 128 + SIGINT
        print(f"mlp-jax train: {interrupt}", file=sys.stderr)
        return 130
    summary = {k: metrics[k] for k in ("train_loss", "test_loss", "test_accuracy", "test_mse") if k in metrics}
    if not args.quiet:
        text = ", ".join(f"{k} {v:.4f}" for k, v in summary.items() if v is not None)
        print(f"{metrics['dataset']['name']}: {metrics['epochs']} epochs in {metrics['wall_time_s']:.1f} s; {text}")
        print(
            f"results in {out}/ ({METRICS}, loss.png, {CHECKPOINT}"
            + "".join(f", {name}" for name in ("confusion.png", "decision_boundary.png") if (out / name).exists())
            + ")"
        )
    return 0
