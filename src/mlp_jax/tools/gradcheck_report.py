"""The result of `mlp_jax.tools.gradcheck.check_gradients`: one `Comparison` per gradient leaf and reference,
grouped by leaf, rendered as a plain-text table or as JSON."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Comparison:
    """One leaf ``g`` against a reference ``r`` (or their finite-difference probes)."""

    max_abs: float  # max |g - r|
    max_rel: float  # max |g - r| / max |r|
    eps_units: float  # max |g - r| / (eps * S): what the tolerance applies to
    tolerance: float  # on eps_units
    cosine: float  # <g, r> / (|g| |r|)
    norm: float  # |g|
    ref_norm: float  # |r|
    ok: bool


@dataclass(frozen=True)
class LeafReport:
    layer: int
    leaf: str  # "w" or "b"
    shape: tuple[int, ...]
    sum_length: int  # K_l of the tolerance rule
    term_size: float  # S of the tolerance rule
    checks: dict[str, Comparison]  # "manual vs autodiff", "manual vs float64", "manual vs fd", ...
    closer: str | None  # which of manual and autodiff is closer to the float64 run: manual/autodiff/tie
    finite_differences: str  # how the leaf was probed
    ok: bool


@dataclass(frozen=True)
class NonFinite:
    """Where the first NaN or inf appears, in the order the manual pass computes things."""

    layer: int
    quantity: str  # z, activation, loss (forward); delta, dW, db (backward)
    stage: str  # "forward" or "backward"


@dataclass(frozen=True)
class Report:
    sizes: tuple[int, ...]
    batch: int
    dtype: str
    activation: str
    loss: str
    loss_value: float  # of the float64 run
    eps: float
    fd_step: float  # h / max(1, |theta|)
    leaves: tuple[LeafReport, ...]  # from the output layer backwards, w then b
    first_failing_layer: int | None  # from the output backwards
    first_failure: str | None  # "layer 1 w: manual vs autodiff error 8.3e+04 eps > tolerance 126"
    nonfinite: NonFinite | None
    ok: bool

    def to_dict(self) -> dict:
        return _json_safe(dataclasses.asdict(self))

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def table(self) -> str:
        return _table(self)

    def __str__(self) -> str:
        return self.table()


def compare(g, ref, *, eps: float, term_size: float, tolerance: float) -> Comparison:
    """`g` against `ref` (same shape): see `Comparison`. ``eps_units = max|g - ref| / (eps * term_size)``."""
    g, ref = np.asarray(g, np.float64).ravel(), np.asarray(ref, np.float64).ravel()
    with np.errstate(invalid="ignore", over="ignore"):
        max_abs = float(np.max(np.abs(g - ref), initial=0.0))
        norm, ref_norm = float(np.linalg.norm(g)), float(np.linalg.norm(ref))
        cosine = float(np.dot(g, ref) / (norm * ref_norm)) if norm > 0 and ref_norm > 0 else float(norm == ref_norm)
    max_abs = math.inf if math.isnan(max_abs) else max_abs
    eps_units = ratio(max_abs, eps * term_size)
    return Comparison(
        max_abs=max_abs,
        max_rel=ratio(max_abs, float(np.max(np.abs(ref), initial=0.0))),
        eps_units=eps_units,
        tolerance=tolerance,
        cosine=cosine,
        norm=norm,
        ref_norm=ref_norm,
        ok=_within(eps_units, tolerance),
    )


def _within(eps_units: float, tolerance: float) -> bool:
    return bool(math.isfinite(eps_units) and eps_units <= tolerance)


def ratio(a: float, b: float) -> float:
    """a / b, with 0 / 0 = 0 and a / 0 = inf; NaN reads as inf."""
    if b > 0 and math.isfinite(b):
        return a / b
    return 0.0 if a == 0 else math.inf


def either(first: Comparison, second: Comparison) -> tuple[Comparison, Comparison]:
    """Manual and autodiff against one reference: each passes within its tolerance, or when no further
    from the reference than twice the other (where the dtype cannot meet the rule, as near a minimum)."""

    def relaxed(c: Comparison, other: Comparison) -> Comparison:
        tolerance = max(c.tolerance, 2 * other.eps_units) if math.isfinite(other.eps_units) else c.tolerance
        return dataclasses.replace(c, tolerance=tolerance, ok=_within(c.eps_units, tolerance))

    return relaxed(first, second), relaxed(second, first)


def _json_safe(value):
    """NaN and inf as the strings "nan", "inf", "-inf" (JSON has no such numbers); tuples as lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


_COLUMNS = (
    "layer",
    "leaf",
    "shape",
    "K",
    "check",
    "max abs",
    "max rel",
    "err/eps",
    "tol/eps",
    "cosine",
    "|g|",
    "|ref|",
    "",
)
_LEFT = {"leaf", "check", ""}


def _table(report: Report) -> str:
    """The report as a plain-text table: one row per comparison, a note line under each leaf."""
    rows: list[tuple[str, ...]] = [_COLUMNS]
    notes: dict[int, str] = {}
    for leaf in report.leaves:
        for n, (check, c) in enumerate(leaf.checks.items()):
            shape = "x".join(map(str, leaf.shape))
            where = (str(leaf.layer), leaf.leaf, shape, str(leaf.sum_length)) if n == 0 else ("",) * 4
            numbers = [f"{v:.3g}" for v in (c.max_abs, c.max_rel, c.eps_units, c.tolerance)]
            norms = [f"{c.cosine:.9f}", f"{c.norm:.4g}", f"{c.ref_norm:.4g}"]
            rows.append((*where, check, *numbers, *norms, "ok" if c.ok else "FAIL"))
        closer = f"; closer to float64: {leaf.closer}" if leaf.closer else ""
        notes[len(rows) - 1] = f"    finite differences: {leaf.finite_differences}{closer}"
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    lines = [
        f"gradcheck: sizes {'-'.join(map(str, report.sizes))}, batch {report.batch}, {report.activation}, "
        f"{report.loss}, {report.dtype} (eps {report.eps:.3g}), loss {report.loss_value:.6g}",
        "err/eps: max|g - ref| / (eps * size of the summed terms); tol/eps: K (2K for manual vs autodiff) or twice",
        "the other gradient's error, plus the finite differences' own error "
        f"(float64, step {report.fd_step:.3g} * max(1, |theta|))",
        "",
    ]
    for i, row in enumerate(rows):
        cells = (cell.ljust(w) if name in _LEFT else cell.rjust(w) for name, cell, w in zip(_COLUMNS, row, widths))
        lines.append("  ".join(cells).rstrip())
        if i in notes:
            lines.append(notes[i])
    lines.append("")
    if report.nonfinite is not None:
        nf = report.nonfinite
        lines.append(f"NON-FINITE: the first NaN or inf is in {nf.quantity} of layer {nf.layer} ({nf.stage} pass)")
    if report.ok:
        lines.append("OK: every leaf is within tolerance")
    elif report.first_failure is not None:
        lines.append(f"FAIL (first from the output backwards): {report.first_failure}")
    return "\n".join(lines)
