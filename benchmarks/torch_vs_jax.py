"""wearjax (JAX, jitted) against PyTorch references of the same models (eager), side by side.

    python benchmarks/torch_vs_jax.py                    # ~5-7 min on 2 shared CPU cores
    python benchmarks/torch_vs_jax.py --quick --out /tmp/torch_vs_jax.md   # ~1 min
    python benchmarks/torch_vs_jax.py --models kalman personal
    python benchmarks/torch_vs_jax.py --big-budget 120   # batch 1024 over longer sessions

Models (`MODELS`), each at its published size, and its reference in `benchmarks/torch_refs.py`
(the Equinox model's weights copied in, `torch_refs.from_wearjax`):

- `kalman`: the HR neural Kalman model (128, 2), 8 features;
- `ode`: the HR neural ODE (128, 2), 8 features (wearjax's default engine, Diffrax RK4;
  `--engine scan` for the `lax.scan` one);
  for the GRU models (these two and `vo2`) `--gru-impl manual` runs their GRUs with the
  hand-written reverse pass (`models.backbone.GRU_IMPLS`; default: JAX's derivative, the
  published figures');
- `personal`: the personalised HR ODE (asymmetric form), speed and grade, one runner per session;
- `vo2`: the VO2 dual-pathway Kalman model, variant 256-2 (bidirectional GRU), 13 features.

Every weight gets N(0, 0.05^2) noise first (`perturbed`): freshly initialised heads sit near zero
and would leave most of the computation idle. Per model:

- generative rollout (only the first second's HR, or VO2, is given) at `--batches` (1 and 64)
  over `--length` (7200) s sessions, and at `--big-batch` (1024) over sessions as long as
  `--big-budget` seconds of PyTorch allow (estimated from its speed at the batch before; the
  length is in the table): throughput in session-seconds per wall second. wearjax: `jax.jit`
  of the batched (`vmap`) rollout, compile time apart (`jit(f).lower(...).compile()`);
  PyTorch: under `torch.no_grad()` after a short warm-up call.
- a training step at batch 64 on 600 s segments (`--train`): loss (mean squared error of the
  generative rollout; dropout off in both), backward, Adam update (optax / `torch.optim`).
- agreement, asserted: the first rollout configuration's predictions (to `OUT_RTOL` of the
  largest |value|) and the training step's first gradient (to `GRAD_RTOL`), float32.
- the bound, for the GRU models at the largest of `--batches` (64; `ceiling_rows`): the ratio
  over PyTorch that a rollout running every one of its FLOPs at this CPU's large-matrix-product
  rate would show; and the same for their training steps (`train_ceiling_rows`).

Each time is the median of up to 5 calls that fit `--budget` seconds after a warm-up call (one
call when it takes longer than the budget). PyTorch runs with `torch.set_num_threads(2)`
(`--torch-threads`) and `OMP_WAIT_POLICY=PASSIVE` (set here, before torch is imported): on a
machine whose cores other jobs share, OpenMP threads spinning at every barrier made one GRU
step 16-40 ms instead of 0.07 ms. Writes markdown to `--out`.

With `--devices N` (N > 1) the run makes N JAX CPU devices (`jax_num_cpu_devices`, one per
core as the CLI does) and times wearjax twice in each configuration: on one device, as
above, and with the batch split over the N devices (inputs placed with a `NamedSharding` over
a `("data",)` mesh, weights replicated; rollouts left to `jit`'s partitioner, training steps
mapped over the sessions with one `shard_map` as the trainer does, `sharding.map_batch`, with
the ODE models on the scan engine there); the split run's outputs are checked against the
one-device run's.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch (its OpenMP) is imported

import argparse  # noqa: E402
import copy  # noqa: E402
import functools  # noqa: E402
import importlib.util  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import equinox as eqx  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import torch  # noqa: E402
import torchdiffeq  # noqa: E402

from wearjax.models import HRODE, HRKalman, PersonalHRODE  # noqa: E402
from wearjax.models.vo2 import VO2_UNIT, build_vo2_model  # noqa: E402
from wearjax.sharding import batch_mesh, map_batch  # noqa: E402


def _sibling(name: str):
    """The module `benchmarks/<name>.py`, also when this file is imported from elsewhere (the
    tests load it by path, leaving `sys.path` alone)."""
    if name in sys.modules:
        return sys.modules[name]
    if name != "common":  # the siblings import `benchmarks/common.py` by its bare name
        _sibling("common")
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]  # no half-loaded module for the next caller
        raise
    return module


torch_refs = _sibling("torch_refs")
THROUGHPUT: dict = {}  # (model, batch) -> (wearjax, torch) session-seconds per second
TRAIN_S: dict = {}  # model -> (wearjax, torch) seconds per training step, batch, segment
GRU_MODELS = ("kalman", "ode", "vo2")  # the models a bound is worked out for

MODELS = ("kalman", "ode", "personal", "vo2")
LABELS = {
    "kalman": "HR Kalman (128, 2)",
    "ode": "HR ODE (128, 2)",
    "personal": "personalised HR ODE",
    "vo2": "VO2 Kalman 256-2",
}
N_FEATURES = {"kalman": 8, "ode": 8, "vo2": 13}
N_RUNNERS = 1024  # embeddings of the personalised ODE: one runner per session of a batch
PERTURB = 0.05  # SD of the noise added to every weight: heads away from their near-zero init
LR = 1e-3
OUT_RTOL = 1e-4  # agreement asserted: max |difference| / max |wearjax output|
GRAD_RTOL = 1e-3  # and of the loss gradient (float32, through thousands of steps)


# -- models and inputs -----------------------------------------------------------------------
def perturbed(model, seed: int, scale: float = PERTURB):
    """`model` with N(0, scale^2) noise added to every floating array: the freshly initialised
    heads sit near zero (an untrained filter holds its start), which would leave most of the
    computation untested."""
    params, static = eqx.partition(model, eqx.is_inexact_array)
    leaves, treedef = jax.tree_util.tree_flatten(params)
    rng = np.random.default_rng(seed)
    noise = lambda a: (scale * rng.standard_normal(a.shape)).astype(a.dtype)  # noqa: E731
    leaves = [jnp.asarray(np.asarray(a) + noise(a)) for a in leaves]  # numpy: no op to compile
    return eqx.combine(jax.tree_util.tree_unflatten(treedef, leaves), static)


@functools.cache
def build(name: str, engine: str | None = None, seed: int = 0, gru_impl: str = "autodiff"):
    """The wearjax model `name` (weights perturbed, `perturbed`); built once."""
    key = jax.random.key(seed)
    if name == "kalman":
        model = HRKalman(8, 128, 2, gru_impl=gru_impl, key=key)
    elif name == "ode":
        model = HRODE(8, 128, 2, gru_impl=gru_impl, key=key)
    elif name == "personal":
        model = PersonalHRODE(N_RUNNERS, key=key)
    elif name == "vo2":
        model = build_vo2_model(N_FEATURES["vo2"], "256-2", gru_impl=gru_impl, key=key)
    else:
        raise ValueError(f"unknown model {name!r}: choose from {MODELS}")
    if engine is not None and name in ("ode", "personal"):
        model = model.with_engine(engine)
    return perturbed(model, seed + 1)


def inputs(name: str, batch: int, length: int, seed: int = 0):
    """`(args, target)`: the rollout's inputs and a target of the training loss, numpy float32
    (the personalised ODE's last argument is each session's runner, int)."""
    rng = np.random.default_rng(seed)
    blocks = -(-length // 120)
    level = lambda lo, hi: np.repeat(rng.uniform(lo, hi, (batch, blocks)), 120, 1)[:, :length]  # noqa: E731
    f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731
    if name == "personal":
        u = np.stack([level(2.0, 4.5), rng.normal(0.0, 0.03, (batch, length))], -1)
        runner = np.arange(batch) % N_RUNNERS
        target = level(110.0, 170.0)
        return (f32(u), f32(target[:, 0]), runner.astype(np.int32)), f32(target)
    x = rng.normal(size=(batch, length, N_FEATURES[name]))
    if name == "vo2":
        target = level(800.0, 3500.0)
    else:
        target = level(110.0, 170.0)
    return (f32(x), f32(target[:, 0])), f32(target)


def jax_predict(name: str) -> Callable:
    """`(model, *args) -> [B, T]`: the batched generative rollout (bpm, or mL/min for VO2),
    mapped over the sessions with `sharding.map_batch` (a plain `vmap` except when traced
    inside `sharding.batch_mesh`, as the split training step is)."""
    if name == "personal":

        def one(model, i, ui, h):
            return model.for_runner(model.embedding[i]).rollout(ui, h).hr

        def predict(model, u, hr0, runner):
            return map_batch(one, model, runner, u, hr0)

    elif name == "vo2":

        def predict(model, x, v0):
            return map_batch(lambda m, xi, v: m.rollout(xi, v).vo2, model, x, v0)

    else:

        def predict(model, x, hr0):
            return map_batch(lambda m, xi, h: m.rollout(xi, h).hr, model, x, hr0)

    return predict


def torch_predict(name: str) -> Callable:
    """`(reference, *args) -> [B, T]`, as `jax_predict`."""
    if name == "personal":
        return lambda ref, u, hr0, runner: ref.rollout(u, hr0, runner.long())
    if name in ("kalman", "vo2"):
        return lambda ref, *args: ref.rollout(*args)[0]
    return lambda ref, *args: ref.rollout(*args)


def _scale(name: str) -> float:
    """Units of the loss: (VO2 in L/min), HR in bpm / 10."""
    return VO2_UNIT if name == "vo2" else 10.0


def jax_loss(name: str) -> Callable:
    predict, scale = jax_predict(name), _scale(name)

    def loss(params, static, args, target):
        pred = predict(eqx.combine(params, static), *args)
        return jnp.mean(jnp.square((pred - target) / scale))

    return loss


def torch_loss(name: str) -> Callable:
    predict, scale = torch_predict(name), _scale(name)
    return lambda ref, args, target: torch.mean(
        torch.square((predict(ref, *args) - target) / scale)
    )


def _torch_args(args) -> tuple[torch.Tensor, ...]:
    return tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in args)


# -- numerical agreement ---------------------------------------------------------------------
def compare(ours: np.ndarray, theirs: np.ndarray) -> tuple[float, float]:
    """Max |ours - theirs|, and relative to the largest |ours|."""
    diff = float(np.max(np.abs(ours - theirs)))
    return diff, diff / float(np.max(np.abs(ours)))


def compare_grads(theirs: dict[str, torch.Tensor], grads, static) -> tuple[float, float]:
    """`compare` of the reference's gradients by parameter name (None: no gradient) and a
    wearjax gradient pytree, read in the reference's layout (`from_wearjax` of the gradient)."""
    dtype = next(g.dtype for g in theirs.values() if g is not None)
    ours = dict(torch_refs.from_wearjax(eqx.combine(grads, static), dtype).named_parameters())
    assert list(ours) == list(theirs)
    diff = scale = 0.0
    with torch.no_grad():
        for name, g in ours.items():
            t = torch.zeros_like(g) if theirs[name] is None else theirs[name]
            diff = max(diff, float((t - g).abs().max()))
            scale = max(scale, float(g.abs().max()))
    return diff, diff / scale


