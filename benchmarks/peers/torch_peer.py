"""PyTorch CPU eager: its matmul peak (mode "peak"), or an sgd step per config (mode "steps")."""

import torch
from _common import answer, hidden, matmul_peak, request, time_steps

req = request()
DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16}
torch.manual_seed(0)
result = {"version": torch.__version__, "device": "cpu", "threads": torch.get_num_threads()}  # eager on the CPU, always
if req["mode"] == "peak":
    result.update(matmul_peak(torch.matmul, lambda shape, dtype: torch.randn(shape, dtype=DTYPES[dtype]),
                              lambda out: None, req["dtypes"], req["repeats"], req["min_sample"], req["shapes"]))
else:
    result["configs"] = {}
    for config in req["configs"]:
        d_in, width, depth, d_out = hidden(config)
        dtype = DTYPES[config["dtype"]]
        layers = []
        for a, b in zip(config["sizes"][:-1], config["sizes"][1:]):
            layers += [torch.nn.Linear(a, b, dtype=dtype), torch.nn.ReLU()]
        model = torch.nn.Sequential(*layers[:-1])
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        x = torch.randn(config["batch"], d_in, dtype=dtype)
        y = torch.randint(0, d_out, (config["batch"],))
        loss_fn = torch.nn.CrossEntropyLoss()

        def step():
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            return loss

        result["configs"][config["name"]] = time_steps(step, lambda out: out.item(), req["repeats"],
                                                       req["min_sample"])
answer(result)
