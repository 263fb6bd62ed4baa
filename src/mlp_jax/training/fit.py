"""`mlp-jax train`: load a data set, train with fused epochs, write metrics, plots and checkpoints.

Everything lands in ``--out DIR``: ``metrics.json`` (config, per-epoch history, wall time and the final
``train_loss``, ``test_loss`` and ``test_accuracy`` or ``test_mse``), ``loss.png``,
``decision_boundary.png`` (2-D data sets), and ``checkpoint.npz`` (see `mlp_jax.training.checkpoint`), all
written atomically. ``--resume DIR --epochs N`` continues the run in DIR up to N epochs in total; a new run
refuses a DIR that holds one unless ``overwrite``.

`fit` runs five steps: check the config and the output directory (and, to resume, the saved progress) before
any data is loaded; load the data and shape its targets for the loss; build the state (fresh, or loaded from
the checkpoint) and place the arrays on the devices; run the epochs, checkpointing after each; then write the
metrics and plots (of the best validation epoch's params with ``restore_best``, `mlp_jax.training.results`).
Ctrl-C or SIGTERM raises `TrainingInterrupted`, saying which checkpoint is kept. The config lives in
`mlp_jax.training.config`, the run directory's files in `mlp_jax.training.rundir`; their public names are
importable from here too.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mlp_jax.core.errors import CheckpointError, NonFiniteLoss, TrainingInterrupted, UsageError
from mlp_jax.core.params import check_layer_sizes, init_params
from mlp_jax.core.validation import check_targets
from mlp_jax.training import distributed
from mlp_jax.training.checkpoint import load_checkpoint, save_checkpoint
from mlp_jax.training.config import (
    OPTIMIZERS,
    SCHEDULES,
    ResolvedConfig,
    TrainConfig,
    check_config,
    config_from_saved,
    make_optimizer,
)
from mlp_jax.training.files import remove_stale_temporaries
from mlp_jax.training.guards import numpy_warnings_silenced, terminate_as_interrupt
from mlp_jax.training.results import Run, final_params, run_metrics
from mlp_jax.training.rundir import (
    CHECKPOINT,
    METRICS,
    check_out_dir,
    check_saved_widths,
    clear_run,
    dataset_sha256,
    resumed_config,
    saved_epoch,
    saved_progress,
    write_metrics,
    write_plots,
)
from mlp_jax.training.splits import Splits, load_splits, split_validation, targets_for_loss
from mlp_jax.training.steps import TrainState, init_train_state, make_evaluate, make_train_epoch, num_batches

__all__ = [
    "CHECKPOINT",
    "METRICS",
    "OPTIMIZERS",
    "SCHEDULES",
    "NonFiniteLoss",
    "ResolvedConfig",
    "TrainConfig",
    "check_config",
    "config_from_saved",
    "fit",
    "make_optimizer",
    "split_validation",
    "targets_for_loss",
]

Array = jax.Array


# ------------------------------------------------------------------------------------------- the data


# ------------------------------------------------------------------------------------ the state, placed


def _initial_state(
    config: ResolvedConfig,
    sizes: list[int],
    optimizer: optax.GradientTransformation,
    out: Path,
    resume: bool,
    with_best: bool,
) -> tuple[TrainState, Any]:
    """A fresh state from the seed, or, to resume, the one in the checkpoint, checked against the shapes a
    fresh one would have before anything is allocated (`out` is created first); and the best epoch's
    params saved beside it (`with_best`), else None."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"cannot create output directory {str(out)!r}: {error.strerror or error}") from None

    def fresh() -> TrainState:
        init_key, train_key = jax.random.split(jax.random.key(config.seed))
        return init_train_state(init_params(init_key, sizes, init=config.init), optimizer, train_key)

    if not resume:
        return fresh(), None
    template: Any = jax.eval_shape(fresh)
    if with_best:  # saved with a validation split: the best epoch's params beside the state
        template = {"state": template, "best_params": template.params}
    try:
        loaded, _ = load_checkpoint(out / CHECKPOINT, template)
    except CheckpointError as error:
        raise UsageError(str(error)) from None
    return (loaded["state"], loaded["best_params"]) if with_best else (loaded, None)