def _grads(ref: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the reference's `.grad`s by parameter name."""
    return {n: None if p.grad is None else p.grad.clone() for n, p in ref.named_parameters()}


def agreement(name: str, batch: int = 4, length: int = 600, dtype=torch.float32) -> dict:
    """Rollouts and loss gradients of wearjax and the reference on one batch: `compare`'s
    numbers as `out_abs`, `out_rel`, `grad_abs`, `grad_rel`. With `dtype` float64 the wearjax
    model is cast too (JAX must have x64 enabled)."""
    np_dtype = np.float64 if dtype == torch.float64 else np.float32
    cast = lambda a: a.astype(np_dtype) if eqx.is_inexact_array(a) else a  # noqa: E731
    model = jax.tree_util.tree_map(cast, build(name))
    ref = torch_refs.from_wearjax(model, dtype)
    args, target = inputs(name, batch, length, seed=1)
    args = tuple(a.astype(np_dtype) if a.dtype == np.float32 else a for a in args)
    target = target.astype(np_dtype)
    ours = np.asarray(jax.jit(jax_predict(name))(model, *args))
    with torch.no_grad():
        theirs = torch_predict(name)(ref, *_torch_args(args)).numpy()
    params, static = eqx.partition(model, eqx.is_inexact_array)
    loss = jax_loss(name)
    grads = jax.jit(lambda p, a, t: jax.grad(loss)(p, static, a, t))(params, args, target)
    torch_loss(name)(ref, _torch_args(args), torch.from_numpy(target)).backward()
    out_abs, out_rel = compare(ours, theirs)
    grad_abs, grad_rel = compare_grads(_grads(ref), grads, static)
    return dict(out_abs=out_abs, out_rel=out_rel, grad_abs=grad_abs, grad_rel=grad_rel)


# -- timing ----------------------------------------------------------------------------------
def _median_s(call: Callable[[], object], budget: float, reps: int = 5):
    """(median seconds, last output) of `call()` over up to `reps` calls within `budget` s,
    after one warm-up call; a first call longer than `budget` is the measurement."""
    t0 = time.perf_counter()
    out = call()
    first = time.perf_counter() - t0
    if first > budget:
        return first, out
    runs: list[float] = []
    while len(runs) < reps and sum(runs) < budget:
        t0 = time.perf_counter()
        out = call()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs), out


