"""Scripts that `mlp_jax.bench.peers` runs by path, each in its own process, so that a peer library's
thread pool never competes with another's. Each reads a JSON request on argv[1] and prints one JSON line."""
