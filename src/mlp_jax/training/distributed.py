"""Data-parallel training over devices and hosts with `jax.sharding`: a 1-D `Mesh` with a ``batch`` axis.

Params and optimizer state are replicated on every device (``NamedSharding(mesh, P())``); every
minibatch is split along its first axis (``NamedSharding(mesh, P("batch"))``). The update and the fused
epoch are the ones from `mlp_jax.training.steps`, jitted the same way: only the gradient source is wrapped, so that
its minibatch is constrained to the batch sharding and its loss and gradients to replicated.

How the batch sums become cross-device reductions. Both gradient sources reduce over the batch:
autodiff inside ``jax.grad``, the hand-written one in `mlp_jax.core.backprop` as ``a_prev.T @ delta`` and
``jnp.sum(delta, 0)``, scaled by `losses.example_scale` (``1 / B``, or ``w_i / sum(w)``). We let the compiler
partition them (GSPMD via `jax.jit` + `NamedSharding`) rather than write a `shard_map` + `psum` version
of backprop: a jitted function means the same thing whatever the shardings of its inputs, so the sharded
manual step computes exactly the single-device formula, with the *global* batch size in ``1 / B`` and
the *global* ``sum(w)``, and the compiler emits, per device, the partial matmul and partial sum over its
rows followed by an ``all-reduce`` across the batch axis (the tests find it in the compiled HLO). A
`shard_map` version would have to rescale each device's local mean by hand (local ``B`` and local
``sum(w)`` are wrong), one more place to get the padding weights of a partial batch wrong. Results
differ from one device only by float summation order.

Batch sizes: every minibatch must split evenly over the devices, so a batch size the device count does
not divide is a ValueError. The partial last batch of an epoch is padded to the full batch size with
``sample_weight`` 0 (`make_train_epoch`), so it splits evenly too and its gradient is the exact mean over
its real examples.

Multi-host: call `initialize_distributed` (flags or the ``JAX_COORDINATOR_ADDRESS``,
``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID`` environment variables) before anything else touches JAX. The
mesh then spans the devices of every process; `distribute_dataset` builds the global training array from
the rows this process owns (`process_rows`), and only process 0 (`is_primary`) writes files.
"""

from __future__ import annotations

import os

import jax
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from mlp_jax.training.steps import GradFn, TrainState, gradient_fn, make_step, make_train_epoch

Array = jax.Array
BATCH = "batch"  # the mesh axis the batch is split over

ENV_COORDINATOR = "JAX_COORDINATOR_ADDRESS"  # also read by jax.distributed.initialize itself
ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"


# --------------------------------------------------------------------------------------- multi-host


def initialize_distributed(
    coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None
) -> bool:
    """Join a multi-process run with `jax.distributed.initialize`; a no-op (False) for a single process.

    Each argument left as None is read from ``JAX_COORDINATOR_ADDRESS`` (``host:port`` of process 0),
    ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``. Returns True when it initialised the runtime. Call it
    before any other JAX call. On CPU the cross-process collectives use gloo.
    """
    coordinator = coordinator or os.environ.get(ENV_COORDINATOR)
    if num_processes is None:
        num_processes = _int_from_env(ENV_NUM_PROCESSES)
    if process_id is None:
        process_id = _int_from_env(ENV_PROCESS_ID)
    given = {"coordinator": coordinator, "num_processes": num_processes, "process_id": process_id}
    if all(v is None for v in given.values()):
        return False
    if coordinator is None or num_processes is None or process_id is None:
        missing = [name for name, v in given.items() if v is None]
        raise ValueError(
            f"a multi-host run needs coordinator, num_processes and process_id; missing {missing} "
            f"(flags --coordinator/--num-processes/--process-id or {ENV_COORDINATOR}, {ENV_NUM_PROCESSES}, "
            f"{ENV_PROCESS_ID})"
        )
    if num_processes < 1 or not 0 <= process_id < num_processes:
        raise ValueError(
            f"need num_processes >= 1 and 0 <= process_id < num_processes, got {num_processes}, {process_id}"
        )
    _check_address(coordinator)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU only; GPUs and TPUs ignore it
    jax.distributed.initialize(coordinator, num_processes, process_id)
    return True


def _int_from_env(name: str) -> int | None:
    """The integer in environment variable `name`, None when it is unset or empty; ValueError otherwise."""
    text = os.environ.get(name)
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{name}: expected an integer, got {text!r}") from None


def _check_address(coordinator: str) -> None:
    """ValueError unless `coordinator` is ``host:port`` with a port in 1..65535 (``[::1]:port`` for IPv6)."""
    host, _, port = coordinator.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(
            f"coordinator {coordinator!r}: expected HOST:PORT, the address of process 0 with a port in "
            "1..65535 (e.g. localhost:1234)"
        )