def _place_arrays(splits: Splits, mesh: jax.sharding.Mesh, sharded: bool) -> dict[str, tuple[Array, Array]]:
    """The (x, y) of every split as device arrays, their targets checked against the loss once, eagerly, so
    bad labels are a clear error, not a NaN. Sharded: the training set placed over the mesh, the rest
    replicated."""
    x_tr, y_tr, x_te, y_te = (
        jnp.asarray(a) for a in (splits.x_train, splits.y_train, splits.data.x_test, splits.y_test)
    )
    try:
        for y_split in (y_tr, y_te):
            check_targets(y_split, splits.loss, splits.n_out)
    except (ValueError, TypeError) as error:
        raise UsageError(f"labels do not fit loss {splits.loss!r}: {error}") from None
    arrays = {"train": (x_tr, y_tr), "test": (x_te, y_te)}
    if splits.x_val is not None and splits.y_val is not None:
        arrays["val"] = (jnp.asarray(splits.x_val), jnp.asarray(splits.y_val))
    if sharded:
        train = (distributed.place_dataset(splits.x_train, mesh), distributed.place_dataset(splits.y_train, mesh))
        arrays = {"train": train} | {k: distributed.replicate(v, mesh) for k, v in arrays.items() if k != "train"}
    return arrays


def _build_run(config: ResolvedConfig, splits: Splits, out: Path, saved: dict[str, Any] | None) -> Run:
    """The mesh, optimizer and state, the arrays placed, and the compiled epoch and evaluation."""
    sizes = [splits.x_train.shape[1], *config.hidden, splits.n_out]
    batch_size = min(config.batch_size, len(splits.x_train))
    try:  # data parallel: params replicated, every minibatch split over the mesh's devices
        check_layer_sizes(sizes)  # the size limits, before anything is allocated
        mesh = distributed.make_mesh(config.devices)
        distributed.check_batch_size(batch_size, mesh)
    except ValueError as error:
        raise UsageError(str(error)) from None
    optimizer = make_optimizer(config, num_batches(len(splits.x_train), batch_size))
    with_best = saved is not None and saved.get("best_params") is True
    state, best_params = _initial_state(config, sizes, optimizer, out, saved is not None, with_best)
    sharded = mesh.size > 1 or jax.process_count() > 1  # one device: the plain, unsharded path
    if sharded and config.optimizer == "kfac":
        raise UsageError(f"--optimizer kfac trains on one device; this run has {mesh.size}: pass --devices 1")
    if sharded:
        state = distributed.replicate(state, mesh)
        best_params = None if best_params is None else distributed.replicate(best_params, mesh)
    arrays = _place_arrays(splits, mesh, sharded)
    grad: Any = config.grad
    dropout = config.dropout  # in the epoch's updates only: evaluation never drops
    if sharded:  # the sharded source applies the dropout itself
        grad = distributed.sharded_gradient_fn(
            config.grad, mesh, activation=config.activation, loss=splits.loss, dropout=dropout
        )
        dropout = 0.0
    train_epoch = make_train_epoch(
        optimizer, activation=config.activation, loss=splits.loss, grad=grad, batch_size=batch_size, dropout=dropout
    )
    classification = splits.data.task == "classification"
    evaluate = make_evaluate(activation=config.activation, loss=splits.loss, classification=classification)
    if saved is None:
        saved = {"history": [], "best": {"val_loss": None, "epoch": 0}, "epoch": 0}
    return Run(
        config,
        mesh,
        sizes,
        train_epoch,
        evaluate,
        arrays,
        state,
        saved["history"],
        saved["best"],
        saved["epoch"],
        best_params=best_params,
    )


