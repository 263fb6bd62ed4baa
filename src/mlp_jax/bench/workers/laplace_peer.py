"""laplace-torch (PyTorch) in its own process: the Laplace posterior of the very net, data and weights that
mlp-jax hands it (an .npz file: ``w0, b0, w1, ...`` with each ``w`` (d_in, d_out) as mlp-jax stores it,
``x``, ``y`` for fitting, ``x_test`` for the predictive), in float64.

The request holds ``cases``, each with: problem (the .npz path), likelihood, subset ("all" | "last_layer"),
structure ("diag" | "kron" | "full"), prior_precision, sigma_noise, batch_size (the DataLoader's), activation,
backend ("curvlinops", laplace-torch's default, or "backpack"), priors (a list of [prior_precision,
sigma_noise] at which to evaluate the log marginal likelihood again), optimize (run
``optimize_prior_precision(method="marglik")`` with its defaults), repeats (time ``fit`` that many times).

Answer: per case, the log marginal likelihoods, the GLM predictive at x_test (probit probabilities, or f_mu
and f_var for regression), the optimized prior precision and fit seconds; the versions.
"""

import importlib.metadata
import statistics
import time

import numpy as np
import torch
import torch.utils.data
from _common import answer, request
from laplace import Laplace
from laplace.curvature import BackPackGGN, CurvlinopsGGN

req = request()
torch.set_default_dtype(torch.float64)
ACTIVATIONS = {
    "relu": torch.nn.ReLU,
    "tanh": torch.nn.Tanh,
    "sigmoid": torch.nn.Sigmoid,
    "gelu": torch.nn.GELU,
    "silu": torch.nn.SiLU,
    "softplus": torch.nn.Softplus,
    "elu": torch.nn.ELU,
    "identity": torch.nn.Identity,
}
BACKENDS = {"curvlinops": CurvlinopsGGN, "backpack": BackPackGGN}


def model_of(data, activation: str) -> torch.nn.Sequential:
    depth = sum(1 for k in data.files if k.startswith("w"))
    layers = []
    for l in range(depth):
        w = torch.as_tensor(data[f"w{l}"])  # (d_in, d_out)
        linear = torch.nn.Linear(w.shape[0], w.shape[1])
        with torch.no_grad():
            linear.weight.copy_(w.T)
            linear.bias.copy_(torch.as_tensor(data[f"b{l}"]))
        layers += [linear, ACTIVATIONS[activation]()]
    return torch.nn.Sequential(*layers[:-1]).eval()


def run(case: dict) -> dict:
    """One posterior: fit, log marginal likelihoods, predictive, optimized prior, fit seconds."""
    torch.manual_seed(0)
    if case["activation"] not in ACTIVATIONS:
        return {"error": f"no activation {case['activation']!r}; expected one of {list(ACTIVATIONS)}"}
    data = np.load(case["problem"], allow_pickle=False)
    model = model_of(data, case["activation"])
    x = torch.as_tensor(data["x"])
    y = torch.as_tensor(data["y"])
    y = y.long() if case["likelihood"] == "classification" else y.double()
    dataset = torch.utils.data.TensorDataset(x, y)
    loader = torch.utils.data.DataLoader(dataset, batch_size=case.get("batch_size") or len(x))

    def fitted():
        la = Laplace(
            model,
            case["likelihood"],
            subset_of_weights=case["subset"],
            hessian_structure=case["structure"],
            prior_precision=case["prior_precision"],
            sigma_noise=case["sigma_noise"],
            backend=BACKENDS[case.get("backend", "curvlinops")],
        )
        la.fit(loader)
        return la

    la = fitted()
    out = {"log_marginal_likelihood": float(la.log_marginal_likelihood())}
    out["log_marginal_likelihoods"] = [
        float(la.log_marginal_likelihood(torch.tensor(p), None if s is None else torch.tensor(s)))
        for p, s in case.get("priors", [])
    ]
    la.prior_precision = case["prior_precision"]
    if case["likelihood"] == "regression":
        la.sigma_noise = case["sigma_noise"]
    x_test = torch.as_tensor(data["x_test"])
    if case["likelihood"] == "classification":
        out["probit"] = la(x_test, pred_type="glm", link_approx="probit").tolist()
    else:
        f_mu, f_var = la(x_test, pred_type="glm")
        out["f_mu"], out["f_var"] = f_mu.tolist(), f_var.tolist()
    if case.get("optimize"):
        la.optimize_prior_precision(pred_type="glm", method="marglik")
        out["optimized_prior_precision"] = float(la.prior_precision.reshape(-1)[0])
    if case.get("repeats"):
        samples = []
        for _ in range(case["repeats"]):
            start = time.perf_counter()
            fitted()
            samples.append(time.perf_counter() - start)
        out["fit_s"] = {"median": statistics.median(samples), "min": min(samples), "samples": samples}
    return out


answer(
    {
        "laplace_version": importlib.metadata.version("laplace-torch"),
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
        "results": [run(case) for case in req["cases"]],
    }
)
