"""`mlp-jax train`: load a data set, train with fused epochs, write metrics, plots and checkpoints.

Everything lands in ``--out DIR``: ``metrics.json`` (config, per-epoch history, wall time and the final
``train_loss``, ``test_loss`` and ``test_accuracy`` or ``test_mse``), ``loss.png``,
``decision_boundary.png`` (2-D data sets), and ``checkpoint.npz`` (see `mlp_jax.training.checkpoint`), all
written atomically. ``--resume DIR --epochs N`` continues the run in DIR up to N epochs in total.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mlp_jax.core.activations import get_activation
from mlp_jax.core.errors import NonFiniteLoss, UsageError
from mlp_jax.core.losses import get_loss, prepare_targets
from mlp_jax.core.model import forward
from mlp_jax.core.params import INITS, init_params
from mlp_jax.training import distributed
from mlp_jax.training.checkpoint import CheckpointError, load_checkpoint, read_metadata, save_checkpoint
from mlp_jax.training.data import DataError, Dataset, load_dataset
from mlp_jax.training.files import write_text
from mlp_jax.training.steps import GRADS, TrainState, init_train_state, make_evaluate, make_train_epoch, num_batches

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop")
SCHEDULES = ("constant", "cosine", "warmup-cosine")
CHECKPOINT = "checkpoint.npz"
METRICS = "metrics.json"


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One training run. Fields left as None take the data set's defaults (`DATASET_DEFAULTS`)."""

    dataset: str = "digits"
    target: str | None = None  # label column (CSV) or key (NPZ) of a user file
    hidden: tuple[int, ...] | None = None  # hidden layer widths
    activation: str | None = None
    loss: str | None = None  # default: softmax_cross_entropy (classification) or mse (regression)
    init: str = "he_normal"
    optimizer: str | None = None
    lr: float | None = None
    schedule: str | None = None  # constant, cosine or warmup-cosine
    warmup_epochs: int = 0  # warmup-cosine only
    weight_decay: float = 0.0
    epochs: int | None = None
    schedule_epochs: int | None = None  # horizon of cosine schedules; default: epochs of the first run
    batch_size: int | None = None
    grad: str = "manual"
    devices: int | None = None  # data-parallel devices per process (`mlp_jax.training.distributed`); None: all local
    seed: int = 0
    patience: int | None = None  # early stopping on a validation split
    val_fraction: float = 0.1  # carved from the training split when patience is set

    def resolved(self) -> TrainConfig:
        """The config with every None replaced by the data set's default or the global default."""
        defaults = {**GLOBAL_DEFAULTS, **DATASET_DEFAULTS.get(self.dataset, {})}
        filled = {
            k: defaults[k] if getattr(self, k) is None and k in defaults else getattr(self, k)
            for k in (f.name for f in dataclasses.fields(self))
        }
        if filled["schedule_epochs"] is None:
            filled["schedule_epochs"] = filled["epochs"]
        return TrainConfig(**filled)


GLOBAL_DEFAULTS: dict[str, Any] = dict(
    hidden=(128, 128), activation="relu", optimizer="adam", lr=1e-3, epochs=50, batch_size=128, schedule="constant"
)
# Per data set, chosen so that the defaults reach the README's results without tuning.
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "xor": dict(hidden=(8,), activation="tanh", lr=0.05, epochs=300, batch_size=4),
    "moons": dict(hidden=(32, 32), lr=1e-2, epochs=100, batch_size=64),
    "circles": dict(hidden=(32, 32), lr=1e-2, epochs=100, batch_size=64),
    "spirals": dict(hidden=(64, 64), lr=1e-2, epochs=300, batch_size=64),
    "sine": dict(hidden=(64, 64), activation="tanh", lr=1e-2, epochs=200, batch_size=64),
    "digits": dict(hidden=(128, 128), lr=1e-3, epochs=50, batch_size=32),
    "iris": dict(hidden=(16,), lr=1e-2, epochs=100, batch_size=16),
    "wine": dict(hidden=(32,), lr=1e-2, epochs=60, batch_size=16),
    "breast_cancer": dict(hidden=(16,), activation="tanh", lr=1e-2, epochs=20, batch_size=32),
    "diabetes": dict(hidden=(32,), lr=1e-2, epochs=100, batch_size=32),
    "mnist1d": dict(hidden=(256, 256), lr=3e-3, schedule="cosine", epochs=60, batch_size=128),
}


# ---------------------------------------------------------------------------------------------- setup