def is_primary() -> bool:
    """True in process 0, the one that writes checkpoints, metrics and plots."""
    return jax.process_index() == 0


# ------------------------------------------------------------------------------------ mesh, shardings


def make_mesh(num_devices: int | None = None) -> Mesh:
    """A 1-D mesh with axis ``"batch"`` over the first `num_devices` local devices of every process.

    ``None`` means all local devices. The mesh has ``num_devices * jax.process_count()`` devices.
    """
    available = jax.local_device_count()
    if num_devices is None:
        num_devices = available
    if isinstance(num_devices, bool) or not isinstance(num_devices, int) or num_devices < 1:
        raise ValueError(f"number of devices must be a positive integer, got {num_devices!r}")
    if num_devices > available:
        raise ValueError(
            f"asked for {num_devices} devices but this process has only {available} "
            f"({jax.local_devices()[0].platform}); on CPU, simulate more with "
            f"XLA_FLAGS=--xla_force_host_platform_device_count={num_devices}"
        )
    devices = [d for p in range(jax.process_count()) for d in jax.local_devices(process_index=p)[:num_devices]]
    return Mesh(np.array(devices), (BATCH,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """Split the first axis over the mesh's ``batch`` axis; the other axes whole."""
    return NamedSharding(mesh, P(BATCH))


def _put(leaf, sharding: NamedSharding):
    """`leaf` placed with `sharding`, in new buffers (through the host), so that donating the result
    never deletes the caller's array. With several processes each process holds the same value and
    fills its own devices."""
    if jax.dtypes.issubdtype(getattr(leaf, "dtype", None), jax.dtypes.prng_key):
        impl = jax.random.key_impl(leaf)
        return jax.random.wrap_key_data(_put(jax.random.key_data(leaf), sharding), impl=impl)
    value = np.asarray(leaf)
    if jax.process_count() == 1:
        return jax.device_put(value, sharding)
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])


def replicate(tree, mesh: Mesh):
    """Every leaf of `tree` (params, optimizer state, a `TrainState`) copied to every device of `mesh`.

    The result never shares buffers with `tree`, so a donating update leaves `tree` alive."""
    sharding = replicated(mesh)
    return jax.tree.map(lambda leaf: _put(leaf, sharding), tree)


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
    """ValueError unless `batch_size` splits evenly over the mesh's devices."""
    if batch_size % mesh.size:
        raise ValueError(
            f"batch size {batch_size} does not split evenly over {mesh.size} devices; use a batch size "
            f"that is a multiple of {mesh.size} or fewer devices"
        )


def shard_batch(x, mesh: Mesh) -> Array:
    """A global batch ``(B, ...)``, the same in every process, split along its first axis over `mesh`."""
    check_batch_size(np.shape(x)[0], mesh)
    if jax.process_count() == 1:
        return jax.device_put(x, batch_sharded(mesh))
    return _put(x, batch_sharded(mesh))


def process_rows(num_examples: int, mesh: Mesh) -> slice:
    """The rows of a ``(num_examples, ...)`` array split over `mesh` that this process's devices hold
    (contiguous: the mesh lists each process's devices together). ValueError unless the device count
    divides `num_examples`."""
    check_rows(num_examples, mesh)
    index_map = batch_sharded(mesh).addressable_devices_indices_map((num_examples,))
    rows = [index[0].indices(num_examples)[:2] for index in index_map.values() if index is not None]
    return slice(min(r[0] for r in rows), max(r[1] for r in rows))


def check_rows(num_examples: int, mesh: Mesh) -> None:
    if num_examples % mesh.size:
        raise ValueError(
            f"{num_examples} examples do not split evenly over {mesh.size} devices; a data set split over "
            f"the processes needs a multiple of {mesh.size} examples (or replicate it: every process loads "
            "it all)"
        )


def distribute_dataset(x_local, mesh: Mesh, num_examples: int) -> Array:
    """The global ``(num_examples, ...)`` training array from this process's rows ``x_local``.

    One process: `x_local` is the whole set, replicated on every device (data sets that fit on one device;
    the epoch's gather then needs no communication). Several processes: `x_local` holds only the rows
    ``process_rows(num_examples, mesh)``, and the global array is split over the batch axis
    (`jax.make_array_from_process_local_data`); the fused epoch's shuffled gather reads across hosts, so
    the run equals a single-device one. The device count must divide `num_examples` then.
    """
    if jax.process_count() == 1:
        return _put(x_local, replicated(mesh))
    x_local = np.asarray(x_local)
    rows = process_rows(num_examples, mesh)
    if x_local.shape[0] != rows.stop - rows.start:
        raise ValueError(
            f"process {jax.process_index()} should pass rows {rows.start}:{rows.stop} "
            f"({rows.stop - rows.start} rows), got {x_local.shape[0]}"
        )
    return jax.make_array_from_process_local_data(batch_sharded(mesh), x_local, (num_examples, *x_local.shape[1:]))


