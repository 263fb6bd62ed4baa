"""BackPACK (PyTorch) in its own process: the curvature quantities of `mlp-jax bench`'s curvature stage on
the very net, batch, dtype and weights the bench hands it (an .npz file: ``w0, b0, w1, ...`` with each
``w`` (d_in, d_out) as mlp-jax stores it, ``x``, ``y``, and ``v0_w, v0_b, ...`` for the vector products).

Mode "time": per quantity, its seconds per call and those of a plain ``loss.backward()`` alternating
sample by sample. Mode "values": every quantity once, in mlp-jax's layout (``w`` as (d_in, d_out), a
leading batch axis for per-example ones, KFAC factors as {"a", "g"} per layer), as nested lists.

BackPACK's conventions with ``reduction="mean"`` (the batch mean loss, as mlp-jax's): DiagGGN* and the
KFAC factors are those of the mean loss; SumGradSquared is sum_n (grad l_n / N)^2; Variance is
mlp-jax's grad_variance / N^2 (BackPACK divides the mean-reduced batch gradients by N once more); BatchL2Grad
gives each example's squared norm of grad l_n / N per parameter, summed, rooted and times N here.
"""

import importlib.metadata
import math
import statistics
import time

import backpack
import numpy as np
import torch
from _common import answer, request
from backpack import extensions as ext
from backpack.hessianfree.ggnvp import ggn_vector_product
from backpack.hessianfree.hvp import hessian_vector_product

req = request()
DTYPES = {"float32": torch.float32, "float64": torch.float64}
ACTIVATIONS = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid}
LOSSES = {
    "softmax_cross_entropy": torch.nn.CrossEntropyLoss,
    "mse": torch.nn.MSELoss,
    "sigmoid_binary_cross_entropy": torch.nn.BCEWithLogitsLoss,
}
# quantity -> (extension, the attribute it writes on each parameter)
EXTENSIONS = {
    "diag_ggn_exact": (lambda: ext.DiagGGNExact(), "diag_ggn_exact"),
    "diag_ggn_mc": (lambda: ext.DiagGGNMC(mc_samples=1), "diag_ggn_mc"),
    "batch_diag_ggn_exact": (lambda: ext.BatchDiagGGNExact(), "diag_ggn_exact_batch"),
    "diag_hessian": (lambda: ext.DiagHessian(), "diag_h"),
    "kfac_exact": (lambda: ext.KFLR(), "kflr"),
    "kfac_mc": (lambda: ext.KFAC(mc_samples=1), "kfac"),
    "sum_grad_squared": (lambda: ext.SumGradSquared(), "sum_grad_squared"),
    "grad_variance": (lambda: ext.Variance(), "variance"),
    "per_example_grad_norms": (lambda: ext.BatchL2Grad(), "batch_l2"),
}
FIRST_ORDER = ("sum_grad_squared", "grad_variance", "per_example_grad_norms")
torch.manual_seed(0)
device = "cuda" if req.get("device") == "cuda" and torch.cuda.is_available() else "cpu"
sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
if req["activation"] not in ACTIVATIONS or req["loss"] not in LOSSES:
    raise SystemExit(
        f"BackPACK peer: no {req['activation']!r} / {req['loss']!r}; expected {list(ACTIVATIONS)} / {list(LOSSES)}"
    )
dtype = DTYPES[req["dtype"]]
data = np.load(req["problem"], allow_pickle=False)
depth = sum(1 for k in data.files if k.startswith("w"))
layers = []
for l in range(depth):
    w = torch.as_tensor(data[f"w{l}"]).to(device, dtype)  # (d_in, d_out)
    linear = torch.nn.Linear(w.shape[0], w.shape[1], dtype=dtype, device=device)
    with torch.no_grad():
        linear.weight.copy_(w.T)
        linear.bias.copy_(torch.as_tensor(data[f"b{l}"]))
    layers += [linear, ACTIVATIONS[req["activation"]]()]
