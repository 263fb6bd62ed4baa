"""PyHessian (PyTorch) in its own process: the top Hessian eigenvalues (power iteration with deflation, its
defaults: at most 100 iterations, relative tolerance 1e-3) and the Hutchinson trace of the mean loss of the
very net, data and weights that mlp-jax hands it (an .npz file: ``w0, b0, ...`` with each ``w`` (d_in, d_out),
``x``, ``y``), on the CPU, as one batch (PyHessian's ``data=`` mode).

Request keys: activation, loss ("softmax_cross_entropy" or "mse"), dtype, top_n, repeats, trace (bool).
Answer: the eigenvalues of the last repeat, seconds per call (median, min), versions.
"""

import importlib.metadata
import statistics
import time

import numpy as np
import torch
from _common import answer, request
from pyhessian import hessian

req = request()
DTYPES = {"float32": torch.float32, "float64": torch.float64}
ACTIVATIONS = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid}
LOSSES = {"softmax_cross_entropy": torch.nn.CrossEntropyLoss, "mse": torch.nn.MSELoss}
if req["activation"] not in ACTIVATIONS or req["loss"] not in LOSSES:
    raise SystemExit(f"PyHessian peer: no {req['activation']!r} / {req['loss']!r}")
dtype = DTYPES[req["dtype"]]
torch.set_default_dtype(dtype)
torch.manual_seed(0)
data = np.load(req["problem"], allow_pickle=False)
depth = sum(1 for k in data.files if k.startswith("w"))
layers = []
for l in range(depth):
    w = torch.as_tensor(data[f"w{l}"]).to(dtype)
    linear = torch.nn.Linear(w.shape[0], w.shape[1])
    with torch.no_grad():
        linear.weight.copy_(w.T)
        linear.bias.copy_(torch.as_tensor(data[f"b{l}"]).to(dtype))
    layers += [linear, ACTIVATIONS[req["activation"]]()]
model = torch.nn.Sequential(*layers[:-1])
x = torch.as_tensor(data["x"]).to(dtype)
y = torch.as_tensor(data["y"])
y = y.long() if req["loss"] == "softmax_cross_entropy" else y.to(dtype)
criterion = LOSSES[req["loss"]]()
result = {"pyhessian_version": importlib.metadata.version("pyhessian"), "torch_version": torch.__version__}
result["threads"] = torch.get_num_threads()
samples, values = [], None
for _ in range(req["repeats"]):
    start = time.perf_counter()
    h = hessian(model, criterion, data=(x, y), cuda=False)
    values, _ = h.eigenvalues(top_n=req["top_n"])
    samples.append(time.perf_counter() - start)
result["eigenvalues"] = [float(v) for v in values]
result["eigenvalues_s"] = {"median": statistics.median(samples), "min": min(samples), "samples": samples}
if req.get("trace"):
    samples = []
    for _ in range(req["repeats"]):
        start = time.perf_counter()
        h = hessian(model, criterion, data=(x, y), cuda=False)
        trace = h.trace()
        samples.append(time.perf_counter() - start)
    result["trace"] = float(np.mean(trace))
    result["trace_samples"] = len(trace)
    result["trace_s"] = {"median": statistics.median(samples), "min": min(samples), "samples": samples}
answer(result)
