"""numpy's matmul peak (float32, float64), and which BLAS kernel ran (threadpoolctl)."""

import numpy as np
from _common import answer, matmul_peak, request

req = request()
dtypes = [d for d in req["dtypes"] if d in ("float32", "float64")]  # numpy has no bfloat16 matmul
rng = np.random.default_rng(0)
result = matmul_peak(
    np.dot,
    lambda shape, dtype: rng.standard_normal(shape).astype(dtype),
    lambda out: None,
    dtypes,
    req["repeats"],
    req["min_sample"],
    req["shapes"],
)
try:
    from threadpoolctl import threadpool_info

    blas = [
        f"{i.get('internal_api')} {i.get('version')} {i.get('architecture')} threads={i.get('num_threads')}"
        for i in threadpool_info()
        if i.get("user_api") == "blas"
    ]
    result["blas"] = "; ".join(blas)
except ImportError:
    result["blas"] = "threadpoolctl not installed"
result["version"] = np.__version__
answer(result)