def split_batch(model, data, n: int):
    """`(model, data, replicated)`: the model's arrays replicated over `n` CPU devices (a
    `("data",)` mesh), the data's split along their leading (batch) axis where `n` divides it
    (else replicated), and the replicated sharding."""
    mesh = jax.make_mesh((n,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    split = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    whole = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())

    def place(a, sharding):
        if not isinstance(a, jax.Array | np.ndarray):
            return a
        return jax.device_put(a, sharding if a.ndim and a.shape[0] % n == 0 else whole)

    model = jax.tree_util.tree_map(lambda a: place(a, whole), model)
    return model, jax.tree_util.tree_map(lambda a: place(a, split), data), whole


def time_jax_rollout(name, model, args, budget):
    """(compile s, run s, prediction) of the jitted batched rollout."""
    predict = jax_predict(name)
    t0 = time.perf_counter()
    compiled = jax.jit(predict).lower(model, *args).compile()
    compile_s = time.perf_counter() - t0
    run, out = _median_s(lambda: jax.block_until_ready(compiled(model, *args)), budget)
    return compile_s, run, np.asarray(out)


def time_torch_rollout(name, ref, args, budget):
    """(run s, prediction) of the eager rollout under `torch.no_grad()`."""
    predict = torch_predict(name)
    targs = _torch_args(args)
    warm = tuple(a[:1, :120] if a.ndim > 1 else a[:1] for a in targs)
    with torch.no_grad():
        predict(ref, *warm)
        run, out = _median_s(lambda: predict(ref, *targs), budget)
    return run, out.numpy()


def time_jax_train(name, model, args, target, budget, keep=None):
    """(compile s, run s, first step's gradient, static part) of one training step: loss,
    gradient, Adam update; `keep`: the sharding of every output (the weights stay where the
    next step's compiled inputs expect them), on whose mesh the step is traced inside
    `sharding.batch_mesh`, so the sessions are mapped over its "data" axis by one
    `shard_map` (`sharding.map_batch`), as the trainer does."""
    loss = jax_loss(name)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    opt = optax.adam(LR)
    state = opt.init(params)

    def step(params, state, args, target):
        value, grads = jax.value_and_grad(loss)(params, static, args, target)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, value, grads

    t0 = time.perf_counter()
    jitted = jax.jit(step) if keep is None else jax.jit(step, out_shardings=keep)
    with batch_mesh(None if keep is None else keep.mesh):
        compiled = jitted.lower(params, state, args, target).compile()
    compile_s = time.perf_counter() - t0
    # the gradient at the initial weights; waited for, or the first timed call would include
    # the rest of this one (JAX dispatches asynchronously)
    first = jax.block_until_ready(compiled(params, state, args, target)[3])
    carry = [params, state]

    def one():
        carry[0], carry[1], value, _ = compiled(carry[0], carry[1], args, target)
        jax.block_until_ready(value)

    run, _ = _median_s(one, budget)
    return compile_s, run, first, static


def time_torch_train(name, ref, args, target, budget):
    """(run s, the first step's gradients by parameter name) of one training step; trains a
    copy of `ref`."""
    ref = copy.deepcopy(ref)
    loss = torch_loss(name)
    targs, ttarget = _torch_args(args), torch.from_numpy(target)
    ref.train()
    for module in ref.modules():  # dropout off, as on the wearjax side
        if isinstance(module, torch.nn.Dropout):
            module.eval()
    opt = torch.optim.Adam(ref.parameters(), lr=LR)
    loss(ref, targs, ttarget).backward()  # warm-up, and the gradient at the initial weights
    first = _grads(ref)
    opt.step()

    def one():
        opt.zero_grad(set_to_none=True)
        loss(ref, targs, ttarget).backward()
        opt.step()

    run, _ = _median_s(one, budget)
    return run, first


# -- the tables ------------------------------------------------------------------------------
def run_model(name, sizes, opts, print_line) -> tuple[str, list[str], list[str]]:
    """Agreement, rollout and training rows of one model. The agreement is that of the first
    rollout configuration and of the training step's first gradient; asserted."""
    model = build(name, opts.engine, gru_impl=opts.gru_impl)
    ref = torch_refs.from_wearjax(model)
    label = LABELS[name]
    rollout_rows, train_rows, check = [], [], {}
    torch_per_second = None  # PyTorch seconds per session-second, at the last batch
    for batch, length in sizes["rollout"]:
        if length is None:  # as long as `big_budget` allows, from the last measured speed
            seconds = opts.big_budget / (torch_per_second * batch)
            length = int(min(opts.length, max(60, seconds // 60 * 60)))
        args, _ = inputs(name, batch, length)
        compile_s, run_j, ours = time_jax_rollout(name, model, args, opts.budget)
        run_t, theirs = time_torch_rollout(name, ref, args, opts.budget)
        extra = ""
        if opts.devices > 1:
            on_model, on_args, _ = split_batch(model, args, opts.devices)
            _, run_s, split_out = time_jax_rollout(name, on_model, on_args, opts.budget)
            np.testing.assert_allclose(split_out, ours, rtol=1e-4, atol=1e-3 * np.abs(ours).max())
            extra = f" {batch * length / run_s:,.0f} | {run_t / run_s:.1f}x |"
        if not check:
            check["out"] = (batch, length, *compare(ours, theirs))
        torch_per_second = run_t / (batch * length)
        work = batch * length
        THROUGHPUT[name, batch] = (work / run_j, work / run_t)
        row = (
            f"| {label} | {batch} | {length} | {work / run_j:,.0f} | {work / run_t:,.0f} "
            f"| {run_t / run_j:.1f}x | {compile_s:.1f} |{extra}"
        )
        rollout_rows.append(row)
        print_line(row)
    batch, length = sizes["train"]
    args, target = inputs(name, batch, length, seed=2)
    compile_s, run_j, grads, static = time_jax_train(name, model, args, target, opts.budget)
    run_t, first = time_torch_train(name, ref, args, target, opts.budget)
    check["grad"] = (batch, length, *compare_grads(first, grads, static))
    extra = ""
    if opts.devices > 1:
        # Diffrax's loops cannot be traced inside shard_map (diffrax issue 765): the split step
        # runs the scan engine, which gives the same numbers
        split_model = (
            model.with_engine("scan") if getattr(model, "engine", "") == "diffrax" else model
        )
        on_model, (on_args, on_target), whole = split_batch(
            split_model, (args, target), opts.devices
        )
        _, run_s, split_grads, _ = time_jax_train(
            name, on_model, on_args, on_target, opts.budget, keep=whole
        )
        for a, b in zip(jax.tree.leaves(split_grads), jax.tree.leaves(grads), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4 * max(np.abs(b).max(), 1e-6))
        extra = f" {1e3 * run_s:,.0f} | {run_t / run_s:.1f}x |"
    TRAIN_S[name] = (run_j, run_t, batch, length)
    row = (
        f"| {label} | {batch} | {length} | {1e3 * run_j:,.0f} | {1e3 * run_t:,.0f} "
        f"| {run_t / run_j:.1f}x | {compile_s:.1f} |{extra}"
    )
    train_rows.append(row)
    print_line(row)
    (bo, lo, oa, orel), (bg, lg, ga, grel) = check["out"], check["grad"]
    check_row = (
        f"| {label} | {bo} x {lo} s | {oa:.1e} | {orel:.1e} | {bg} x {lg} s | {ga:.1e} "
        f"| {grel:.1e} |"
    )
    print_line(check_row)
    assert orel <= OUT_RTOL, f"{name}: the rollouts differ by {orel:.1e} of their scale"
    assert grel <= GRAD_RTOL, f"{name}: the gradients differ by {grel:.1e} of their scale"
    return check_row, rollout_rows, train_rows


def matrix_flops(model) -> float:
    """`flops.matrix_flops`: 2 FLOPs per matrix weight per session-second. For the HR models
    it is within 2% of XLA's count of their one-second program (5% asserted in
    `ceiling_rows`); the VO2 model's bidirectional GRU has no one-second program to count."""
    return _sibling("flops").matrix_flops(model)


def _rate_rows(rates: list[float]) -> tuple[float, list[float]]:
    """The fastest of `rates` and two more measurements of the matrix-product rate."""
    flops_mod = _sibling("flops")
    rates = [*rates, flops_mod.matmul_rate(), flops_mod.matmul_rate()]
    return max(rates), rates


def ceiling_rows(names, batch: int, rates: list[float]) -> list[str]:
    """How far a GRU model's rollout ratio at `batch` could go on this CPU: FLOPs per
    session-second (XLA's count of the one-second program at `batch`, `flops.flops`, for the HR
    models; `matrix_flops` for VO2) and the rate of a large float32 matrix product
    (`flops.matmul_rate`: the fastest of `rates`, measured before the rollouts, and of two more
    after them), both in this run; a rollout running every FLOP at that rate would reach
    `rate / FLOPs` session-seconds per second, which over PyTorch's measured throughput is the
    largest ratio any wearjax rollout could show. Then the same for the training steps
    (`train_ceiling_rows`), at the same rate."""
    names = [n for n in names if n in GRU_MODELS and (n, batch) in THROUGHPUT]
    if not names:  # no GRU model timed at that batch: no bound to report
        return []
    flops_mod = _sibling("flops")
    rate, rates = _rate_rows(rates)
    rows = [
        f"What the target asks of the CPU at batch {batch}: FLOPs per session-second (XLA's "
        "count for the HR models; 2 per matrix weight for VO2, whose bidirectional GRU XLA "
        "cannot count per second), "
        f"the rate of a 2048 x 2048 float32 matrix product in this run ({rate:.0f} GFLOP/s, "
        f"the fastest of {len(rates)} measurements: "
        f"{', '.join(f'{r:.0f}' for r in rates)}), and the ratio over PyTorch a rollout would "
        "show if every FLOP ran at that rate (the bound), against the measured one.",
        "",
        "| model | kFLOP per session-second | wearjax GFLOP/s | of the matmul rate | "
        "ratio measured | ratio at the matmul rate (bound) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in names:
        ours, theirs = THROUGHPUT[name, batch]
        model = build(name)
        per = matrix_flops(model)
        if name != "vo2":
            window = 60  # the shortest rollout the models take; the count is per second
            counted = flops_mod.flops(model, batch, window, N_FEATURES[name])[0] / window / batch
            assert abs(per / counted - 1.0) < 0.05, f"{name}: {per:.0f} against XLA's {counted:.0f}"
            per = counted
        gflops = ours * per / 1e9
        rows.append(
            f"| {LABELS[name]} | {per / 1e3:.0f} | {gflops:.0f} | {100 * gflops / rate:.0f}% | "
            f"{ours / theirs:.1f}x | {rate * 1e9 / per / theirs:.1f}x |"
        )
    return rows + [""] + train_ceiling_rows(names, rate)


def train_ceiling_rows(names, rate: float) -> list[str]:
    """The bound of `ceiling_rows` for the training steps: 3 x the forward FLOPs of the matrix
    products (`matrix_flops`; the reverse pass of `y = W x` is two products of the same size,
    for the input's and the weight's gradients) over the step's batch and segment."""
    names = [n for n in names if n in TRAIN_S]
    if not names:
        return []
    rows = [
        "The same for the training steps: FLOPs per step = 3 x the matrix products' forward "
        "FLOPs (2 per weight per session-second, times batch x segment; the reverse pass of a "
        "product is two of its size), at the same matrix-product rate.",
        "",
        "| model | GFLOP per step | wearjax GFLOP/s | of the matmul rate | torch GFLOP/s | "
        "ratio measured | ratio at the matmul rate (bound) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in names:
        ours, theirs, batch, length = TRAIN_S[name]
        step = 3.0 * matrix_flops(build(name)) * batch * length
        rows.append(
            f"| {LABELS[name]} | {step / 1e9:.1f} | {step / ours / 1e9:.0f} | "
            f"{100 * step / ours / 1e9 / rate:.0f}% | {step / theirs / 1e9:.0f} | "
            f"{theirs / ours:.1f}x | {theirs * rate * 1e9 / step:.1f}x |"
        )
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--length", type=int, default=7200, help="session seconds (rollouts)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--big-batch", type=int, default=1024, help="0: none")
    parser.add_argument(
        "--big-budget", type=float, default=15.0, help="PyTorch seconds for the big batch"
    )
    parser.add_argument("--train", type=int, nargs=2, default=(64, 600), help="batch, seconds")
    parser.add_argument("--budget", type=float, default=5.0, help="timed seconds per config")
    parser.add_argument("--torch-threads", type=int, default=2)
    parser.add_argument("--engine", choices=("diffrax", "scan"), default=None)
    parser.add_argument("--gru-impl", choices=("autodiff", "manual"), default="autodiff")
    parser.add_argument("--quick", action="store_true", help="batch 1 and 8 x 300 s, < 1 min")
    parser.add_argument(
        "--devices", type=int, default=1,
        help="also time wearjax with the batch split over this many CPU devices (one per core)",
    )  # fmt: skip
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "torch_vs_jax_cpu.md"
    )
    argv = sys.argv[1:] if argv is None else argv
    opts = parser.parse_args(argv)
    if opts.quick:
        opts.length, opts.batches, opts.big_batch = 300, [1, 8], 0
        opts.train, opts.budget = (8, 120), 1.0
    torch.set_num_threads(opts.torch_threads)
    if opts.devices > 1:  # before JAX starts its backend
        jax.config.update("jax_num_cpu_devices", opts.devices)
    t_start = time.perf_counter()
    rates = [_sibling("flops").matmul_rate()]
    command = " ".join(["python benchmarks/torch_vs_jax.py", *argv])
    header = [
        "# wearjax (JAX) vs PyTorch references, CPU",
        "",
        f"Command: `{command}`. {platform.machine()}, {os.cpu_count()} CPU cores, load average "
        f"{os.getloadavg()[0]:.1f} at the start (a shared machine); float32; jax "
        f"{jax.__version__} (backend {jax.default_backend()}), torch {torch.__version__} "
        f"({torch.get_num_threads()} threads, OMP_WAIT_POLICY="
        f"{os.environ.get('OMP_WAIT_POLICY')}), torchdiffeq {torchdiffeq.__version__} "
        f"(`method={torch_refs.ODE_METHOD!r}`), Python {platform.python_version()}; wearjax ODE "
        f"engine: {opts.engine or 'diffrax (default)'}; GRU implementation: {opts.gru_impl}."
        + (
            f" The {opts.devices}-device training steps map the sessions with "
            "`sharding.map_batch`, the ODE models on the scan engine there."
            if opts.devices > 1
            else ""
        ),
        "",
    ]
    print("\n".join(header), flush=True)
    sizes = {
        "rollout": [(b, opts.length) for b in opts.batches]
        + ([(opts.big_batch, None)] if opts.big_batch else []),
        "train": tuple(opts.train),
    }
    check = [
        "Agreement (float32; asserted: rollout <= "
        f"{OUT_RTOL:g}, gradient <= {GRAD_RTOL:g} relative): max |wearjax - torch| over the "
        "first rollout configuration (bpm; VO2 mL/min) and over the loss gradient of the "
        "training step (all parameters), and each relative to the largest |wearjax value|.",
        "",
        "| model | rollout | max abs diff | relative | gradient | max abs diff | relative |",
        "|---|---|---:|---:|---|---:|---:|",
    ]
    n = opts.devices
    split_head = f" wearjax, {n} devices | its ratio |" if n > 1 else ""
    rollout = [
        "Generative rollout: throughput in session-seconds per wall second (higher is better).",
        "",
        "| model | batch | session (s) | wearjax | torch | wearjax / torch | wearjax compile (s) |"
        + split_head,
        "|---|---:|---:|---:|---:|---:|---:|" + "---:|" * (2 * (opts.devices > 1)),
    ]
    train = [
        "Training step (generative MSE loss, backward, Adam): ms per step (lower is better).",
        "",
        "| model | batch | segment (s) | wearjax (ms) | torch (ms) | wearjax / torch "
        "| wearjax compile (s) |" + split_head,
        "|---|---:|---:|---:|---:|---:|---:|" + "---:|" * (2 * (opts.devices > 1)),
    ]
    for name in opts.models:
        c, r, t = run_model(name, sizes, opts, lambda row: print(row, flush=True))
        check.append(c)
        rollout += r
        train += t
    # the largest batch of full length; the matrix-product rate once before the rollouts too
    bound = ceiling_rows(opts.models, max(opts.batches), rates)
    footer = [f"Whole run: {(time.perf_counter() - t_start) / 60:.1f} min."]
    body = check + [""] + rollout + [""] + train + [""] + (bound + [""] if bound else [])
    body += footer
    print("\n" + "\n".join(body), flush=True)
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text("\n".join(header + body) + "\n")
    print("wrote", opts.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
