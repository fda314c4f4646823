"""wearjax's Kalman filter and RTS smoother against dynamax's, the same model on the same data.

The model and data of `benchmarks/filters.py` (a stable chain of D = 2 or 4 states observed
through the first, T = 7200 steps: two hours at 1 Hz, float32, one series or 256 under `vmap`
with shared parameters), every step observed, since dynamax's `lgssm_filter` has no mask (a
masked step is where wearjax differs in kind, not in speed). Both libraries' serial
(`lax.scan`) and parallel (`lax.associative_scan`) versions, each jitted whole; the time is the
median steady-state call after compilation, as in `filters.py`. Before timing, every pair is
checked to give the same filtered or smoothed means and log-likelihood (`agreement`; the
tests do the same in float64, `tests/test_dynamax_peer.py`). The parallel versions run at
batch 1 only (`run`). With `--compiler-options`, both libraries' programs are compiled with
`wearjax.filters.compiler_options()` (on CPU: XLA's library fusions kept to matrix products).
Needs the `bench` extra.

    python benchmarks/filters_vs_dynamax.py --out benchmarks/results/filters_vs_dynamax_cpu.md
    python benchmarks/filters_vs_dynamax.py --compiler-options  # ..._cpu_options.md
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import jax.numpy as jnp
from common import machine, write_results
from dynamax.linear_gaussian_ssm import inference as dx_serial
from dynamax.linear_gaussian_ssm import parallel_inference as dx_parallel
from dynamax.linear_gaussian_ssm.inference import make_lgssm_params
from filters import BATCHES, STATE_SIZES, T, data, measure, model

from wearjax.filters import (
    LinearGaussianParams,
    compiler_options,
    kalman_filter,
    kalman_smoother,
    parallel_kalman_filter,
    parallel_kalman_smoother,
)


def dynamax_params(p: LinearGaussianParams):
    """The same linear-Gaussian model in dynamax's parameters (its `initial` is wearjax's
    `m0, P0`: the state before the first observation is taken in)."""
    return make_lgssm_params(p.m0, p.P0, p.F, p.Q, p.H, p.R)


def _means(fn, means: str, loglik: str):
    """`fn(params, ys)` -> (its `means` field, its `loglik` field): one output for both
    libraries' result types."""

    def run(params, ys):
        out = fn(params, ys)
        return getattr(out, means), getattr(out, loglik)

    return run


def _wearjax(fn, key: str):
    return _means(fn, key, "log_likelihood")


def _dynamax(fn, key: str):
    return _means(fn, key, "marginal_loglik")


PAIRS = {  # (operation, implementation) -> (wearjax's, dynamax's): (means, log-likelihood)
    ("filter", "serial"): (
        _wearjax(kalman_filter, "filtered_means"),
        _dynamax(dx_serial.lgssm_filter, "filtered_means"),
    ),
    ("smoother", "serial"): (
        _wearjax(kalman_smoother, "smoothed_means"),
        _dynamax(dx_serial.lgssm_smoother, "smoothed_means"),
    ),
    ("filter", "parallel"): (
        _wearjax(parallel_kalman_filter, "filtered_means"),
        _dynamax(dx_parallel.lgssm_filter, "filtered_means"),
    ),
    ("smoother", "parallel"): (
        _wearjax(parallel_kalman_smoother, "smoothed_means"),
        _dynamax(dx_parallel.lgssm_smoother, "smoothed_means"),
    ),
}


def agreement(ours, theirs, params, ys) -> tuple[float, float]:
    """Largest absolute difference of the means and relative one of the log-likelihoods."""
    m1, ll1 = jax.jit(ours)(params, ys)
    m2, ll2 = jax.jit(theirs)(dynamax_params(params), ys)
    mean_diff = float(jnp.max(jnp.abs(m1 - m2)))
    ll_diff = float(jnp.abs(ll1 - ll2) / jnp.abs(ll2))
    return mean_diff, ll_diff


