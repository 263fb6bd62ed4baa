"""`mlp_jax.training.distributed`: data-parallel training, sharded vs single device, the same computation two ways.

The test process has one CPU device, so the multi-device checks run in subprocesses with
``XLA_FLAGS=--xla_force_host_platform_device_count=4``: one script runs every check and prints JSON,
and the tests below read it. The multi-host checks start two processes on localhost (2 devices each)
that meet through `jax.distributed.initialize` and gloo.
"""

import json
import os
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import optax
import pytest

from conftest import tree_max_rel_error
from mlp_jax import Layer
from mlp_jax.training import distributed as dist
from mlp_jax.training.steps import make_update

TOL = 1e-5  # float32, 5 Adam steps or 3 epochs: sharded and single device differ by summation order only

COMMON = """
import json, sys
import numpy as np, jax, jax.numpy as jnp, optax
jax.config.update("jax_numpy_rank_promotion", "raise")
import mlp_jax as mj
from mlp_jax import Layer
from mlp_jax.training import distributed as dist
from mlp_jax.training.steps import init_train_state, make_train_epoch, make_update

def problem(seed, sizes, n):
    rng = np.random.default_rng(seed)
    params = tuple(mj.Layer(np.asarray(rng.standard_normal((a, b)) / np.sqrt(a), np.float32),
                            np.asarray(0.1 * rng.standard_normal(b), np.float32))
                   for a, b in zip(sizes[:-1], sizes[1:]))
    x = rng.standard_normal((n, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], n).astype(np.int32)
    w = rng.uniform(0.1, 2, n).astype(np.float32)
    return jax.tree.map(jnp.asarray, params), x, y, w

def rel(a, b):
    return max(float(np.max(np.abs(np.asarray(u) - np.asarray(v))) / max(np.max(np.abs(np.asarray(v))), 1e-30))
               for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))

def replicated_on(tree, mesh):
    devices = set(mesh.devices.flat)
    return all(l.sharding.is_fully_replicated and l.sharding.device_set == devices for l in jax.tree.leaves(tree))

def split_over_batch(sharding):
    return tuple(sharding.spec) in (("batch",), ("batch", None))

SIZES, LOSS, OPT = [5, 16, 3], "softmax_cross_entropy", optax.adam(1e-2)
"""