model = backpack.extend(torch.nn.Sequential(*layers[:-1]))
lossfunc = backpack.extend(LOSSES[req["loss"]]())
x = torch.as_tensor(data["x"]).to(device, dtype)
y = torch.as_tensor(data["y"]).to(device)
y = y.long() if req["loss"] == "softmax_cross_entropy" else y.to(dtype)
params = list(model.parameters())  # w0, b0, w1, b1, ...
v = [torch.as_tensor(data[f"v{i // 2}_{'wb'[i % 2]}"]).to(device, dtype) for i in range(len(params))]
v = [t.T.contiguous() if i % 2 == 0 else t for i, t in enumerate(v)]  # weights as torch's (out, in)


def gradient():
    model.zero_grad(set_to_none=True)
    lossfunc(model(x), y).backward()
    return [p.grad for p in params]


def extension_call(names):
    def call():
        model.zero_grad(set_to_none=True)
        loss = lossfunc(model(x), y)
        with backpack.backpack(*(EXTENSIONS[n][0]() for n in names)):
            loss.backward()
        out = {n: [getattr(p, EXTENSIONS[n][1]) for p in params] for n in names}
        if "per_example_grad_norms" in out:  # BackPACK: each parameter's squared norms of grad l_n / N
            out["per_example_grad_norms"] = torch.sqrt(sum(out["per_example_grad_norms"])) * x.shape[0]
        return out

    return call


def vector_product(kind):
    def call():
        output = model(x)
        loss = lossfunc(output, y)
        if kind == "ggn_vector_product":
            return ggn_vector_product(loss, output, model, v)
        return hessian_vector_product(loss, params, v)

    return call


def quantity(name):
    if name in EXTENSIONS:
        return extension_call([name])
    if name in ("ggn_vector_product", "hessian_vector_product"):
        return vector_product(name)
    if name == "backprop_with_first_order":  # the gradient and all three first-order quantities in one pass
        return extension_call(FIRST_ORDER)
    raise SystemExit(f"BackPACK peer: unknown quantity {name!r}")


def alternate(fns, repeats, min_sample):
    """Seconds per call of each of `fns`, its samples alternating with the others' (order reversed every
    repeat); every sample repeats its call until it lasts `min_sample` seconds."""
    inner = {}
    for name, fn in fns.items():
        fn(), sync()  # warm-up
        start = time.perf_counter()
        fn(), sync()
        inner[name] = max(1, math.ceil(min_sample / max(time.perf_counter() - start, 1e-7)))
    samples = {name: [] for name in fns}
    for r in range(repeats):
        for name in fns if r % 2 == 0 else list(fns)[::-1]:
            start = time.perf_counter()
            for _ in range(inner[name]):
                fns[name]()
            sync()
            samples[name].append((time.perf_counter() - start) / inner[name])
    return {n: {"median": statistics.median(s), "min": min(s), "max": max(s), "n": len(s)} for n, s in samples.items()}


def mlp_jax_layout(name, out):
    """BackPACK's per-parameter results as mlp-jax's per-layer [w (d_in, d_out), b], as nested lists."""
    if name == "per_example_grad_norms":
        return out.tolist()
    if name in ("kfac_exact", "kfac_mc"):  # weight: [G, A]; bias: [G]
        return [{"a": out[2 * l][1].tolist(), "g": out[2 * l][0].tolist()} for l in range(depth)]
    return [[out[2 * l].transpose(-1, -2).tolist(), out[2 * l + 1].tolist()] for l in range(depth)]


result = {"version": importlib.metadata.version("backpack-for-pytorch"), "device": device}
result["torch_version"] = torch.__version__
result["threads"] = torch.get_num_threads()
if req["mode"] == "values":
    values = {}
    for name in req["quantities"]:
        out = quantity(name)()
        if isinstance(out, dict):
            for key, val in out.items():
                values[key if name == "backprop_with_first_order" else name] = mlp_jax_layout(key, val)
        else:
            values[name] = mlp_jax_layout(name, out)
    result["values"] = values
else:
    result["gradient"] = {}
    result["quantities"] = {}
    for name in req["quantities"]:
        timed = alternate({"gradient": gradient, name: quantity(name)}, req["repeats"], req["min_sample"])
        result["gradient"][name] = timed["gradient"]
        result["quantities"][name] = timed[name]
answer(result)
