"""The manual pass's matmul choices (`mlp_jax.core.matmul`), each timed against autodiff in one process.

    python benchmarks/experiments/layouts.py [--keep-freed-memory] [CONFIG ...]

CONFIG is DEPTHxWIDTHxBATCH (784 inputs, 10 classes, ReLU, softmax CE; default: the bench's small,
medium and large plus two wide ones). For each, one sgd step (`make_update`) with the manual gradient
in the ``"batch"`` layout, in the ``"feature"`` layout (both with the batch whole), in the feature
layout with the batch in two parts, with ``"auto"`` for both, and with autodiff, samples alternating.
Then the tiny 2-8-1 XOR net fused 10,000 steps per call, with tiny dots as fused products (the library)
and as ``dot_general`` (as before). ``--keep-freed-memory`` applies `mlp_jax.keep_freed_memory` first,
as ``mlp-jax bench`` does.

What it showed on the 2-core CPU (float32, medians of ratios to autodiff):
- feature layout: 4x1024x4096 0.85-0.91, 1x1024x4096 0.84, 2x1024x1024 0.92, 2x512x2048 0.97;
  3x256x1024 1.00, 2x64x128 1.01-1.12, 2x128x2048 1.27: hence "auto" = feature only when wide;
- the batch layout with ``a.T`` materialised for the dW dot (so that it too runs on YNNPACK): 1.04-1.20
  on everything but 2x64x128, where it was 0.92-0.96 in some processes and 1.05 in others;
- feature layout with the bias folded into the dot (a row of ones): 7 % slower than without;
- the batch layout with ``delta.T`` materialised for the dW dots (``dW.T = delta.T @ a`` on YNNPACK, then
  transposed into the optimizer): 2x64x128 1.02-1.03 (first layer only: 1.00-1.02), 3x256x1024 1.24-1.27
  (first layer only: 1.10-1.13); Eigen's dW dot, as autodiff has it, was the fastest on both;
- an optimization barrier making each layer's delta dot wait for its dW dot (so that one dot at a
  time has both cores): 3-5 % faster when first measured with one instance per variant; 219.3 vs 219.3 ms
  with two instances each, pooled (4x1024x4096, sgd), so it was removed;
- a mixed layout, the forward pass in the batch layout and the deltas in the feature layout (every dot
  in YNNPACK's form with no transpose materialised; the ReLU mask and the weight gradients read their
  operands transposed inside fused kernels): 2x64x128 1.01-1.02, 3x256x1024 1.26-1.28, so not used;
- XLA's ``--xla_cpu_experimental_ynn_fusion_type=dot,eltwise,...``: forward 12 % faster in the batch
  layout, whole feature-layout step 12-30 % slower, so not used;
- tiny dots as fused products: XOR 0.86 M -> 5.4 M fused steps/s; they lose above ~32k MACs a dot;
- the batch in two parts (feature layout), against one, side by side: 4x1024x4096 0.94-0.99 over five
  runs (four parts: the same as two), 2x2048x4096 0.97, 1x512x2048 0.98, 2x1024x1024 1.00,
  3x512x2048 1.00: hence "auto" = two parts from batch 4096 on.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import optax
from _timing import compare_updates

import mlp_jax as mj
from mlp_jax.core import matmul
from mlp_jax.training.steps import make_fused_update, make_update

LOSS = "softmax_cross_entropy"


def layouts(spec: str) -> None:
    depth, width, batch = (int(v) for v in spec.split("x"))
    params = mj.init_params(jax.random.key(0), [784] + [width] * depth + [10])
    x = jax.random.normal(jax.random.key(1), (batch, 784))
    y = jax.random.randint(jax.random.key(2), (batch,), 0, 10)
    opt = optax.sgd(0.01)

    def manual(layout, parts):
        return lambda p, x, y, sample_weight=None, key=None: mj.backprop(
            p, x, y, "relu", LOSS, sample_weight, layout=layout, batch_parts=parts
        )

    variants = {
        "batch": ("batch", 1),
        "feature": ("feature", 1),
        "feature_2parts": ("feature", 2),
        "auto": ("auto", "auto"),
    }
    updates = {name: make_update(opt, grad=manual(*v), activation="relu", loss=LOSS) for name, v in variants.items()}
    updates["autodiff"] = make_update(opt, grad="autodiff", activation="relu", loss=LOSS)
    t = {name: r["median_s"] for name, r in compare_updates(updates, params, opt.init, x, y, repeats=9).items()}
    auto = matmul.choose_layout("auto", [784] + [width] * depth + [10], batch, jnp.float32)
    print(
        f"{spec:12s} "
        + "  ".join(f"{k} {v * 1e3:8.3f} ms ({v / t['autodiff']:.3f})" for k, v in t.items())
        + f"   auto = {auto}",
        flush=True,
    )


def tiny_xor(steps: int = 10_000) -> None:
    x = jnp.asarray([[0, 0], [0, 1], [1, 0], [1, 1]], jnp.float32)
    y = jnp.asarray([[0], [1], [1], [0]], jnp.float32)
    params = mj.init_params(jax.random.key(0), [2, 8, 1])
    opt = optax.sgd(0.1)
    kw = dict(activation="relu", loss="sigmoid_binary_cross_entropy", losses="last")
    updates = {"fused_products": make_fused_update(opt, steps, grad="manual", **kw)}
    tiny, matmul.TINY_DOT = matmul.TINY_DOT, 0  # read when traced: every dot a dot_general
    try:
        updates["dot_general"] = make_fused_update(opt, steps, grad="manual", **kw)
        p = jax.tree.map(jnp.copy, params)
        jax.block_until_ready(updates["dot_general"](p, opt.init(p), x, y))  # trace now, with TINY_DOT = 0
    finally:
        matmul.TINY_DOT = tiny
    t = {name: r["median_s"] for name, r in compare_updates(updates, params, opt.init, x, y, repeats=5).items()}
    print("xor 2-8-1 fused: " + "  ".join(f"{k} {steps / v / 1e6:.2f} M steps/s" for k, v in t.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "configs", nargs="*", default=["2x64x128", "3x256x1024", "2x512x2048", "2x1024x1024", "4x1024x4096"]
    )
    parser.add_argument("--keep-freed-memory", action="store_true")
    args = parser.parse_args()
    if args.keep_freed_memory:
        print("malloc:", mj.keep_freed_memory())
    for spec in args.configs:
        layouts(spec)
    tiny_xor()


if __name__ == "__main__":
    main()
