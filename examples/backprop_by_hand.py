"""One training step of a 2-2-1 sigmoid net on XOR, with every number of the chain rule, checked.

    python examples/backprop_by_hand.py

The script computes the step with plain jax.numpy, equation by equation, as docs/gradients.md writes
them (layer l has input a_l, a_0 = x; z_l = a_l @ W_l + b_l; delta_l = dL/dz_l):

    forward:   z_0 = a_0 @ W_0 + b_0,  a_1 = sigmoid(z_0),  z_1 = a_1 @ W_1 + b_1 (the logit)
    loss:      L = mean_i [-y_i log p_i - (1 - y_i) log(1 - p_i)],  p = sigmoid(z_1)
    backward:  delta_1 = dL/dz_1 = (p - y) / B
               dW_1 = a_1.T @ delta_1,  db_1 = sum over the batch of delta_1
               delta_0 = (delta_1 @ W_1.T) * sigmoid'(z_0),  sigmoid'(z) = sigmoid(z) (1 - sigmoid(z))
               dW_0 = a_0.T @ delta_0,  db_0 = sum over the batch of delta_0
    update:    W <- W - lr dW,  b <- b - lr db

An mlp-jax net's output layer is linear: it returns the logit z_1, not p. The output sigmoid lives in
the loss, ``sigmoid_binary_cross_entropy``, which is the cross-entropy of p = sigmoid(z_1). Taken
together, sigmoid and cross-entropy have the simple gradient ``p - y`` with respect to the logit (the
sigmoid's own derivative cancels), so delta_1 needs no sigmoid'(z_1).

Each quantity is checked against references that share none of this code: the forward pass and the loss
against ``mj.forward_with_cache`` and ``mj.loss``; delta_1 and delta_0 against ``jax.grad`` of the loss
with respect to z_1 and z_0; dW and db against ``jax.grad(mj.loss)`` and the hand-written ``mj.backprop``;
the updated weights against ``optax.sgd``. Everything runs in float64, where they all agree to far below
the tolerance; a mismatch prints MISMATCH and the script exits with 1.
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

import mlp_jax as mj

ACTIVATION, LOSS = "sigmoid", "sigmoid_binary_cross_entropy"
LR = 0.5  # the learning rate of the sgd step
TOL = 1e-12  # the largest difference from a reference that passes; float64 rounding is ~1e-16


def sigmoid(z: jax.Array) -> jax.Array:
    return 1 / (1 + jnp.exp(-z))


def sigmoid_derivative(z: jax.Array) -> jax.Array:
    s = sigmoid(z)
    return s * (1 - s)


def by_hand(params: mj.Params, x: jax.Array, y: jax.Array) -> dict[str, jax.Array]:
    """Every number of the step, in order, for x (B, 2) and y (B, 1)."""
    (w0, b0), (w1, b1) = params
    q: dict[str, jax.Array] = {}
    q["z_0 = a_0 @ W_0 + b_0"] = z0 = x @ w0 + b0[None, :]  # (B, 2); b_0 added to every row
    q["a_1 = sigmoid(z_0)"] = a1 = sigmoid(z0)  # (B, 2)
    q["z_1 = a_1 @ W_1 + b_1"] = z1 = a1 @ w1 + b1[None, :]  # (B, 1), the logit
    q["p = sigmoid(z_1)"] = p = sigmoid(z1)  # (B, 1)
    q["L = mean(-y log p - (1-y) log(1-p))"] = jnp.mean(-y * jnp.log(p) - (1 - y) * jnp.log(1 - p))
    q["delta_1 = dL/dz_1 = (p - y) / B"] = delta1 = (p - y) / x.shape[0]  # (B, 1)
    q["dW_1 = a_1.T @ delta_1"] = dw1 = a1.T @ delta1  # (2, 1)
    q["db_1 = sum_batch delta_1"] = db1 = delta1.sum(axis=0)  # (1,)
    q["delta_0 = (delta_1 @ W_1.T) * sigmoid'(z_0)"] = delta0 = (delta1 @ w1.T) * sigmoid_derivative(z0)  # (B, 2)
    q["dW_0 = a_0.T @ delta_0"] = dw0 = x.T @ delta0  # (2, 2)
    q["db_0 = sum_batch delta_0"] = db0 = delta0.sum(axis=0)  # (2,)
    q["new W_0 = W_0 - lr dW_0"] = w0 - LR * dw0
    q["new b_0 = b_0 - lr db_0"] = b0 - LR * db0
    q["new W_1 = W_1 - lr dW_1"] = w1 - LR * dw1
    q["new b_1 = b_1 - lr db_1"] = b1 - LR * db1
    return q


def references(params: mj.Params, x: jax.Array, y: jax.Array) -> list[dict[str, jax.Array]]:
    """For each quantity of `by_hand`, in the same order, its references by name."""
    w1, b1 = params[1]
    cache = mj.forward_with_cache(params, x, ACTIVATION)  # every layer's input and every hidden z
    loss_of_z1 = lambda z1: optax.losses.sigmoid_binary_cross_entropy(z1, y).mean()
    loss_of_z0 = lambda z0: loss_of_z1(jax.nn.sigmoid(z0) @ w1 + b1[None, :])
    autodiff = jax.grad(mj.loss)(params, x, y, ACTIVATION, LOSS)
    value, manual = mj.backprop(params, x, y, ACTIVATION, LOSS)
    sgd = optax.sgd(LR)
    updates, _ = sgd.update(autodiff, sgd.init(params))
    stepped = optax.apply_updates(params, updates)
    return [
        {"mj.forward_with_cache": cache.pre_activations[0]},
        {"mj.forward_with_cache": cache.inputs[1]},
        {"mj.forward_with_cache": cache.logits, "mj.forward": mj.forward(params, x, ACTIVATION)},
        {"jax.nn.sigmoid": jax.nn.sigmoid(cache.logits)},
        {"mj.loss": mj.loss(params, x, y, ACTIVATION, LOSS), "mj.backprop": value},
        {"jax.grad": jax.grad(loss_of_z1)(cache.logits)},
        {"jax.grad": autodiff[1].w, "mj.backprop": manual[1].w},
        {"jax.grad": autodiff[1].b, "mj.backprop": manual[1].b},
        {"jax.grad": jax.grad(loss_of_z0)(cache.pre_activations[0])},
        {"jax.grad": autodiff[0].w, "mj.backprop": manual[0].w},
        {"jax.grad": autodiff[0].b, "mj.backprop": manual[0].b},
        {"optax.sgd": stepped[0].w},
        {"optax.sgd": stepped[0].b},
        {"optax.sgd": stepped[1].w},
        {"optax.sgd": stepped[1].b},
    ]


def _difference(value: np.ndarray, ref: np.ndarray) -> float:
    """The largest absolute difference, inf when the shapes differ or a value is not finite."""
    if value.shape != ref.shape or not np.all(np.isfinite(value)):
        return float("inf")
    return float(np.max(np.abs(value - ref)))


def show(equation: str, value: jax.Array, refs: dict[str, jax.Array] | None = None) -> float:
    """Print one quantity (its equation, shape, numbers) and its checks against `refs`, if any; return
    the largest difference from them."""
    value = np.asarray(value)
    rows = np.atleast_2d(value) if value.ndim < 2 else value
    text = [" ".join(f"{v:8.4f}" for v in row) for row in rows]
    worst, verdict = 0.0, ""
    if refs:
        worst = max(_difference(value, np.asarray(ref)) for ref in refs.values())
        verdict = ("ok" if worst <= TOL else f"MISMATCH, off by {worst:.3g}") + ": " + ", ".join(refs)
    print(f"  {equation:<46}{value.shape!s:>7}  {text[0]:<18}  {verdict}".rstrip())
    for line in text[1:]:
        print(f"  {'':<46}{'':>7}  {line}")
    return worst


def main() -> int:
    if not jax.config.jax_enable_x64:
        raise SystemExit("backprop_by_hand.py needs JAX's 64-bit mode: jax.config.update('jax_enable_x64', True)")
    f64 = jnp.float64
    x = jnp.array([[0, 0], [0, 1], [1, 0], [1, 1]], f64)  # a_0: the four XOR points, one per row
    y = jnp.array([[0], [1], [1], [0]], f64)  # the XOR of each row
    params = (  # W_0 (2, 2), b_0 (2,); W_1 (2, 1), b_1 (1,): small numbers, easy to follow by hand
        mj.Layer(w=jnp.array([[0.5, -0.6], [0.4, 0.7]], f64), b=jnp.array([0.1, -0.2], f64)),
        mj.Layer(w=jnp.array([[0.8], [-0.5]], f64), b=jnp.array([0.3], f64)),
    )
    print(f"One sgd step of a 2-2-1 sigmoid net on XOR, by hand (float64, batch B = 4, lr = {LR}).")
    print("The net outputs the logit z_1; the loss (sigmoid_binary_cross_entropy) applies the sigmoid.\n")
    print("given")
    for name, array in (("a_0 = x", x), ("y", y), ("W_0", params[0].w), ("b_0", params[0].b)):
        show(name, array)
    for name, array in (("W_1", params[1].w), ("b_1", params[1].b)):
        show(name, array)
    hand = by_hand(params, x, y)  # op by op, as written
    refs = jax.jit(lambda *args: references(*args))(params, x, y)  # in one compiled call: faster
    headings = {0: "forward", 5: "backward, from the loss to the input", 11: f"update, lr = {LR}"}
    worst = 0.0
    for i, (equation, value) in enumerate(hand.items()):
        if i in headings:
            print(f"\n{headings[i]}")
        worst = max(worst, show(equation, value, refs[i]))
    new = list(hand.values())[11:]  # new W_0, b_0, W_1, b_1
    new_params = (mj.Layer(w=new[0], b=new[1]), mj.Layer(w=new[2], b=new[3]))
    loss = jax.jit(mj.loss, static_argnums=(3, 4))
    before, after = (float(loss(p, x, y, ACTIVATION, LOSS)) for p in (params, new_params))
    print(f"\nthe step lowers the loss from {before:.6f} to {after:.6f}")
    print(f"largest difference from a reference: {worst:.2g} (tolerance {TOL:g})")
    if worst > TOL:
        print("MISMATCH: the hand-written chain rule disagrees with its references", file=sys.stderr)
        return 1
    if not after < before:
        print("the step did not lower the loss", file=sys.stderr)
        return 1
    print("every quantity agrees with jax.grad and mj.backprop")
    return 0


if __name__ == "__main__":
    jax.config.update("jax_enable_x64", True)  # float64: the checks are to 1e-12
    sys.exit(main())
