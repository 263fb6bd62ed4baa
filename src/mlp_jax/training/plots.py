"""Training plots: loss (and accuracy) curves, and a decision boundary for 2-D data sets."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from mlp_jax.training.files import save_figure


def _save(fig, path: Path) -> None:
    save_figure(fig, path, dpi=110)


def plot_history(history: list[dict], path: Path, title: str = "") -> None:
    """Train/test loss per epoch, and accuracy beside it when the history has it."""
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
    _save(fig, path)


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