FOUR_DEVICES = (
    COMMON
    + """
out = {"device_count": jax.device_count()}
params, x, y, w = problem(0, SIZES, 32)
mesh = dist.make_mesh(4)
def feature(p, x, y, sample_weight=None, key=None):  # the manual pass in the (d, B) layout, sharded on axis 1
    return mj.backprop(p, x, y, "relu", LOSS, sample_weight, layout="feature")
for name, grad in (("manual", "manual"), ("autodiff", "autodiff"), ("feature", feature)):
    for weighted in (False, True):
        sw = w if weighted else None
        update = make_update(OPT, loss=LOSS, grad=grad, donate=False)
        p, s, ref_losses = params, OPT.init(params), []
        for _ in range(5):
            p, s, v = update(p, s, x, y, sw)
            ref_losses.append(float(v))
        sharded = dist.make_sharded_update(OPT, mesh, loss=LOSS, grad=grad)
        sp, ss = dist.replicate((params, OPT.init(params)), mesh)
        xs, ys = dist.shard_batch(x, mesh), dist.shard_batch(y, mesh)
        sws = None if sw is None else dist.shard_batch(sw, mesh)
        compiled = sharded.lower(sp, ss, xs, ys, sws).compile()
        losses = []
        for _ in range(5):
            sp, ss, v = compiled(sp, ss, xs, ys, sws)  # the compiled step itself: one compile, inspected below
            losses.append(float(v))
        hlo = compiled.as_text()
        out[f"update-{name}-{'weighted' if weighted else 'plain'}"] = {
            "params_rel": rel(sp, p), "loss_rel": rel(losses, ref_losses),
            "replicated": replicated_on((sp, ss, v), mesh),
            "x_input_split": split_over_batch(compiled.input_shardings[0][2]),
            "all_reduce": "all-reduce" in hlo, "per_device_x": "f32[8,5]" in hlo, "whole_x": "f32[32,5]" in hlo}

    # fused epochs with a partial last batch: n = 50, batches of 16, the last padded with 14 zero weights
    params_e, xe, ye, _ = problem(1, SIZES, 50)
    state = init_train_state(params_e, OPT, jax.random.key(3))
    epoch = make_train_epoch(OPT, loss=LOSS, grad=grad, batch_size=16, donate=False)
    ref, ref_losses = state, []
    for _ in range(3):
        ref, l = epoch(ref, jnp.asarray(xe), jnp.asarray(ye))
        ref_losses.append(np.asarray(l))
    sharded_epoch = dist.make_sharded_train_epoch(OPT, mesh, loss=LOSS, grad=grad, batch_size=16)
    st = dist.replicate(state, mesh)
    xd, yd = dist.place_dataset(xe, mesh), dist.place_dataset(ye, mesh)
    compiled = sharded_epoch.lower(st, xd, yd).compile()
    hlo = compiled.as_text()
    losses = []
    for _ in range(3):
        st, l = compiled(st, xd, yd)
        losses.append(np.asarray(l))
    out[f"epoch-{name}"] = {
        "params_rel": rel(st.params, ref.params), "loss_rel": rel(losses, ref_losses),
        "steps": [int(st.step), int(ref.step)], "replicated": replicated_on((st.params, st.opt_state), mesh),
        "all_reduce": "all-reduce" in hlo, "per_device_x": "f32[4,5]" in hlo}
    # the original state was not donated away by the sharded epoch
    out[f"epoch-{name}"]["input_alive"] = not any(l.is_deleted() for l in jax.tree.leaves(state.params))

errors = {}
def expect(name, fn):
    try:
        fn()
        errors[name] = "no error"
    except ValueError as e:
        errors[name] = "ValueError: " + str(e)
expect("mesh-8-of-4", lambda: dist.make_mesh(8))
expect("mesh-0", lambda: dist.make_mesh(0))
expect("shard-batch-30", lambda: dist.shard_batch(x[:30], mesh))
update = dist.make_sharded_update(OPT, mesh, loss=LOSS, donate=False)
expect("update-batch-30", lambda: update(*dist.replicate((params, OPT.init(params)), mesh), x[:30], y[:30]))
epoch = dist.make_sharded_train_epoch(OPT, mesh, loss=LOSS, batch_size=6, donate=False)
expect("epoch-batch-6", lambda: epoch(dist.replicate(init_train_state(params, OPT, jax.random.key(0)), mesh), x, y))
out["errors"] = errors
out["mesh2_size"] = dist.make_mesh(2).size
print("RESULT" + json.dumps(out))
"""
)

MULTI_HOST = (
    COMMON
    + """
pid, port, outdir = int(sys.argv[1]), sys.argv[2], sys.argv[3]
dist.initialize_distributed(f"localhost:{port}", 2, pid)
from mlp_jax.training.checkpoint import save_checkpoint

params, x, y, _ = problem(1, SIZES, 52)  # 13 rows per device; batches of 16 leave a partial last one
params = jax.tree.map(np.asarray, params)
mesh = dist.make_mesh(2)
rows = dist.process_rows(52, mesh)
xd = dist.distribute_dataset(x[rows], mesh, 52)  # this process hands over only its own rows
yd = dist.distribute_dataset(y[rows], mesh, 52)
state = dist.replicate(init_train_state(params, OPT, jax.random.key(3)), mesh)
out = {"process": pid, "device_count": jax.device_count(), "local_device_count": jax.local_device_count(),
       "mesh_size": mesh.size, "rows": [rows.start, rows.stop], "x_split": split_over_batch(xd.sharding)}
for grad in ("manual",):  # autodiff is checked on 4 devices in one process; compiles cost time here
    sharded_epoch = dist.make_sharded_train_epoch(OPT, mesh, loss=LOSS, grad=grad, batch_size=16, donate=False)
    st, losses = state, []
    for _ in range(3):
        st, l = sharded_epoch(st, xd, yd)
        losses.append(np.asarray(l))
    # the reference: this process alone, on its first device, with the whole data set
    epoch = make_train_epoch(OPT, loss=LOSS, grad=grad, batch_size=16)
    ref, ref_losses = init_train_state(jax.tree.map(jnp.asarray, params), OPT, jax.random.key(3)), []
    for _ in range(3):
        ref, l = epoch(ref, jnp.asarray(x), jnp.asarray(y))
        ref_losses.append(np.asarray(l))
    out[grad] = {"params_rel": rel(st.params, ref.params), "loss_rel": rel(losses, ref_losses),
                 "replicated": all(l.sharding.is_fully_replicated for l in jax.tree.leaves((st.params, st.opt_state)))}
try:
    dist.process_rows(50, mesh)
    out["rows-50"] = "no error"
except ValueError as e:
    out["rows-50"] = "ValueError: " + str(e)
if dist.is_primary():
    save_checkpoint(f"{outdir}/checkpoint.npz", st, {"written_by": pid})
print("RESULT" + json.dumps(out), flush=True)
"""
)


