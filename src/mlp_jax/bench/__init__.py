"""The benchmark layer behind ``mlp-jax bench``: configs and timing, peers in their own processes
(``workers/``), the report, and host-memory settings. Imports the core and training layers."""
