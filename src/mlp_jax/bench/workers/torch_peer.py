"""PyTorch eager: its matmul peak (mode "peak"), or an sgd step per config (mode "steps").

On the CPU unless the request asks for "cuda" (the bench does when JAX runs on a GPU) and this PyTorch
has CUDA; the answer says which device it used."""

import torch
from _common import answer, hidden, matmul_peak, request, time_steps

req = request()
DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16}
torch.manual_seed(0)
device = "cuda" if req.get("device") == "cuda" and torch.cuda.is_available() else "cpu"
sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
if device == "cuda":  # float32 matmuls in TF32, as JAX's default precision runs them on a GPU
    torch.set_float32_matmul_precision("high")
result = {
    "version": torch.__version__,
    "device": device,
    "threads": torch.get_num_threads(),
    "float32_matmul_precision": torch.get_float32_matmul_precision(),
}
if req["mode"] == "peak":
    shapes = req["shapes"] if device == "cuda" else req.get("cpu_shapes", req["shapes"])
    result.update(
        matmul_peak(
            torch.matmul,
            lambda shape, dtype: torch.randn(shape, dtype=DTYPES[dtype], device=device),
            lambda out: sync(),
            req["dtypes"],
            req["repeats"],
            req["min_sample"],
            shapes,
        )
    )
else:
    result["configs"] = {}
    for config in req["configs"]:
        d_in, width, depth, d_out = hidden(config)
        dtype = DTYPES[config["dtype"]]
        layers = []
        for a, b in zip(config["sizes"][:-1], config["sizes"][1:]):
            layers += [torch.nn.Linear(a, b, dtype=dtype), torch.nn.ReLU()]
        model = torch.nn.Sequential(*layers[:-1]).to(device)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        x = torch.randn(config["batch"], d_in, dtype=dtype, device=device)
        y = torch.randint(0, d_out, (config["batch"],), device=device)
        loss_fn = torch.nn.CrossEntropyLoss()

        def step():
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            return loss

        result["configs"][config["name"]] = time_steps(step, lambda out: out.item(), req["repeats"], req["min_sample"])
answer(result)