def _env(devices: int) -> dict:
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu")
    for name in (dist.ENV_COORDINATOR, dist.ENV_NUM_PROCESSES, dist.ENV_PROCESS_ID):
        env.pop(name, None)
    return env


def _result(proc_stdout: str, proc_stderr: str = "") -> dict:
    lines = [line for line in proc_stdout.splitlines() if line.startswith("RESULT")]
    assert lines, f"no result; stdout:\n{proc_stdout[-3000:]}\nstderr:\n{proc_stderr[-3000:]}"
    return json.loads(lines[-1][len("RESULT") :])


def _run(script: str, *args: str, devices: int, timeout: float = 120) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", script, *args], env=_env(devices), capture_output=True, text=True, timeout=timeout
    )
    return _result(proc.stdout, proc.stderr)


@pytest.fixture(scope="module")
def four() -> dict:
    return _run(FOUR_DEVICES, devices=4)


UPDATES = [f"update-{g}-{w}" for g in ("manual", "autodiff", "feature") for w in ("plain", "weighted")]
EPOCHS = ["epoch-manual", "epoch-autodiff", "epoch-feature"]


@pytest.mark.slow  # reads the 4-device subprocess run
@pytest.mark.parametrize("name", UPDATES + EPOCHS)
def test_sharded_training_equals_single_device(four, name):
    assert four["device_count"] == 4
    result = four[name]
    assert result["params_rel"] < TOL and result["loss_rel"] < TOL, result
    assert result["replicated"], "params and optimizer state must come back replicated on all 4 devices"


@pytest.mark.slow  # reads the 4-device subprocess run
@pytest.mark.parametrize("name", UPDATES + EPOCHS)
def test_compiled_step_shards_the_batch(four, name):
    result = four[name]
    assert result["all_reduce"], "the batch sums must become cross-device all-reduces"
    assert result["per_device_x"], "each device must see a quarter of the minibatch"
    if name.startswith("update"):
        assert result["x_input_split"]
        assert not result["whole_x"]


@pytest.mark.slow  # reads the 4-device subprocess run
@pytest.mark.parametrize("name", EPOCHS)
def test_sharded_epoch_counts_steps_and_keeps_inputs(four, name):
    assert four[name]["steps"] == [12, 12]
    assert four[name]["input_alive"]


@pytest.mark.slow  # reads the 4-device subprocess run
@pytest.mark.parametrize(
    "name, words",
    [
        ("mesh-8-of-4", "only 4"),
        ("mesh-0", "positive integer"),
        ("shard-batch-30", "30 does not split evenly"),
        ("update-batch-30", "30 does not split evenly"),
        ("epoch-batch-6", "6 does not split evenly"),
    ],
    ids=lambda v: v if isinstance(v, str) and " " not in v else "",
)
def test_clear_errors(four, name, words):
    assert four["errors"][name].startswith("ValueError") and words in four["errors"][name]
    assert four["mesh2_size"] == 2