# ----------------------------------------------------------------------------------------- the epochs


def _progress(iterable: range, quiet: bool, **kwargs: Any) -> Any:
    """`iterable` itself when `quiet`, else wrapped in a tqdm progress bar."""
    if quiet:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc="epochs", unit="epoch", dynamic_ncols=True, **kwargs)


def _finite_losses(device_losses: Array, epoch: int, state: TrainState, out: Path) -> np.ndarray:
    """The epoch's minibatch losses on the host; NonFiniteLoss naming the first that is NaN or infinite."""
    losses = np.asarray(device_losses)
    if not np.isfinite(losses).all():
        bad = int(np.argmax(~np.isfinite(losses)))
        kept = saved_epoch(out)
        raise NonFiniteLoss(
            f"non-finite loss {losses[bad]} at epoch {epoch + 1}, step {bad + 1} of {len(losses)} "
            f"(update {int(state.step) - len(losses) + bad + 1}); "
            + (
                "no checkpoint was written"
                if kept is None
                else f"the last good checkpoint is kept in {out / CHECKPOINT} (epoch {kept})"
            )
        )
    return losses


def _record(run: Run, epoch: int, losses: np.ndarray, start: float) -> dict[str, Any]:
    """One epoch's line of the history: its step count, mean minibatch loss, every split's metrics, and the
    seconds since the run started."""
    record: dict[str, Any] = {"epoch": epoch + 1, "step": int(run.state.step), "batch_loss_mean": float(losses.mean())}
    for split, (xs, ys) in run.arrays.items():
        record.update({f"{split}_{k}": float(v) for k, v in run.evaluate(run.state.params, xs, ys).items()})
    record["elapsed_s"] = time.perf_counter() - start
    return record


def _train(run: Run, out: Path, quiet: bool, start: float, where: _Where) -> bool:
    """Run the epochs left, checkpointing after each (process 0 writes); True when early stopping ended it.
    `where` follows the epoch in progress."""
    progress = _progress(
        range(run.epochs_done, run.config.epochs), quiet, initial=run.epochs_done, total=run.config.epochs
    )
    try:
        stopped_early = _epochs(run, out, start, where, progress)
    finally:
        if hasattr(progress, "close"):
            progress.close()
    where.finished = True
    return stopped_early


def _save(run: Run, out: Path, epochs: int) -> None:
    """The checkpoint after `epochs` epochs: the state, and with a validation split the best epoch's
    params beside it (``{"state": ..., "best_params": ...}``), with the progress as metadata."""
    with_best = run.best_params is not None
    saved = {
        "config": dataclasses.asdict(run.config),
        "epoch": epochs,
        "history": run.history,
        "best": run.best,
        "best_params": with_best,
        "dataset_sha256": run.dataset_sha256,
    }
    tree = {"state": run.state, "best_params": run.best_params} if with_best else run.state
    save_checkpoint(out / CHECKPOINT, tree, saved)


def _epochs(run: Run, out: Path, start: float, where: _Where, progress: Any) -> bool:
    """The loop of `_train`."""
    config = run.config
    for epoch in progress:
        where.epoch = epoch + 1
        run.state, losses = run.train_epoch(run.state, *run.arrays["train"])
        record = _record(run, epoch, _finite_losses(losses, epoch, run.state, out), start)
        if "val_loss" in record and (run.best["val_loss"] is None or record["val_loss"] < run.best["val_loss"]):
            run.best = {"val_loss": record["val_loss"], "epoch": epoch + 1}
            run.best_params = jax.tree.map(jnp.copy, run.state.params)  # the next epoch donates the state's
        run.history.append(record)
        if distributed.is_primary():  # one writer; every process holds the same replicated state
            _save(run, out, epoch + 1)
        if hasattr(progress, "set_postfix"):
            progress.set_postfix(
                {
                    k: f"{v:.4f}"
                    for k, v in record.items()
                    if k.endswith(("loss", "accuracy")) and not k.startswith("batch")
                }
            )
        if config.patience is not None and epoch + 1 - run.best["epoch"] >= config.patience:
            return True
    return False


