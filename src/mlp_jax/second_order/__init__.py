"""Second-order methods built on the hand-written curvature (`mlp_jax.tools.curvature`): Laplace posteriors
(`laplace`), the K-FAC optimizer (`kfac`) and the Hessian's spectrum (`spectrum`). Pure JAX, like the tools."""