def test_one_device_mesh_in_process(key):
    """On the test process's single device the sharded update is the plain one, bit for bit."""
    mesh = dist.make_mesh()
    assert mesh.size == 1 and mesh.axis_names == (dist.BATCH,)
    p = (Layer(jax.random.normal(key, (3, 2), jnp.float32), jnp.zeros((2,), jnp.float32)),)
    x = jax.random.normal(jax.random.fold_in(key, 1), (8, 3), jnp.float32)
    y = jax.random.normal(jax.random.fold_in(key, 2), (8, 2), jnp.float32)
    opt = optax.sgd(0.1)
    ref = make_update(opt, donate=False)(p, opt.init(p), x, y)
    got = dist.make_sharded_update(opt, mesh)(*dist.replicate((p, opt.init(p)), mesh), dist.shard_batch(x, mesh), y)
    assert tree_max_rel_error(got, ref) == 0.0
    assert not any(leaf.is_deleted() for leaf in jax.tree.leaves(p))  # replicate copied, donation spared p


def test_initialize_distributed_needs_all_three(monkeypatch):
    for name in (dist.ENV_COORDINATOR, dist.ENV_NUM_PROCESSES, dist.ENV_PROCESS_ID):
        monkeypatch.delenv(name, raising=False)
    assert dist.initialize_distributed() is False
    with pytest.raises(ValueError, match="missing"):
        dist.initialize_distributed("localhost:1234")
    monkeypatch.setenv(dist.ENV_COORDINATOR, "localhost:1234")
    monkeypatch.setenv(dist.ENV_NUM_PROCESSES, "2")
    with pytest.raises(ValueError, match="process_id"):
        dist.initialize_distributed()


@pytest.mark.parametrize(
    "coordinator, env",
    [("localhost", {}), ("localhost:", {}), ("localhost:http", {}), ("localhost:70000", {}), (None, {"C": "h"})],
    ids=["no-port", "empty-port", "port-not-a-number", "port-too-big", "env-no-port"],
)
def test_a_coordinator_without_a_valid_port_is_a_value_error(monkeypatch, coordinator, env):
    monkeypatch.setattr(dist.jax.distributed, "initialize", lambda *a: pytest.fail("initialize called"))
    monkeypatch.delenv(dist.ENV_COORDINATOR, raising=False)
    if env:
        monkeypatch.setenv(dist.ENV_COORDINATOR, env["C"])
    with pytest.raises(ValueError, match=r"coordinator .*: expected HOST:PORT"):
        dist.initialize_distributed(coordinator, 1, 0)


def test_process_counts_from_the_environment_must_be_integers(monkeypatch):
    monkeypatch.setenv(dist.ENV_NUM_PROCESSES, "two")
    with pytest.raises(ValueError, match=f"{dist.ENV_NUM_PROCESSES}: expected an integer, got 'two'"):
        dist.initialize_distributed("localhost:1234", None, 0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_hosts(tmp_path_factory) -> tuple[list[dict], object]:
    out = tmp_path_factory.mktemp("multihost")
    port = str(_free_port())
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", MULTI_HOST, str(pid), port, str(out)],
            env=_env(2),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for pid in (0, 1)
    ]
    results = []
    try:
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=120)
            results.append(_result(stdout, stderr))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    return results, out


@pytest.mark.slow  # two processes meet through jax.distributed
def test_two_processes_train_like_one_device(two_hosts):
    results, out = two_hosts
    for pid, result in enumerate(results):
        assert result["process"] == pid and result["device_count"] == 4 and result["local_device_count"] == 2
        assert result["mesh_size"] == 4 and result["x_split"]
        for grad in ("manual",):
            assert result[grad]["params_rel"] < TOL and result[grad]["loss_rel"] < TOL, (pid, result[grad])
            assert result[grad]["replicated"]
        assert "50 examples do not split evenly over 4 devices" in result["rows-50"]
    assert [r["rows"] for r in results] == [[0, 26], [26, 52]]  # each process held only its own rows
    assert (out / "checkpoint.npz").stat().st_size > 0 and len(list(out.iterdir())) == 1