# ------------------------------------------------------------------------------------------------ fit


def _check_before_loading(
    config: ResolvedConfig, out: Path, *, resume: bool, overwrite: bool, started: float
) -> dict[str, Any] | None:
    """Raise UsageError for a bad config or output directory, or for a run that cannot be resumed, before
    any data is loaded; the saved progress when resuming, else None. Temporaries that a killed run left
    in `out` (written before `started`, a `time.time()`) are removed."""
    check_config(config)
    check_out_dir(out, resume=resume, overwrite=overwrite)
    remove_stale_temporaries(out, older_than=started)
    if not resume:
        return None
    check_saved_widths(out / CHECKPOINT, config.hidden)
    saved = saved_progress(out / CHECKPOINT)
    if saved["epoch"] >= config.epochs:
        raise UsageError(
            f"nothing to do: the run in {out} already has {saved['epoch']} epochs "
            f"(ask for more with --epochs, now {config.epochs})"
        )
    return saved


def fit(
    config: TrainConfig, out: Path, *, resume: bool = False, quiet: bool = False, overwrite: bool = False
) -> dict[str, Any]:
    """Train as `config` says, writing into `out`; continue the run in `out` when `resume` is set.

    A new run refuses a directory that already holds one (a checkpoint or metrics) unless `overwrite`
    is set; the old run's files are then removed when training starts. Returns the metrics written to
    ``metrics.json``. Raises UsageError for bad input (before any training) and NonFiniteLoss when a
    loss turns NaN or inf (the last good checkpoint, if any, is kept).
    """
    out, where = Path(out), _Where()
    with numpy_warnings_silenced(quiet), terminate_as_interrupt():
        try:
            return _fit(config, out, where, resume=resume, quiet=quiet, overwrite=overwrite)
        except KeyboardInterrupt:
            kept = saved_epoch(out)
            raise TrainingInterrupted(
                (
                    "interrupted before training started"
                    if where.epoch is None
                    else f"interrupted at epoch {where.epoch}"
                )
                + ("" if not where.finished else ", writing the results")
                + (
                    "; no checkpoint written"
                    if kept is None
                    else f"; checkpoint of epoch {kept} kept in {out / CHECKPOINT}"
                )
            ) from None


@dataclasses.dataclass
class _Where:
    """How far a run got, for the message of an interrupt: the epoch in progress, and whether all are done."""

    epoch: int | None = None
    finished: bool = False


def _fit(
    config: TrainConfig, out: Path, where: _Where, *, resume: bool, quiet: bool, overwrite: bool
) -> dict[str, Any]:
    start = time.perf_counter()
    if resume and overwrite:
        raise UsageError("overwrite=True starts a new run; resume=True continues one: ask for one of them")
    if resume:  # the saved config, with what may change on resume; UsageError for what contradicts it
        config = resumed_config(config, out)
    resolved = config.resolved()
    sha256 = dataset_sha256(resolved.dataset)
    if sha256 is not None:  # a user's file: its resolved path, so that the run resumes from anywhere
        resolved = dataclasses.replace(resolved, dataset=str(Path(resolved.dataset).resolve()))
    saved = _check_before_loading(resolved, out, resume=resume, overwrite=overwrite, started=time.time())
    resolved, splits = load_splits(resolved)
    run = _build_run(resolved, splits, out, saved)
    run.dataset_sha256 = sha256
    if overwrite:
        clear_run(out)
    stopped_early = _train(run, out, quiet, start, where)
    metrics = run_metrics(run, splits, stopped_early, start)
    if distributed.is_primary():
        metrics = write_metrics(out, metrics, quiet=quiet)
        write_plots(out, run.history, splits.data, final_params(run)[0], run.config)
    return metrics