def run(reps: int, options: dict | None = None) -> list[dict]:
    rows = []
    for (operation, implementation), (ours, theirs) in PAIRS.items():
        # the parallel scans at batch 1 only: under `vmap` at batch 256 x 7200, dynamax's parallel
        # filter never finished on this CPU (every thread idle in a futex wait after 10 min)
        batches = BATCHES if implementation == "serial" else (1,)
        for d in STATE_SIZES:
            params = model(d)
            mean_diff, ll_diff = agreement(ours, theirs, params, data(1)[0][0])
            if mean_diff > 1e-3 or ll_diff > 1e-4:  # float32 over 7200 steps
                raise AssertionError(
                    f"{operation} {implementation} D={d}: wearjax and dynamax differ "
                    f"(means by {mean_diff:.2e}, log-likelihood by {ll_diff:.2e})"
                )
            for batch in batches:
                ys = data(batch)[0]  # every step observed
                times = {}
                for lib, fn, p in (
                    ("wearjax", ours, params),
                    ("dynamax", theirs, dynamax_params(params)),
                ):
                    call = fn if batch == 1 else jax.vmap(fn, in_axes=(None, 0))
                    y = ys[0] if batch == 1 else ys
                    compile_s, run_s, n = measure(
                        lambda p, y, _, call=call: call(p, y), p, y, None, reps, options
                    )
                    times[lib] = (1e3 * run_s, compile_s, n)
                row = dict(operation=operation, implementation=implementation, d=d, batch=batch,
                           times=times, mean_diff=mean_diff, ll_diff=ll_diff)  # fmt: skip
                (w, wc, _), (x, xc, _) = times["wearjax"], times["dynamax"]
                print(
                    f"{operation:8s} {implementation:8s} D={d} batch={batch:3d}: wearjax "
                    f"{w:8.1f} ms, dynamax {x:8.1f} ms ({x / w:4.1f}x), compile {wc:.1f} / "
                    f"{xc:.1f} s",
                    flush=True,
                )
                rows.append(row)
    return rows


def table(rows: list[dict]) -> list[str]:
    lines = [
        "| operation | implementation | D | batch | wearjax (ms) | dynamax (ms) "
        "| dynamax / wearjax | compile wearjax / dynamax (s) | max mean diff | loglik rel. diff |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        (w, wc, _), (x, xc, _) = r["times"]["wearjax"], r["times"]["dynamax"]
        lines.append(
            f"| {r['operation']} | {r['implementation']} | {r['d']} | {r['batch']} | {w:.1f} "
            f"| {x:.1f} | {x / w:.1f}x | {wc:.1f} / {xc:.1f} | {r['mean_diff']:.1e} "
            f"| {r['ll_diff']:.1e} |"
        )
    return lines


def main() -> None:
    import dynamax

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="timed calls per configuration")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results file (default: results/filters_vs_dynamax_cpu.md, or "
        "filters_vs_dynamax_cpu_options.md with --compiler-options)",
    )
    parser.add_argument(
        "--compiler-options",
        action="store_true",
        help="compile both libraries' programs with wearjax.filters.compiler_options()",
    )
    args = parser.parse_args()
    options = compiler_options() if args.compiler_options else None
    name = "filters_vs_dynamax_cpu_options.md" if options else "filters_vs_dynamax_cpu.md"
    out = args.out or Path(__file__).parent / "results" / name
    rows = run(args.reps, options)
    intro = (
        f"wearjax against dynamax {dynamax.__version__}: T = {T}, M = 1, float32, every step "
        f"observed; {machine()}, backend {jax.devices()[0].platform}. Run time: median of up to "
        f"{args.reps} jitted calls after compilation; batch 256 is `vmap` over series. The last "
        "two columns: the largest difference of the two libraries' means and the relative one "
        "of their log-likelihoods on one series. `python benchmarks/filters_vs_dynamax.py"
        f"{' --compiler-options' if options else ''}`; compiler options: {options or 'none'}."
    )
    lines = table(rows)
    print("\n".join(lines))
    write_results(out, "Kalman filter and RTS smoother: wearjax and dynamax", intro, lines)


if __name__ == "__main__":
    main()
