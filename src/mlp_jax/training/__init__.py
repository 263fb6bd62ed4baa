"""The training layer: optax update steps and fused epochs, data sets and their loaders, checkpoints, atomic
file writes, data-parallel training, and the ``fit`` loop behind ``mlp-jax train``. Imports only the core."""
