"""XOR, the classic story: a single linear layer cannot separate it, one hidden layer can.

    python examples/xor.py [--out xor_hidden_space.png]

A perceptron (no hidden layer: ``logit = x @ w + b``) draws one straight line, and no line puts (0, 1) and
(1, 0) on one side and (0, 0) and (1, 1) on the other: ``w2 + b > 0`` and ``w1 + b > 0`` add up to
``w1 + w2 + 2b > 0``, while ``b <= 0`` and ``w1 + w2 + b <= 0`` add up to ``w1 + w2 + 2b <= 0``. So a line
gets at most 3 of the 4 points (75 %); the script checks that on a sweep of lines, and trains one with
the logistic loss, whose best line on XOR is no line at all (w = 0: every probability 0.5).

A 2-2-1 tanh net gets all four. Its hidden layer re-expresses each point as ``h = tanh(x @ W0 + b0)``,
two numbers, and in those coordinates one line (the output layer, ``h @ W1 + b1 = 0``) separates the
classes. The PNG shows the four points in input space, with the net's decision boundary and the two
hidden units' lines, beside the same four points in hidden space, with the output layer's line.

A 2-2-1 net has local minima on XOR: from about half of its random starts, training settles at loss
ln(2)/2 with two points right and two at p = 0.5. The script restarts from a new key until a run reaches
100 % and says how many it needed.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax

matplotlib.use("Agg")  # no display needed
import matplotlib.pyplot as plt

import mlp_jax as mj

x = jnp.array([[0, 0], [0, 1], [1, 0], [1, 1]], jnp.float32)
y = jnp.array([[0], [1], [1], [0]], jnp.float32)  # one sigmoid output: is it "1"?
ACTIVATION, LOSS = "tanh", "sigmoid_binary_cross_entropy"
OPTIMIZER = optax.adam(0.1)
train_300 = mj.make_fused_update(OPTIMIZER, 300, activation=ACTIVATION, loss=LOSS)  # 300 steps, one call
evaluate = mj.make_evaluate(activation=ACTIVATION, loss=LOSS)


def train(layer_sizes: list[int], key: jax.Array) -> tuple[mj.Params, float, float]:
    """300 adam steps from a glorot-normal start; returns (params, final loss, accuracy on the 4 points)."""
    params = mj.init_params(key, layer_sizes, init="glorot_normal")
    params, _, losses = train_300(params, OPTIMIZER.init(params), x, y)
    return params, float(losses[-1]), float(evaluate(params, x, y)["accuracy"])


def best_line_accuracy(steps: int = 720) -> tuple[float, int]:
    """The best accuracy of ``x @ (cos t, sin t) - c > 0`` (and its complement) over a sweep of angles t
    and offsets c that covers every way a line can split the unit square's corners; and how many lines."""
    angles = np.linspace(0.0, 2 * np.pi, steps, endpoint=False)
    directions = np.stack([np.cos(angles), np.sin(angles)], axis=1)  # (steps, 2)
    offsets = np.linspace(-1.5, 1.5, 301)  # (301,)
    projections = np.asarray(x) @ directions.T  # (4, steps)
    predicted = projections[:, :, None] > offsets[None, None, :]  # (4, steps, 301)
    accuracy = (predicted == (np.asarray(y) > 0.5)[:, :, None]).mean(axis=0)
    return float(accuracy.max()), accuracy.size


def train_hidden(max_starts: int = 20) -> mj.Params:
    """Train 2-2-1 from key 0, 1, ... until a run reaches 100 %; print each start."""
    for start in range(max_starts):
        params, loss, accuracy = train([2, 2, 1], jax.random.key(start))
        print(f"   [2, 2, 1] start {start}: loss {loss:.4f}, accuracy {accuracy:.0%}")
        if accuracy == 1.0:
            if start:
                minimum = f"ln(2)/2 = {math.log(2) / 2:.4f}"
                print(f"             (a 2-2-1 net has local minima on XOR: {start} start(s) stopped at {minimum})")
            return params
    raise SystemExit(f"no 2-2-1 run reached 100 % in {max_starts} starts")


def hidden(params: mj.Params, points: np.ndarray) -> np.ndarray:
    """The hidden layer's activations h = tanh(points @ W0 + b0), (n, 2)."""
    return np.tanh(points @ np.asarray(params[0].w) + np.asarray(params[0].b))


def output_probability(params: mj.Params, h: np.ndarray) -> np.ndarray:
    """The net's p(XOR = 1) = sigmoid(h @ W1 + b1), (n,), from hidden activations h (n, 2). After `hidden`,
    it is ``jax.nn.sigmoid(mj.forward(params, x, "tanh"))``, in numpy: fast on a plotting grid."""
    return 1 / (1 + np.exp(-(h @ np.asarray(params[1].w)[:, 0] + float(params[1].b[0]))))


def _line(ax, w: np.ndarray, b: float, lim: tuple[float, float], **style) -> None:
    """Draw ``p @ w + b = 0`` over the box lim x lim."""
    t = np.linspace(*lim, 200)
    if abs(w[1]) > abs(w[0]):
        ax.plot(t, -(b + w[0] * t) / w[1], **style)
    else:
        ax.plot(-(b + w[1] * t) / w[0], t, **style)