def place_dataset(x, mesh: Mesh) -> Array:
    """The whole training set `x`, loaded by every process, placed for `make_sharded_train_epoch`.

    One process, or a device count that does not divide ``len(x)``: replicated on every device.
    Otherwise each process keeps only its own rows (`distribute_dataset`).
    """
    if jax.process_count() == 1 or len(x) % mesh.size:
        return _put(x, replicated(mesh))
    return distribute_dataset(np.asarray(x)[process_rows(len(x), mesh)], mesh, len(x))


# ----------------------------------------------------------------------------------- sharded training


def sharded_gradient_fn(
    grad: str | GradFn, mesh: Mesh, *, activation: str = "relu", loss: str = "mse", dropout: float = 0.0
) -> GradFn:
    """The named gradient source with its minibatch split over the ``batch`` axis and its loss and
    gradients replicated; the compiler turns the batch sums into all-reduces (see the module docstring).
    With ``dropout=rate`` > 0 it draws the whole minibatch's masks from the step's key, as one device would.

    Raises ValueError (while tracing) for a minibatch the device count does not divide.
    """
    base = gradient_fn(grad, activation=activation, loss=loss, dropout=dropout)
    split, whole = batch_sharded(mesh), replicated(mesh)

    def sharded_grad(params, x, y, sample_weight=None, key=None):
        check_batch_size(x.shape[0], mesh)
        x, y = jax.lax.with_sharding_constraint((x, y), split)
        if sample_weight is not None:
            sample_weight = jax.lax.with_sharding_constraint(sample_weight, split)
        value, grads = base(params, x, y, sample_weight=sample_weight, key=key)
        return jax.lax.with_sharding_constraint((value, grads), whole)

    return sharded_grad


def make_sharded_update(
    optimizer: optax.GradientTransformation,
    mesh: Mesh,
    *,
    activation: str = "relu",
    loss: str = "mse",
    grad: str | GradFn = "manual",
    donate: bool = True,
    dropout: float = 0.0,
) -> jax.stages.Wrapped:
    """`mlp_jax.training.steps.make_update` over `mesh`: ``update(params, opt_state, x, y, sample_weight=None,
    key=None) -> (params, opt_state, loss_value)`` with x, y (and sample_weight) split over the batch axis
    and everything returned replicated. Pass params and opt_state through `replicate` and batches through
    `shard_batch` (other inputs are moved, at a cost). ``dropout=rate`` > 0 needs a key per call, as
    `make_update`'s does."""
    sharded_grad = sharded_gradient_fn(grad, mesh, activation=activation, loss=loss, dropout=dropout)
    step = make_step(optimizer, activation=activation, loss=loss, grad=sharded_grad)
    whole = replicated(mesh)
    return jax.jit(step, out_shardings=(whole, whole, whole), donate_argnums=(0, 1) if donate else ())


def make_sharded_train_epoch(
    optimizer: optax.GradientTransformation,
    mesh: Mesh,
    *,
    activation: str = "relu",
    loss: str = "mse",
    grad: str | GradFn = "manual",
    batch_size: int = 128,
    donate: bool = True,
    dropout: float = 0.0,
) -> ShardedTrainEpoch:
    """`mlp_jax.training.steps.make_train_epoch` over `mesh`: ``train_epoch(state, x, y) -> (state, losses)``, the
    same shuffle and updates, each shuffled minibatch split over the batch axis.

    Pass the state through `replicate` and x, y through `distribute_dataset` (or `replicate`). Raises
    ValueError when ``min(batch_size, n)`` is not a multiple of the device count.
    """
    sharded_grad = sharded_gradient_fn(grad, mesh, activation=activation, loss=loss, dropout=dropout)
    epoch = make_train_epoch(
        optimizer, activation=activation, loss=loss, grad=sharded_grad, batch_size=batch_size, donate=donate
    )
    return ShardedTrainEpoch(epoch, mesh, batch_size)


class ShardedTrainEpoch:
    """What `make_sharded_train_epoch` returns: ``train_epoch(state, x, y) -> (state, losses)``, the compiled
    epoch with the batch size checked against the mesh first; `lower` lowers the epoch itself, for
    inspecting its HLO."""

    def __init__(self, epoch: jax.stages.Wrapped, mesh: Mesh, batch_size: int) -> None:
        self._epoch, self._mesh, self._batch_size = epoch, mesh, batch_size

    def __call__(self, state: TrainState, x: Array, y: Array) -> tuple[TrainState, Array]:
        check_batch_size(min(self._batch_size, x.shape[0]), self._mesh)
        return self._epoch(state, x, y)

    def lower(self, state: TrainState, x: Array, y: Array) -> jax.stages.Lowered:
        return self._epoch.lower(state, x, y)
