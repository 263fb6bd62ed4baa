"""Training plots: loss (and accuracy) curves with the validation split's when there is one, a confusion
matrix for classification, and a decision boundary for 2-D data sets."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from mlp_jax.training.files import save_figure


def _save(fig, path: Path) -> None:
    save_figure(fig, path, dpi=110)


def plot_history(history: list[dict], path: Path, title: str = "") -> None:
    """Train/test loss per epoch, and accuracy beside it when the history has it; the validation split's
    curves too when the history has them (``val_loss``, ``val_accuracy``)."""
    _save(history_figure(history, title), path)


def history_figure(history: list[dict], title: str = ""):
    """The figure `plot_history` saves: one line per split (train, val, test) found in the history."""
    epochs = [h["epoch"] for h in history]
    has_accuracy = "test_accuracy" in history[0]
    fig, axes = plt.subplots(1, 2 if has_accuracy else 1, figsize=(10 if has_accuracy else 5.5, 4))
    axes = np.atleast_1d(axes)
    for split in ("train", "val", "test"):
        if f"{split}_loss" in history[0]:
            axes[0].plot(epochs, [h[f"{split}_loss"] for h in history], label=split)
    axes[0].set(xlabel="epoch", ylabel="loss", yscale="log", title="loss")
    axes[0].legend()
    if has_accuracy:
        for split in ("train", "val", "test"):
            if f"{split}_accuracy" in history[0]:
                axes[1].plot(epochs, [h[f"{split}_accuracy"] for h in history], label=split)
        axes[1].set(xlabel="epoch", ylabel="accuracy", title="accuracy")
        axes[1].legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts (num_classes, num_classes): row i, column j counts the examples of class i predicted as j."""
    y_true, y_pred = np.asarray(y_true, np.int64).ravel(), np.asarray(y_pred, np.int64).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred must have the same length, got {y_true.shape} and {y_pred.shape}")
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if y.size and (y.min() < 0 or y.max() >= num_classes):
            raise ValueError(f"{name} must hold classes in [0, {num_classes}), got values in [{y.min()}, {y.max()}]")
    return np.bincount(y_true * num_classes + y_pred, minlength=num_classes**2).reshape(num_classes, num_classes)


def plot_confusion(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    num_classes: int,
    path: Path,
    classes: Sequence[str] = (),
    title: str = "",
) -> np.ndarray:
    """The confusion matrix of labels `y_true` (n,) against predictions `y_pred` (n,), saved as a PNG: rows
    are the true classes, columns the predicted ones, each cell coloured by its share of its row and, for up
    to 20 classes, labelled with its count. `classes` names the classes (default 0, 1, ...). Returns the
    counts."""
    counts = confusion_matrix(y_true, y_pred, num_classes)
    names = [str(c)[:12] for c in classes] if len(classes) == num_classes else [str(i) for i in range(num_classes)]
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = min(4.0 + 0.4 * num_classes, 12.0)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, label="share of the true class")
    if num_classes <= 20:
        for i, j in np.ndindex(counts.shape):
            colour = "white" if share[i, j] > 0.5 else "black"
            ax.text(j, i, str(counts[i, j]), ha="center", va="center", color=colour, fontsize=8)
    if num_classes <= 30:
        ax.set_xticks(range(num_classes), names, rotation=90 if num_classes > 10 else 0)
        ax.set_yticks(range(num_classes), names)
    accuracy = np.trace(counts) / max(counts.sum(), 1)
    ax.set(
        xlabel="predicted class", ylabel="true class", title=f"{title or 'confusion matrix'}: accuracy {accuracy:.1%}"
    )
    fig.tight_layout()
    _save(fig, path)
    return counts


def plot_decision_boundary(
    predict: Callable[[np.ndarray], np.ndarray], x: np.ndarray, y: np.ndarray, path: Path, title: str = ""
) -> None:
    """Predicted class over a grid covering ``x`` (n, 2), with the points coloured by label ``y`` (n,)."""
    pad = 0.5
    (x0, y0), (x1, y1) = x.min(0) - pad, x.max(0) + pad
    gx, gy = np.meshgrid(np.linspace(x0, x1, 300), np.linspace(y0, y1, 300))
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1).astype(x.dtype)
    classes = predict(grid).reshape(gx.shape)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.contourf(gx, gy, classes, alpha=0.3, cmap="viridis", levels=np.arange(classes.max() + 2) - 0.5)
    ax.scatter(x[:, 0], x[:, 1], c=y, s=12, cmap="viridis", edgecolors="k", linewidths=0.3)
    ax.set(title=title or "decision boundary", xlabel="x0 (standardised)", ylabel="x1 (standardised)")
    fig.tight_layout()
    _save(fig, path)


def plot_reliability(curves: dict, path: Path, title: str = "") -> None:
    """A reliability diagram: per model (name -> `mlp_jax.second_order.calibration.Reliability`), the accuracy
    of each confidence bin against its mean confidence, the diagonal being perfect calibration; below, how
    many test examples each bin holds."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(5.5, 6.5), sharex=True, height_ratios=[3, 1])
    top.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="perfectly calibrated")
    for name, r in curves.items():
        edges, count = np.asarray(r.edges), np.asarray(r.counts)
        filled = count > 0
        top.plot(np.asarray(r.confidence)[filled], np.asarray(r.accuracy)[filled], marker="o", label=name)
        bottom.step(edges[:-1], count, where="post", label=name)
    top.set(ylabel="accuracy", xlim=(0, 1), ylim=(0, 1), title=title)
    top.legend(loc="lower right", fontsize=8)  # under-confident models sit above the diagonal, at the left
    bottom.set(xlabel="confidence (top-class probability)", ylabel="examples", yscale="log")
    fig.tight_layout()
    _save(fig, path)


def plot_coverage(levels: Sequence[float], curves: dict, path: Path, title: str = "") -> None:
    """Regression calibration: the share of test targets inside each central predictive interval against
    the interval's nominal level, per model (name -> coverage per level)."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="perfectly calibrated")
    for name, coverage in curves.items():
        ax.plot(levels, coverage, marker="o", label=name)
    ax.set(xlabel="nominal level of the central interval", ylabel="observed coverage", xlim=(0, 1), ylim=(0, 1))
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def plot_spectral_density(densities: dict, path: Path, title: str = "") -> None:
    """Spectral densities (name -> (grid, density)) on a log density axis, as PyHessian draws them."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, (grid, density) in densities.items():
        ax.semilogy(np.asarray(grid), np.maximum(np.asarray(density), 1e-12), label=name)
    ax.set(xlabel="eigenvalue", ylabel="density", ylim=(1e-8, None))
    ax.set_title(title, fontsize=10)
    if len(densities) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)
