"""``python -m mlp_jax.cli``: the same as the ``mlp-jax`` command."""

from mlp_jax.cli.main import main

raise SystemExit(main())
