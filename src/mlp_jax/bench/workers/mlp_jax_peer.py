"""mlp-jax in its own process: an sgd step per config (mode "steps"), peak RSS of adam training with or
without donation (mode "memory"), or seconds to a target test accuracy on digits (mode "digits")."""

import time
from pathlib import Path

import jax
import jax.numpy as jnp
import optax
from _common import answer, request, time_steps

import mlp_jax as mj
from mlp_jax.bench.configs import Config, make_problem
from mlp_jax.training.steps import init_train_state, make_evaluate, make_train_epoch, make_update

req = request()
result = {"version": mj.__version__, "device": jax.default_backend()}


def problem(config: dict):
    """The same problem the in-process benchmark times (`mlp_jax.bench.configs.make_problem`)."""
    return make_problem(Config(**config))


def status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


if req["mode"] == "steps":
    result["configs"] = {}
    for config in req["configs"]:
        params, x, y = problem(config)
        optimizer = optax.sgd(0.01)
        update = make_update(optimizer, activation="relu", loss="softmax_cross_entropy", grad="manual")
        state = [params, optimizer.init(params)]

        def call():
            state[0], state[1], loss = update(state[0], state[1], x, y)
            return loss

        result["configs"][config["name"]] = time_steps(call, jax.block_until_ready, req["repeats"], req["min_sample"])
elif req["mode"] == "memory":
    params, x, y = problem(req["config"])
    optimizer = optax.adam(1e-3)
    update = make_update(
        optimizer, activation="relu", loss="softmax_cross_entropy", grad="manual", donate=req["donate"]
    )
    state = [params, optimizer.init(params)]
    del params  # the state list holds the only reference: a donated buffer is really free to reuse
    compiled = update.lower(state[0], state[1], x, y).compile()  # compile ahead: its memory is not counted
    jax.block_until_ready(state)
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS (VmHWM) to the current RSS
    start = status_bytes("VmRSS")
    before = jax.devices()[0].memory_stats()  # on a GPU: the allocator's counts (None on the CPU)
    for _ in range(req["steps"]):
        state[0], state[1], loss = compiled(state[0], state[1], x, y)
        jax.block_until_ready(loss)
    peak = status_bytes("VmHWM")
    result.update(donate=req["donate"], rss_start_bytes=start, rss_peak_bytes=peak, train_peak_bytes=peak - start)
    after = jax.devices()[0].memory_stats()
    if before and after and "peak_bytes_in_use" in after:
        result["device_peak_bytes"] = after["peak_bytes_in_use"]
        # the allocator's peak cannot be reset: training's own peak shows only if it rose above the
        # compile-time one (autotuning scratch, say)
        if after["peak_bytes_in_use"] > before.get("peak_bytes_in_use", 0):
            result["device_train_peak_bytes"] = after["peak_bytes_in_use"] - before.get("bytes_in_use", 0)
elif req["mode"] == "digits":
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x / 16.0, y, test_size=0.2, random_state=0, stratify=y)
    x_train, x_test = jnp.asarray(x_train, jnp.float32), jnp.asarray(x_test, jnp.float32)
    y_train, y_test = jnp.asarray(y_train, jnp.int32), jnp.asarray(y_test, jnp.int32)
    start = time.perf_counter()
    params = mj.init_params(jax.random.key(0), [64, *req["hidden"], 10])
    optimizer = optax.adam(1e-3)
    epoch_fn = make_train_epoch(optimizer, activation="relu", loss="softmax_cross_entropy", batch_size=req["batch"])
    evaluate = make_evaluate(activation="relu", loss="softmax_cross_entropy")
    state = init_train_state(params, optimizer, jax.random.key(1))
    seconds, accuracy = 0.0, 0.0
    for epoch in range(1, req["max_epochs"] + 1):  # noqa: B007 (the count is reported after the loop)
        tick = time.perf_counter()
        state, _ = epoch_fn(state, x_train, y_train)
        jax.block_until_ready(state)
        seconds += time.perf_counter() - tick  # training only, as for sklearn; includes the first compile
        accuracy = float(evaluate(state.params, x_test, y_test)["accuracy"])
        if accuracy >= req["target"]:
            break
    result.update(seconds=seconds, epochs=epoch, accuracy=accuracy, reached=accuracy >= req["target"])
answer(result)
