"""The config of one training run (`TrainConfig`), its defaults, its checks, and the optimizer it names.

A `TrainConfig` may leave fields as None to take the data set's defaults; `TrainConfig.resolved` fills them
in and returns a `ResolvedConfig`, the same fields with those filled in typed as such, which is what the
run (`mlp_jax.training.fit`) works with.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import optax

from mlp_jax.core.activations import get_activation
from mlp_jax.core.errors import UsageError
from mlp_jax.core.losses import get_loss
from mlp_jax.core.params import INITS
from mlp_jax.second_order.kfac import kfac
from mlp_jax.training.steps import GRADS

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "kfac")
KFAC_LR = 0.3  # --optimizer kfac without --lr: chosen on digits' validation split (benchmarks/kfac_results.py)
SCHEDULES = ("constant", "cosine", "warmup-cosine")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One training run. Fields left as None take the data set's defaults (`DATASET_DEFAULTS`)."""

    dataset: str = "digits"
    target: str | None = None  # label column (CSV) or key (NPZ) of a user file
    task: str | None = None  # "classification", "regression", or None: inferred from a user file's target
    hidden: tuple[int, ...] | None = None  # hidden layer widths
    activation: str | None = None
    loss: str | None = None  # default: softmax_cross_entropy (classification) or mse (regression)
    init: str = "he_normal"
    optimizer: str | None = None
    lr: float | None = None
    schedule: str | None = None  # constant, cosine or warmup-cosine
    warmup_epochs: int = 0  # warmup-cosine only
    weight_decay: float = 0.0
    kfac_damping: float = 1e-3  # --optimizer kfac: added to each layer's kron(a, g) before inverting it
    kfac_decay: float = 0.95  # --optimizer kfac: moving average of the Kronecker factors
    kfac_update_every: int = 10  # --optimizer kfac: steps between refreshes of the factors' eigendecompositions
    dropout: float | None = None  # rate of inverted dropout after each hidden activation, in training only
    epochs: int | None = None
    schedule_epochs: int | None = None  # horizon of cosine schedules; default: epochs of the first run
    batch_size: int | None = None
    grad: str = "manual"
    devices: int | None = None  # data-parallel devices per process (`mlp_jax.training.distributed`); None: all local
    seed: int = 0
    patience: int | None = None  # early stopping on a validation split
    restore_best: bool = True  # with patience: end with the weights of the best validation loss, not the last
    val_fraction: float = 0.1  # carved from the training split when patience is set

    def resolved(self) -> ResolvedConfig:
        """The config with every None replaced by the data set's default or the global default."""
        defaults = {**GLOBAL_DEFAULTS, **DATASET_DEFAULTS.get(self.dataset, {})}
        if self.optimizer == "kfac":  # the data sets' learning rates are adam's
            defaults["lr"] = KFAC_LR
        filled = {
            k: defaults[k] if getattr(self, k) is None and k in defaults else getattr(self, k)
            for k in (f.name for f in dataclasses.fields(self))
        }
        if filled["schedule_epochs"] is None:
            filled["schedule_epochs"] = filled["epochs"]
        return ResolvedConfig(**filled)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ResolvedConfig(TrainConfig):
    """A `TrainConfig` whose defaulted fields are filled in (`TrainConfig.resolved`). The fields, and their
    order in `dataclasses.asdict`, are TrainConfig's; ``loss`` stays None until the data set's task is known,
    and ``target``, ``devices`` and ``patience`` are None when not asked for."""

    hidden: tuple[int, ...]
    activation: str
    optimizer: str
    lr: float
    schedule: str
    dropout: float
    epochs: int
    schedule_epochs: int
    batch_size: int


GLOBAL_DEFAULTS: dict[str, Any] = dict(
    hidden=(128, 128),
    activation="relu",
    optimizer="adam",
    lr=1e-3,
    epochs=50,
    batch_size=128,
    schedule="constant",
    dropout=0.0,
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
    "mnist1d": dict(hidden=(256, 256, 256), lr=2e-3, schedule="cosine", epochs=60, batch_size=64, dropout=0.3),
}


