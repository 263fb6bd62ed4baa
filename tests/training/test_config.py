"""`mlp_jax.training.config`: defaults filled in by `resolved`, every optimizer and schedule built, each bad
value refused by `check_config`, and a saved config read back field by field."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mlp_jax.core.errors import UsageError
from mlp_jax.core.params import init_params
from mlp_jax.tools.curvature import KFACFactors
from mlp_jax.training.config import (
    DATASET_DEFAULTS,
    GLOBAL_DEFAULTS,
    OPTIMIZERS,
    SCHEDULES,
    ResolvedConfig,
    TrainConfig,
    check_config,
    config_from_saved,
    make_optimizer,
)


def test_resolved_fills_the_data_sets_defaults_then_the_global_ones():
    config = TrainConfig(dataset="xor", lr=0.5).resolved()
    assert isinstance(config, ResolvedConfig)
    assert (config.hidden, config.activation, config.epochs, config.batch_size) == ((8,), "tanh", 300, 4)
    assert config.lr == 0.5  # given: kept
    assert (config.optimizer, config.schedule) == (GLOBAL_DEFAULTS["optimizer"], GLOBAL_DEFAULTS["schedule"])
    assert config.schedule_epochs == config.epochs  # the cosine horizon defaults to the first run's epochs
    assert config.loss is None and config.patience is None  # known only from the data, or not asked for
    user_file = TrainConfig(dataset="my.csv").resolved()
    assert user_file.hidden == GLOBAL_DEFAULTS["hidden"] and user_file.epochs == GLOBAL_DEFAULTS["epochs"]
    assert config.resolved() == config


def test_a_resolved_config_has_train_configs_fields_in_their_order():
    """metrics.json and the checkpoint save `dataclasses.asdict` of the resolved config: its keys are
    TrainConfig's, in TrainConfig's order."""
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    assert [f.name for f in dataclasses.fields(ResolvedConfig)] == names
    assert list(dataclasses.asdict(TrainConfig().resolved())) == names
    assert set(DATASET_DEFAULTS["mnist1d"]) <= set(names) and set(GLOBAL_DEFAULTS) <= set(names)


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_every_optimizer_and_schedule_builds_and_steps(optimizer, schedule):
    decay = 0.0 if optimizer == "kfac" else 1e-3  # K-FAC has no weight decay
    config = TrainConfig(optimizer=optimizer, schedule=schedule, weight_decay=decay).resolved()
    opt = make_optimizer(config, steps_per_epoch=10)
    params = init_params(jax.random.key(0), [3, 4, 2])
    grads = jax.tree.map(jnp.ones_like, params)
    # K-FAC takes the Kronecker factors of the same pass as an extra argument: identity ones here
    extra = {"kfac_factors": [KFACFactors(jnp.eye(i), jnp.eye(o)) for i, o in ((3, 4), (4, 2))]}
    updates, _ = opt.update(grads, opt.init(params), params, **(extra if optimizer == "kfac" else {}))
    new = optax.apply_updates(params, updates)
    changed = [not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(params))]
    assert any(changed) or schedule == "warmup-cosine"  # warmup starts at lr 0


def test_a_constant_schedule_steps_by_lr_and_warmup_cosine_peaks_at_lr():
    params = (jnp.zeros(1, jnp.float32),)
    grads = (jnp.ones(1, jnp.float32),)
    sgd = make_optimizer(TrainConfig(optimizer="sgd", lr=0.25).resolved(), steps_per_epoch=4)
    updates, _ = sgd.update(grads, sgd.init(params), params)
    assert float(updates[0][0]) == -0.25
    one_step = TrainConfig(optimizer="sgd", lr=0.25, schedule="warmup-cosine", epochs=1).resolved()
    opt = make_optimizer(one_step, steps_per_epoch=1)  # one step in all: no warmup, only the peak
    updates, _ = opt.update(grads, opt.init(params), params)
    assert float(updates[0][0]) == -0.25


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(activation="relu6"), "unknown activation 'relu6'"),
        (dict(loss="hinge"), "unknown loss 'hinge'"),
        (dict(init="zeros"), "unknown init 'zeros'"),
        (dict(optimizer="adagrad9"), "unknown optimizer 'adagrad9'"),
        (dict(schedule="linear"), "unknown schedule 'linear'"),
        (dict(grad="numeric"), "unknown grad 'numeric'"),
        (dict(epochs=0), "--epochs must be >= 1, got 0"),
        (dict(batch_size=0), "--batch-size must be >= 1, got 0"),
        (dict(lr=0.0), "--lr must be a positive number, got 0.0"),
        (dict(lr=float("inf")), "--lr must be a positive number, got inf"),
        (dict(weight_decay=float("nan")), "--weight-decay must be a finite number >= 0, got nan"),
        (dict(warmup_epochs=-1), "--warmup-epochs must be >= 0, got -1"),
        (dict(hidden=(4, 0)), r"hidden sizes must be >= 1, got \[4, 0\]"),
        (dict(patience=0), "--patience must be >= 1, got 0"),
        (dict(devices=0), "--devices must be >= 1, got 0"),
        (dict(val_fraction=1.0), r"--val-fraction must be in \(0, 1\), got 1.0"),
        (dict(dropout=1.0), r"--dropout must be in \[0, 1\), got 1.0"),
        (dict(dropout=float("nan")), r"--dropout must be in \[0, 1\), got nan"),
    ],
    ids=lambda v: "-".join(v) if isinstance(v, dict) else "",
)
def test_check_config_refuses_each_bad_value(change, message):
    check_config(TrainConfig().resolved())  # the defaults are fine
    with pytest.raises(UsageError, match=message):
        check_config(dataclasses.replace(TrainConfig().resolved(), **change))


def test_config_from_saved_round_trips_a_resolved_config():
    config = dataclasses.replace(TrainConfig(dataset="iris", patience=3).resolved(), loss="mse")
    saved = dataclasses.asdict(config)
    saved["hidden"] = list(saved["hidden"])  # as JSON gives it back
    back = config_from_saved(saved, "ckpt")
    assert dataclasses.asdict(back) == dataclasses.asdict(config) and back.hidden == config.hidden
    assert back.resolved() == config


def test_dropout_defaults_to_off_and_a_run_saved_before_dropout_resumes_without_it():
    assert TrainConfig(dataset="iris").resolved().dropout == 0.0
    assert TrainConfig(dataset="iris", dropout=0.25).resolved().dropout == 0.25
    assert TrainConfig(dataset="mnist1d").resolved().dropout == 0.3  # the default that beats the references
    saved = dataclasses.asdict(TrainConfig(dataset="iris").resolved())
    del saved["dropout"]
    assert config_from_saved(saved, "ckpt").dropout == 0.0


@pytest.mark.parametrize(
    "saved, message",
    [
        ([1, 2], "metadata 'config': expected a dict, found [1, 2]"),
        ({"colour": "red"}, "metadata 'config' has unknown fields ['colour']"),
        ({"lr": "0.1"}, "metadata 'config' field 'lr': expected float | None, found '0.1'"),
        ({"epochs": True}, "metadata 'config' field 'epochs': expected int | None, found True"),
        ({"dataset": None}, "metadata 'config' field 'dataset': expected str, found None"),
        ({"hidden": [8, "8"]}, "metadata 'config' field 'hidden': expected tuple[int, ...] | None, found [8, '8']"),
    ],
    ids=["not-a-dict", "unknown-field", "lr-str", "epochs-bool", "dataset-none", "hidden-str"],
)
def test_config_from_saved_names_the_bad_field(saved, message):
    with pytest.raises(UsageError) as error:
        config_from_saved(saved, "run/checkpoint.npz")
    assert str(error.value) == f"cannot resume from run/checkpoint.npz: {message}"


def test_restore_best_is_on_by_default_and_read_back_as_a_bool():
    assert TrainConfig().restore_best is True
    assert config_from_saved({"restore_best": False}, "c.npz").restore_best is False
    with pytest.raises(UsageError, match="field 'restore_best': expected bool, found 'yes'"):
        config_from_saved({"restore_best": "yes"}, "c.npz")