def make_optimizer(config: TrainConfig, steps_per_epoch: int) -> optax.GradientTransformation:
    """The named optax optimizer with the named learning-rate schedule and (decoupled) weight decay."""
    total = max(1, config.schedule_epochs * steps_per_epoch)
    if config.schedule == "constant":
        lr: Any = config.lr
    elif config.schedule == "cosine":
        lr = optax.cosine_decay_schedule(config.lr, total)
    elif config.schedule == "warmup-cosine" and total < 2:  # one step: no room for a warmup, only the peak
        lr = config.lr
    elif config.schedule == "warmup-cosine":
        warmup = min(config.warmup_epochs * steps_per_epoch or max(1, total // 20), total - 1)
        lr = optax.warmup_cosine_decay_schedule(0.0, config.lr, max(warmup, 1), total)
    else:
        raise UsageError(f"unknown schedule {config.schedule!r}; expected one of {list(SCHEDULES)}")
    builders = {
        "sgd": lambda: optax.sgd(lr),
        "momentum": lambda: optax.sgd(lr, momentum=0.9),
        "nesterov": lambda: optax.sgd(lr, momentum=0.9, nesterov=True),
        "adam": lambda: optax.adam(lr),
        "adamw": lambda: optax.adamw(lr, weight_decay=config.weight_decay or 1e-4),
        "rmsprop": lambda: optax.rmsprop(lr),
    }
    if config.optimizer not in builders:
        raise UsageError(f"unknown optimizer {config.optimizer!r}; expected one of {list(OPTIMIZERS)}")
    optimizer = builders[config.optimizer]()
    if config.weight_decay and config.optimizer != "adamw":
        optimizer = optax.chain(optax.add_decayed_weights(config.weight_decay), optimizer)
    return optimizer


def targets_for_loss(data: Dataset, loss: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Train/test targets shaped for `loss`, and the number of outputs. Raises UsageError when the
    data set's labels do not fit the loss."""
    if data.task == "classification":
        k = data.num_classes
        if loss == "softmax_cross_entropy":
            return data.y_train, data.y_test, k
        if loss == "sigmoid_binary_cross_entropy" and k == 2:
            return data.y_train[:, None].astype(np.float32), data.y_test[:, None].astype(np.float32), 1
        if loss in ("mse", "sigmoid_binary_cross_entropy"):
            eye = np.eye(k, dtype=np.float32)
            return eye[data.y_train], eye[data.y_test], k
    else:
        if loss == "mse":
            return data.y_train, data.y_test, data.num_outputs
        if loss == "softmax_cross_entropy":
            raise UsageError(
                f"data set {data.name!r} is a regression task; its real-valued targets do not fit "
                "softmax_cross_entropy (use --loss mse)"
            )
        if loss == "sigmoid_binary_cross_entropy":
            raise UsageError(
                f"data set {data.name!r} is a regression task; its targets are not in [0, 1] as "
                "sigmoid_binary_cross_entropy needs (use --loss mse)"
            )
    # a registered loss: hand it the labels as they are
    return data.y_train, data.y_test, data.num_outputs


def split_validation(x: np.ndarray, y: np.ndarray, fraction: float, seed: int):
    """A seeded split of the training arrays into (train, validation); UsageError if either is empty."""
    order = np.random.default_rng(seed + 12345).permutation(len(x))
    n_val = max(1, round(fraction * len(x)))
    if n_val >= len(x):
        raise UsageError(
            f"--val-fraction {fraction} takes {n_val} of the {len(x)} training rows for validation "
            "and leaves none to train on; lower it"
        )
    val, train = order[:n_val], order[n_val:]
    return x[train], y[train], x[val], y[val]


def check_config(config: TrainConfig) -> None:
    """Raise UsageError for anything wrong in the config, before any data is loaded or work is done."""
    try:
        get_activation(config.activation)
        if config.loss is not None:
            get_loss(config.loss)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if config.init not in INITS:
        raise UsageError(f"unknown init {config.init!r}; expected one of {sorted(INITS)}")
    make_optimizer(config, steps_per_epoch=1)  # raises UsageError for an unknown optimizer or schedule
    if config.grad not in GRADS:
        raise UsageError(f"unknown grad {config.grad!r}; expected one of {list(GRADS)}")
    for name in ("epochs", "batch_size"):
        if getattr(config, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(config, name)}")
    if not config.lr > 0 or not math.isfinite(config.lr):
        raise UsageError(f"--lr must be a positive number, got {config.lr}")
    if not config.weight_decay >= 0 or not math.isfinite(config.weight_decay):
        raise UsageError(f"--weight-decay must be a finite number >= 0, got {config.weight_decay}")
    if config.warmup_epochs < 0:
        raise UsageError(f"--warmup-epochs must be >= 0, got {config.warmup_epochs}")
    if any(size < 1 for size in config.hidden or ()):
        raise UsageError(f"hidden sizes must be >= 1, got {list(config.hidden)}")
    if config.patience is not None and config.patience < 1:
        raise UsageError(f"--patience must be >= 1, got {config.patience}")
    if config.devices is not None and config.devices < 1:
        raise UsageError(f"--devices must be >= 1, got {config.devices}")
    if not 0 < config.val_fraction < 1:
        raise UsageError(f"--val-fraction must be in (0, 1), got {config.val_fraction}")


# ------------------------------------------------------------------------------------------------ run


def _to_python(metrics: dict) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items()}


def _write_json(path: Path, obj: dict) -> None:
    write_text(path, json.dumps(obj, indent=2, allow_nan=False))  # strict JSON: no NaN or Infinity tokens


def _finite_or_null(tree: Any, where: str = "") -> tuple[Any, list[str]]:
    """`tree` (dicts, lists, numbers) with every NaN or infinite float replaced by None, and the paths
    of those replaced (``history[3].test_loss``)."""
    if isinstance(tree, float) and not math.isfinite(tree):
        return None, [where]
    if isinstance(tree, dict):
        pairs = [(k, _finite_or_null(v, f"{where}.{k}" if where else k)) for k, v in tree.items()]
        return {k: v for k, (v, _) in pairs}, [p for _, (_, paths) in pairs for p in paths]
    if isinstance(tree, list):
        items = [_finite_or_null(v, f"{where}[{i}]") for i, v in enumerate(tree)]
        return [v for v, _ in items], [p for _, paths in items for p in paths]
    return tree, []


def _saved_progress(path: Path) -> dict[str, Any]:
    """The epoch count, history and best validation loss saved with the checkpoint at `path`, checked;
    UsageError naming the field for anything malformed."""
    try:
        meta = read_metadata(path)
    except CheckpointError as error:
        raise UsageError(f"cannot resume: {error}") from None

    def bad(field: str, expected: str) -> UsageError:
        return UsageError(
            f"cannot resume from {path}: metadata {field!r}: expected {expected}, found {meta.get(field)!r:.200}"
        )

    epoch, history, best = meta.get("epoch"), meta.get("history"), meta.get("best")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        raise bad("epoch", "an int >= 0")
    if (
        not isinstance(history, list)
        or len(history) != epoch
        or not all(
            isinstance(h, dict) and all(isinstance(k, str) and _is_number(v) for k, v in h.items()) for h in history
        )
    ):
        raise bad("history", f"a list of {epoch} dicts of numbers, one per epoch")
    if not (
        isinstance(best, dict)
        and set(best) == {"val_loss", "epoch"}
        and isinstance(best["epoch"], int)
        and (best["val_loss"] is None or _is_number(best["val_loss"]))
    ):
        raise bad("best", "{'val_loss': a number or None, 'epoch': an int}")
    if best["val_loss"] is not None and not math.isfinite(best["val_loss"]):  # older runs saved inf for "none"
        best = {"val_loss": None, "epoch": best["epoch"]}
    return {"epoch": epoch, "history": history, "best": best}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def config_from_saved(saved: Any, where: str) -> TrainConfig:
    """A `TrainConfig` from the dict a checkpoint saved, every field checked against its annotation
    (a str, int, float, or tuple of ints, or None where the field allows it); UsageError otherwise."""
    if not isinstance(saved, dict):
        raise UsageError(f"cannot resume from {where}: metadata 'config': expected a dict, found {saved!r:.200}")
    fields = {f.name: str(f.type) for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(saved) - set(fields))
    if unknown:
        raise UsageError(f"cannot resume from {where}: metadata 'config' has unknown fields {unknown}")
    checks = {
        "str": lambda v: isinstance(v, str),
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "float": _is_number,
        "tuple[int, ...]": lambda v: isinstance(v, (list, tuple)) and all(checks["int"](s) for s in v),
    }
    values = {}
    for name, value in saved.items():
        kind = fields[name].replace(" | None", "")
        if not ((value is None and "None" in fields[name]) or (value is not None and checks[kind](value))):
            raise UsageError(
                f"cannot resume from {where}: metadata 'config' field {name!r}: expected "
                f"{fields[name]}, found {value!r:.200}"
            )
        values[name] = tuple(value) if kind == "tuple[int, ...]" and value is not None else value
    return TrainConfig(**values)


def fit(config: TrainConfig, out: Path, *, resume: bool = False, quiet: bool = False) -> dict[str, Any]:
    """Train as `config` says, writing into `out`; continue the run in `out` when `resume` is set.

    Returns the metrics written to ``metrics.json``. Raises UsageError for bad input (before any
    training) and NonFiniteLoss when a loss turns NaN or inf (the last good checkpoint is kept).
    """
    start = time.perf_counter()
    out = Path(out)
    config = config.resolved()
    check_config(config)
    if out.exists() and not out.is_dir():
        raise UsageError(f"output directory {str(out)!r} exists and is not a directory")
    if resume:  # read what was saved, and check it, before any data is loaded
        saved = _saved_progress(out / CHECKPOINT)
        if saved["epoch"] >= config.epochs:
            raise UsageError(
                f"nothing to do: the run in {out} already has {saved['epoch']} epochs "
                f"(ask for more with --epochs, now {config.epochs})"
            )
    try:
        data = load_dataset(config.dataset, target=config.target, seed=config.seed)
    except DataError as error:
        raise UsageError(str(error)) from None
    loss = config.loss or ("softmax_cross_entropy" if data.task == "classification" else "mse")
    config = dataclasses.replace(config, loss=loss)
    y_train, y_test, n_out = targets_for_loss(data, loss)
    x_train = data.x_train
    x_val = y_val = None
    if config.patience is not None:
        x_train, y_train, x_val, y_val = split_validation(x_train, y_train, config.val_fraction, config.seed)

    sizes = [x_train.shape[1], *config.hidden, n_out]
    batch_size = min(config.batch_size, len(x_train))
    try:  # data parallel: params replicated, every minibatch split over the mesh's devices
        mesh = distributed.make_mesh(config.devices)
        distributed.check_batch_size(batch_size, mesh)
    except ValueError as error:
        raise UsageError(str(error)) from None
    optimizer = make_optimizer(config, num_batches(len(x_train), batch_size))
    key = jax.random.key(config.seed)
    init_key, train_key = jax.random.split(key)
    state = init_train_state(init_params(init_key, sizes, init=config.init), optimizer, train_key)
    history: list[dict] = []
    best: dict[str, Any] = {"val_loss": None, "epoch": 0}  # None until a validation loss is seen
    epochs_done = 0
    out.mkdir(parents=True, exist_ok=True)
    if resume:
        try:
            state, _ = load_checkpoint(out / CHECKPOINT, state)
        except CheckpointError as error:
            raise UsageError(str(error)) from None
        history, best, epochs_done = saved["history"], saved["best"], saved["epoch"]
    sharded = mesh.size > 1 or jax.process_count() > 1  # one device: the plain, unsharded path
    if sharded:
        state = distributed.replicate(state, mesh)

    arrays = [jnp.asarray(a) for a in (x_train, y_train, data.x_test, y_test)]
    x_tr, y_tr, x_te, y_te = arrays
    # Check targets against the loss once, eagerly, so bad labels are a clear error, not a NaN.
    try:
        for y_split in (y_tr, y_te):
            prepare_targets(loss, y_split, y_split.shape[0], n_out, jnp.float32)
    except (ValueError, TypeError) as error:
        raise UsageError(f"labels do not fit loss {loss!r}: {error}") from None
    grad: Any = config.grad
    if x_val is not None:
        x_val, y_val = jnp.asarray(x_val), jnp.asarray(y_val)
    if sharded:
        x_tr, y_tr = (distributed.place_dataset(a, mesh) for a in (x_train, y_train))
        x_te, y_te = distributed.replicate((x_te, y_te), mesh)
        if x_val is not None:
            x_val, y_val = distributed.replicate((x_val, y_val), mesh)
        grad = distributed.sharded_gradient_fn(config.grad, mesh, activation=config.activation, loss=loss)
    train_epoch = make_train_epoch(optimizer, activation=config.activation, loss=loss, grad=grad, batch_size=batch_size)
    evaluate = make_evaluate(activation=config.activation, loss=loss, classification=data.task == "classification")

    progress = _progress(range(epochs_done, config.epochs), quiet, initial=epochs_done, total=config.epochs)
    stopped_early = False
    for epoch in progress:
        state, losses = train_epoch(state, x_tr, y_tr)
        losses = np.asarray(losses)
        if not np.isfinite(losses).all():
            bad = int(np.argmax(~np.isfinite(losses)))
            raise NonFiniteLoss(
                f"non-finite loss {losses[bad]} at epoch {epoch + 1}, step {bad + 1} of {len(losses)} "
                f"(update {int(state.step) - len(losses) + bad + 1}); the last good checkpoint is kept in "
                f"{out / CHECKPOINT}"
            )
        record = {"epoch": epoch + 1, "step": int(state.step), "batch_loss_mean": float(losses.mean())}
        for split, (xs, ys) in {"train": (x_tr, y_tr), "test": (x_te, y_te)}.items():
            record.update({f"{split}_{k}": v for k, v in _to_python(evaluate(state.params, xs, ys)).items()})
        if x_val is not None:
            record.update({f"val_{k}": v for k, v in _to_python(evaluate(state.params, x_val, y_val)).items()})
            if best["val_loss"] is None or record["val_loss"] < best["val_loss"]:
                best = {"val_loss": record["val_loss"], "epoch": epoch + 1}
        record["elapsed_s"] = time.perf_counter() - start
        history.append(record)
        if distributed.is_primary():  # one writer; every process holds the same replicated state
            save_checkpoint(
                out / CHECKPOINT,
                state,
                {"config": dataclasses.asdict(config), "epoch": epoch + 1, "history": history, "best": best},
            )
        if hasattr(progress, "set_postfix"):
            progress.set_postfix(
                {
                    k: f"{v:.4f}"
                    for k, v in record.items()
                    if k.endswith(("loss", "accuracy")) and not k.startswith("batch")
                }
            )
        if config.patience is not None and epoch + 1 - best["epoch"] >= config.patience:
            stopped_early = True
            break
    if hasattr(progress, "close"):
        progress.close()

    final = history[-1]
    metrics: dict[str, Any] = {
        "config": dataclasses.asdict(config),
        "dataset": {
            "name": data.name,
            "task": data.task,
            "num_classes": data.num_classes,
            "n_train": len(x_train),
            "n_test": len(data.x_test),
            "n_val": 0 if x_val is None else len(x_val),
            "features": int(x_train.shape[1]),
        },
        "layer_sizes": sizes,
        "epochs": final["epoch"],
        "steps": final["step"],
        "history": history,
        "train_loss": final["train_loss"],
        "test_loss": final["test_loss"],
        "stopped_early": stopped_early,
        "best": best,
        "wall_time_s": time.perf_counter() - start,
        "device": str(jax.devices()[0]),
        "devices": mesh.size,
        "processes": jax.process_count(),
        "versions": {"jax": jax.__version__, "optax": optax.__version__},
        "checkpoint": CHECKPOINT,
    }
    if "test_accuracy" in final:
        metrics["train_accuracy"] = final["train_accuracy"]
        metrics["test_accuracy"] = final["test_accuracy"]
    if data.task == "regression":
        metrics["test_mse"] = final["test_loss"] if loss == "mse" else None
        if data.target_std is not None:  # the same error in the targets' original units
            std = data.target_std.astype(np.float64)  # in float64: big targets overflow float32 here
            predicted = np.asarray(forward(state.params, x_te, config.activation), np.float64) * std
            metrics["test_mse_original_units"] = float(np.mean((predicted - np.asarray(y_te, np.float64) * std) ** 2))
    if distributed.is_primary():
        metrics, not_finite = _finite_or_null(metrics)
        if not_finite and not quiet:
            print(
                f"mlp-jax train: warning: {', '.join(not_finite)} not finite (null in {METRICS}); the test "
                "split may hold values far outside the training split's range",
                file=sys.stderr,
            )
        _write_json(out / METRICS, metrics)
        _write_plots(out, history, data, state, config, loss)
    return metrics


def _progress(iterable, quiet: bool, **kwargs):
    if quiet:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc="epochs", unit="epoch", dynamic_ncols=True, **kwargs)


def _write_plots(out: Path, history, data: Dataset, state: TrainState, config: TrainConfig, loss: str) -> None:
    from mlp_jax.training.plots import plot_decision_boundary, plot_history

    plot_history(history, out / "loss.png", title=f"{data.name}: {config.activation} MLP {list(config.hidden)}")
    if data.x_train.shape[1] == 2 and data.task == "classification":
        params = jax.tree.map(np.asarray, state.params)  # on the host: no eager ops on global arrays

        def predict(grid: np.ndarray) -> np.ndarray:
            logits = np.asarray(forward(params, jnp.asarray(grid), config.activation))
            return (logits[:, 0] > 0).astype(int) if logits.shape[1] == 1 else logits.argmax(1)

        x = np.concatenate([data.x_train, data.x_test])
        y = np.concatenate([data.y_train, data.y_test])
        plot_decision_boundary(predict, x, y, out / "decision_boundary.png", title=f"{data.name}: decision boundary")