def learning_rate(config: ResolvedConfig, steps_per_epoch: int) -> Any:
    """The learning rate, or its optax schedule, that `config` names."""
    total = max(1, config.schedule_epochs * steps_per_epoch)
    if config.schedule == "constant":
        return config.lr
    if config.schedule == "cosine":
        return optax.cosine_decay_schedule(config.lr, total)
    if config.schedule == "warmup-cosine" and total < 2:  # one step: no room for a warmup, only the peak
        return config.lr
    if config.schedule == "warmup-cosine":
        warmup = min(config.warmup_epochs * steps_per_epoch or max(1, total // 20), total - 1)
        return optax.warmup_cosine_decay_schedule(0.0, config.lr, max(warmup, 1), total)
    raise UsageError(f"unknown schedule {config.schedule!r}; expected one of {list(SCHEDULES)}")


def make_optimizer(config: ResolvedConfig, steps_per_epoch: int) -> optax.GradientTransformation:
    """The named optax optimizer with the named learning-rate schedule and (decoupled) weight decay."""
    lr = learning_rate(config, steps_per_epoch)
    builders = {
        "sgd": lambda: optax.sgd(lr),
        "momentum": lambda: optax.sgd(lr, momentum=0.9),
        "nesterov": lambda: optax.sgd(lr, momentum=0.9, nesterov=True),
        "adam": lambda: optax.adam(lr),
        "adamw": lambda: optax.adamw(lr, weight_decay=config.weight_decay or 1e-4),
        "rmsprop": lambda: optax.rmsprop(lr),
        "kfac": lambda: kfac(
            lr, damping=config.kfac_damping, decay=config.kfac_decay, update_every=config.kfac_update_every
        ),
    }
    if config.optimizer not in builders:
        raise UsageError(f"unknown optimizer {config.optimizer!r}; expected one of {list(OPTIMIZERS)}")
    optimizer = builders[config.optimizer]()
    if config.weight_decay and config.optimizer != "adamw":
        optimizer = optax.chain(optax.add_decayed_weights(config.weight_decay), optimizer)
    return optimizer


def check_config(config: ResolvedConfig) -> None:
    """Raise UsageError for anything wrong in the config, before any data is loaded or work is done."""
    try:
        get_activation(config.activation)
        if config.loss is not None:
            get_loss(config.loss)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if config.init not in INITS:
        raise UsageError(f"unknown init {config.init!r}; expected one of {sorted(INITS)}")
    if config.optimizer == "kfac":
        _check_kfac(config)
    make_optimizer(config, steps_per_epoch=1)  # raises UsageError for an unknown optimizer or schedule
    if config.grad not in GRADS:
        raise UsageError(f"unknown grad {config.grad!r}; expected one of {list(GRADS)}")
    for name, count in (("epochs", config.epochs), ("batch_size", config.batch_size)):
        if count < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {count}")
    if not config.lr > 0 or not math.isfinite(config.lr):
        raise UsageError(f"--lr must be a positive number, got {config.lr}")
    if not config.weight_decay >= 0 or not math.isfinite(config.weight_decay):
        raise UsageError(f"--weight-decay must be a finite number >= 0, got {config.weight_decay}")
    if not 0 <= config.dropout < 1:  # NaN fails too
        raise UsageError(f"--dropout must be in [0, 1), got {config.dropout}")
    if config.warmup_epochs < 0:
        raise UsageError(f"--warmup-epochs must be >= 0, got {config.warmup_epochs}")
    if any(size < 1 for size in config.hidden):
        raise UsageError(f"hidden sizes must be >= 1, got {list(config.hidden)}")
    if config.patience is not None and config.patience < 1:
        raise UsageError(f"--patience must be >= 1, got {config.patience}")
    if config.devices is not None and config.devices < 1:
        raise UsageError(f"--devices must be >= 1, got {config.devices}")
    if not 0 < config.val_fraction < 1:
        raise UsageError(f"--val-fraction must be in (0, 1), got {config.val_fraction}")


def _check_kfac(config: ResolvedConfig) -> None:
    """K-FAC takes its factors from the same manual pass as the gradient: no autodiff, dropout or weight decay."""
    for flag, bad in (("--grad autodiff", config.grad != "manual"), ("--dropout", config.dropout > 0)):
        if bad:
            raise UsageError(f"--optimizer kfac takes its factors from the manual gradient's pass: drop {flag}")
    if config.weight_decay:
        raise UsageError("--optimizer kfac has no weight decay: drop --weight-decay (or raise --kfac-damping)")
    if not (config.kfac_damping > 0 and math.isfinite(config.kfac_damping)):
        raise UsageError(f"--kfac-damping must be a positive number, got {config.kfac_damping}")
    if not 0 <= config.kfac_decay < 1:
        raise UsageError(f"--kfac-decay must be in [0, 1), got {config.kfac_decay}")
    if config.kfac_update_every < 1:
        raise UsageError(f"--kfac-update-every must be >= 1, got {config.kfac_update_every}")


def is_json_number(value: Any) -> bool:
    """An int or float as JSON gives them back (a bool is not a number here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_json_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def config_from_saved(saved: Any, where: str) -> TrainConfig:
    """A `TrainConfig` from the dict a checkpoint saved, every field checked against its annotation
    (a str, int, float, bool or tuple of ints, or None where the field allows it); UsageError otherwise."""
    if not isinstance(saved, dict):
        raise UsageError(f"cannot resume from {where}: metadata 'config': expected a dict, found {saved!r:.200}")
    fields = {f.name: str(f.type) for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(saved) - set(fields))
    if unknown:
        raise UsageError(f"cannot resume from {where}: metadata 'config' has unknown fields {unknown}")
    checks: dict[str, Callable[[Any], bool]] = {
        "str": lambda v: isinstance(v, str),
        "int": _is_json_int,
        "float": is_json_number,
        "tuple[int, ...]": lambda v: isinstance(v, (list, tuple)) and all(_is_json_int(s) for s in v),
        "bool": lambda v: isinstance(v, bool),
    }
    values: dict[str, Any] = {}
    for name, value in saved.items():
        kind = fields[name].replace(" | None", "")
        if not ((value is None and "None" in fields[name]) or (value is not None and checks[kind](value))):
            raise UsageError(
                f"cannot resume from {where}: metadata 'config' field {name!r}: expected "
                f"{fields[name]}, found {value!r:.200}"
            )
        values[name] = tuple(value) if kind == "tuple[int, ...]" and value is not None else value
    values.setdefault("dropout", 0.0)  # a run saved before dropout existed trained without it
    return TrainConfig(**values)