def _points(ax, coords: np.ndarray) -> None:
    """The four points at `coords` (4, 2), coloured by class, each labelled with its input (points that
    land on one spot share one label)."""
    labels = np.asarray(y)[:, 0] > 0.5
    for cls, color, marker in ((False, "tab:blue", "o"), (True, "tab:red", "s")):
        sel = labels == cls
        ax.scatter(*coords[sel].T, c=color, marker=marker, s=110, edgecolors="k", zorder=3, label=f"XOR = {cls:d}")
    spots: dict[tuple[float, float], list[str]] = {}
    for point, spot in zip(np.asarray(x).astype(int), np.round(coords, 2)):
        spots.setdefault((float(spot[0]), float(spot[1])), []).append(f"({point[0]}, {point[1]})")
    for (u, v), names in spots.items():
        right_half = u > np.mean(ax.get_xlim())
        ax.annotate(
            " and ".join(names),
            (u, v),
            textcoords="offset points",
            xytext=(-10 if right_half else 10, 10),
            ha="right" if right_half else "left",
            zorder=4,
            fontsize=10,
            bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.8},
        )


def _input_panel(ax, params: mj.Params) -> None:
    """The four points in input space, the net's p(XOR = 1) as shading, its boundary and the hidden units'
    lines."""
    lim = (-0.5, 1.5)
    gx, gy = np.meshgrid(np.linspace(*lim, 300), np.linspace(*lim, 300))
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1)  # (300 * 300, 2)
    prob = output_probability(params, hidden(params, grid)).reshape(gx.shape)
    ax.contourf(gx, gy, prob, levels=np.linspace(0, 1, 11), cmap="RdBu_r", alpha=0.35)
    ax.contour(gx, gy, prob, levels=[0.5], colors="k", linewidths=3)
    ax.plot([], [], color="k", lw=3, label="the net's decision boundary, p = 0.5")
    w0, b0 = np.asarray(params[0].w), np.asarray(params[0].b)
    for j, color in enumerate(("tab:orange", "tab:green")):
        label = f"hidden unit {j + 1}'s line, $(x W_0 + b_0)_{j + 1} = 0$"
        _line(ax, w0[:, j], b0[j], lim, color=color, ls="--", lw=2, label=label, zorder=2)
    ax.set(xlim=lim, ylim=lim, xlabel="input $x_1$", ylabel="input $x_2$", aspect="equal")
    _points(ax, np.asarray(x))
    ax.set_title("input space: no single line separates the classes;\nthe hidden units draw two")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, fontsize=9)


def _hidden_panel(ax, params: mj.Params):
    """The four points in hidden space, the input grid as the hidden layer maps it, the output layer's
    p(XOR = 1) as shading and its line; returns the shading, for the colour bar."""
    lim = (-1.2, 1.2)
    hx, hy = np.meshgrid(np.linspace(*lim, 300), np.linspace(*lim, 300))
    w1, b1 = np.asarray(params[1].w)[:, 0], float(params[1].b[0])
    prob = output_probability(params, np.stack([hx.ravel(), hy.ravel()], axis=1)).reshape(hx.shape)
    shading = ax.contourf(hx, hy, prob, levels=np.linspace(0, 1, 11), cmap="RdBu_r", alpha=0.35)
    t = np.linspace(-0.5, 1.5, 100)
    for v in np.linspace(-0.5, 1.5, 9):  # the input grid's lines, bent by the hidden layer
        for seg in (np.stack([t, np.full_like(t, v)], 1), np.stack([np.full_like(t, v), t], 1)):
            ax.plot(*hidden(params, seg).T, color="0.6", lw=0.6, zorder=1)
    ax.plot([], [], color="0.6", lw=0.6, label="input grid, mapped by the hidden layer")
    _line(ax, w1, b1, lim, color="k", lw=2, label="output layer's line: $h W_1 + b_1 = 0$")
    ax.set(xlim=lim, ylim=lim, xlabel="hidden unit 1: $h_1$", ylabel="hidden unit 2: $h_2$", aspect="equal")
    _points(ax, hidden(params, np.asarray(x)))
    ax.set_title("hidden space, $h = \\tanh(x W_0 + b_0)$:\none line separates the classes")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, fontsize=9)
    return shading


def plot(params: mj.Params, path: Path) -> None:
    """Input space beside hidden space, as a PNG at `path`."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12.5, 7))
    _input_panel(left, params)
    shading = _hidden_panel(right, params)
    fig.suptitle("XOR: a 2-2-1 tanh net re-expresses the four points so that one line separates them")
    fig.subplots_adjust(left=0.06, right=0.9, top=0.86, bottom=0.2, wspace=0.2)
    fig.colorbar(shading, cax=fig.add_axes((0.92, 0.2, 0.015, 0.66)), label="the net's p(XOR = 1)")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("xor_hidden_space.png"), help="the PNG to write")
    out = parser.parse_args().out
    out.parent.mkdir(parents=True, exist_ok=True)  # before any training, so a bad path fails first

    _, loss, linear = train([2, 1], jax.random.key(0))  # logit = x @ w + b: a straight line
    print(f"      [2, 1] (a perceptron): loss {loss:.4f}, accuracy {linear:.0%} (its best fit is w = 0: p = 0.5)")
    best, lines = best_line_accuracy()
    print(f"      the best of {lines:,} lines: accuracy {best:.0%} (3 of 4 points; no line gets all four)")
    params = train_hidden()  # one hidden tanh layer of 2 units bends the boundary
    plot(params, out)
    print(f"input space beside hidden space: {out}")
    assert linear < 1.0 and best == 0.75
    print("a single linear layer fails on XOR; one hidden layer solves it")


if __name__ == "__main__":
    main()
