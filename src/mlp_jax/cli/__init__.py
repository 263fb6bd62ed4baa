"""The ``mlp-jax`` command line: the entry point (`mlp_jax.cli.main`) and one module per subcommand."""
