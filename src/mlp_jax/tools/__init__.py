"""The gradient tools built on the core's manual pass: the three-way gradient check, per-example gradients
and differential privacy, and the manual gradient as a ``jax.custom_vjp``. Imports only the core."""
