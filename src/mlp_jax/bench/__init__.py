"""The benchmark layer behind ``mlp-jax bench``: configs, timing, matmul peaks, peers in their own processes
(``workers/``), targets, the report, the machine's description, and host-memory settings; `run` ties them
together. Imports the core and training layers."""
