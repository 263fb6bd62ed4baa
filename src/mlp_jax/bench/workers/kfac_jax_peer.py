"""kfac-jax's optimizer (DeepMind; its adaptive learning rate, momentum and damping) in its own process, on the
MLP and split mlp-jax hands it (an .npz file: ``w0, b0, ...`` initial weights with each ``w`` (d_in, d_out),
``x_train, y_train, x_test, y_test`` with integer labels), softmax cross-entropy, float32, CPU.

Request keys: problem, activation ("relu" or "tanh"), epochs, batch_size, seed, target (a test accuracy at
which to stop; 0: never), l2_reg, initial_damping (default 1). The model is written with plain ``x @ w + b``
so that kfac-jax's graph matcher finds its dense layers.

Answer: per epoch, the cumulative training seconds (evaluation excluded), the steps, the mean training loss
and the test accuracy; the versions.
"""

import importlib.metadata
import time

import jax
import jax.numpy as jnp
import kfac_jax
import numpy as np
from _common import answer, request

req = request()
ACTIVATIONS = {"relu": jax.nn.relu, "tanh": jnp.tanh}
phi = ACTIVATIONS[req["activation"]]
data = np.load(req["problem"], allow_pickle=False)
depth = sum(1 for k in data.files if k.startswith("w") and k[1:].isdigit())
params = [(jnp.asarray(data[f"w{l}"]), jnp.asarray(data[f"b{l}"])) for l in range(depth)]
x_train, y_train = jnp.asarray(data["x_train"]), jnp.asarray(data["y_train"])
x_test, y_test = jnp.asarray(data["x_test"]), jnp.asarray(data["y_test"])


def logits_of(params, x):
    for w, b in params[:-1]:
        x = phi(x @ w + b)
    w, b = params[-1]
    return x @ w + b


def loss_fn(params, batch):
    x, y = batch
    logits = logits_of(params, x)
    kfac_jax.register_softmax_cross_entropy_loss(logits, y)
    return jnp.mean(-jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))


accuracy = jax.jit(lambda p: jnp.mean(jnp.argmax(logits_of(p, x_test), axis=1) == y_test))
optimizer = kfac_jax.Optimizer(
    value_and_grad_func=jax.value_and_grad(loss_fn),
    l2_reg=req.get("l2_reg", 0.0),
    use_adaptive_learning_rate=True,
    use_adaptive_momentum=True,
    use_adaptive_damping=True,
    initial_damping=req.get("initial_damping", 1.0),
    multi_device=False,
    num_burnin_steps=0,
)
key = jax.random.key(req["seed"])
key, init_key = jax.random.split(key)
batch = req["batch_size"]
n = x_train.shape[0]
state = optimizer.init(params, init_key, (x_train[:batch], y_train[:batch]))
history, train_s, steps = [], 0.0, 0
rng = np.random.default_rng(req["seed"])
for epoch in range(1, req["epochs"] + 1):
    order = rng.permutation(n)
    losses = []
    start = time.perf_counter()
    # full batches only: kfac-jax compiles its step for one batch shape
    for i in range(0, n - batch + 1, batch):
        idx = order[i : i + batch]
        key, step_key = jax.random.split(key)
        params, state, stats = optimizer.step(
            params, state, step_key, batch=(x_train[idx], y_train[idx]), global_step_int=steps
        )
        losses.append(stats["loss"])
        steps += 1
    jax.block_until_ready(params)
    train_s += time.perf_counter() - start
    acc = float(accuracy(params))
    history.append(
        {"epoch": epoch, "steps": steps, "train_s": train_s, "train_loss": float(np.mean(losses)), "test_accuracy": acc}
    )
    if req.get("target") and acc >= req["target"]:
        break
answer({"kfac_jax_version": importlib.metadata.version("kfac-jax"), "jax_version": jax.__version__, "history": history})
