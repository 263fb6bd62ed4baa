"""Per-layer Kronecker factors, eigendecomposed: what both the Laplace posterior's "kron" structure and the
K-FAC optimizer invert. With ``a = Qa diag(la) Qa^T`` and ``g = Qg diag(lg) Qg^T``, ``kron(a, g) + delta I``
is diagonal in the basis ``kron(Qa, Qg)``, with eigenvalues ``outer(la, lg) + delta``."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from mlp_jax.tools.curvature import KFACFactors

Array = jax.Array


class KronEigen(NamedTuple):
    """One layer's factors, eigendecomposed; the eigenvalues clipped at 0 (the factors are PSD, a negative
    one is rounding)."""

    a_values: Array  # (d_in,)
    a_vectors: Array  # (d_in, d_in)
    g_values: Array  # (d_out,)
    g_vectors: Array  # (d_out, d_out)


def eigen_kron(factors: tuple[KFACFactors, ...]) -> tuple[KronEigen, ...]:
    """Each layer's `KronEigen` of its factors ``a``, ``g``."""
    out = []
    for f in factors:
        la, qa = jnp.linalg.eigh(f.a)
        lg, qg = jnp.linalg.eigh(f.g)
        out.append(KronEigen(jnp.maximum(la, 0), qa, jnp.maximum(lg, 0), qg))
    return tuple(out)
