"""Tables, metrics.json, report.md and plots of the HR study."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from wearjax.eval.metrics import HR_ZONES

LABELS = {
    "baseline_hold": "Baseline: known HR held",
    "baseline_linear": "Baseline: linear regression",
    "personal_ode": "Personalised ODE",
}
# study names `{kind}_{hidden}x{layers}` of the HR models, by kind
KIND_LABELS = {"kalman": "Kalman", "ode": "ODE", "ode_fixed_rate": "ODE, fixed 60 s rate"}


PACKAGES = (
    "jax",
    "jaxlib",
    "equinox",
    "diffrax",
    "optax",
    "flax",
    "numpy",
    "scipy",
    "scikit-learn",
)


def environment() -> dict:
    """What computed a result besides the code: Python, the packages whose float rounding
    reaches trained models (a trained model is a chaotic function of its rounding: a change
    in the fifth digit of one epoch's loss grows into another model), the platform, the CPU
    (`cpu`) and JAX's devices."""
    import platform
    from importlib import metadata

    import jax

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    devices = [str(d) for d in jax.devices()]
    return {"python": platform.python_version(), "packages": versions,
            "platform": platform.platform(), "cpu": cpu(), "devices": devices}  # fmt: skip


def cpu() -> dict:
    """The CPU's model name and vector extensions (Linux's /proc/cpuinfo; empty elsewhere): XLA
    compiles for the CPU it runs on, so another one rounds differently."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    fields = dict(
        line.split(":", 1) for line in text.split("\n\n", 1)[0].splitlines() if ":" in line
    )
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = fields.get("flags", "").split()
    simd = sorted(f for f in flags if f.startswith(("avx", "fma", "sse4", "amx")))
    return {"model": fields.get("model name"), "simd": simd}


def write_environment(out: Path) -> Path:
    """`out/environment.json` beside a study's `metrics.json` (`environment`): a figure that
    does not reproduce to the digit can then be traced to the code, the packages or the
    machine (since 2026-12-07; earlier results do not have it)."""
    path = Path(out) / "environment.json"
    path.write_text(json.dumps(environment(), indent=2) + "\n")
    return path


def model_label(name: str) -> str:
    if name in LABELS:
        return LABELS[name]
    kind, _, size = name.rpartition("_")
    if kind in KIND_LABELS and size:
        return f"{KIND_LABELS[kind]} ({size.replace('x', ', ')})"
    return name


def _missing(v) -> bool:
    """An undefined metric: None (null in metrics.json) or NaN (a float or NumPy scalar)."""
    return v is None or math.isnan(float(v))


def _f(v: float | None) -> str:
    return "–" if _missing(v) else f"{v:.2f}"


def _pct(v: float | None) -> str:
    """A share as a percentage with one decimal; the dash where undefined."""
    return "–" if _missing(v) else f"{100 * v:.1f}%"


def _g(m: dict, key: str, fmt=_f) -> str:
    """`m[key]` formatted: "NaN" where it is missing over seconds that were scored (a
    prediction or variance that was not finite: a diverged model), the dash where it is
    undefined (an empty subset; r of a constant series, unless the prediction diverged)."""
    count = m.get(f"n_{key[4:]}" if key.startswith("mae_") else "n")
    failed = key in m and _missing(m[key]) and bool(count)
    if key == "pearson_r":
        failed = failed and bool(m.get("n_nonfinite"))
    return "NaN" if failed else fmt(m.get(key))


NOT_FINITE_NOTE = (
    "NaN: the model's prediction or its variance was not finite (NaN or infinite) on scored "
    "seconds (`n_nonfinite` in metrics.json counts the predictions): its training diverged. "
    "–: undefined (no seconds in that subset).\n"
)


def table_1(results: dict) -> str:
    """Markdown table in the layout of Lab-to-Wrist Table 1: MAE (bpm) per protocol,
    overall, by HR zone and by stability; then the calibration of the models' bands."""
    lo, hi = HR_ZONES
    cols = [
        ("mae", "MAE"),
        ("rmse", "RMSE"),
        ("pearson_r", "r"),
        ("mae_low", f"<{lo:.0f}"),
        ("mae_medium", f"{lo:.0f}-{hi:.0f}"),
        ("mae_high", f">={hi:.0f}"),
        ("mae_transition", "transition"),
        ("mae_steady", "steady"),
    ]
    lines = []
    for protocol in ("standard", "generative"):
        lines.append(f"**{protocol.capitalize()} protocol** (bpm; HR zones by true HR)\n")
        lines.append("| model | " + " | ".join(c[1] for c in cols) + " |")
        lines.append("|---|" + "---:|" * len(cols))
        for name, entry in results["models"].items():
            m = entry[protocol]
            lines.append(f"| {model_label(name)} | " + " | ".join(_g(m, k) for k, _ in cols) + " |")
        lines.append("")
    band = calibration_table(results)
    text = "\n".join(lines) + ("\n" + band if band else "")
    return text + ("\n" + NOT_FINITE_NOTE if "| NaN |" in text else "")


def calibration_table(results: dict) -> str:
    """Markdown table of every model's +-2 SD band, calibrated on held-out residuals
    (`eval.calibration`): coverage of true HR (a calibrated Gaussian covers 95.4%), mean
    predictive SD, Gaussian NLL and CRPS, and the coverage of the model's own variance (none
    for the deterministic ODEs)."""
    rows = [
        (name, entry)
        for name, entry in results["models"].items()
        if "coverage_2sd" in entry.get("standard", {})
    ]
    if not rows:
        return ""
    lines = [
        "**Uncertainty band** (+-2 SD, calibrated on the other folds' test sessions, or with one "
        "fold on its validation sessions; coverage of true HR, "
        "target 93-97%; mean SD, CRPS in bpm; last column: the model's own variance)\n",
        "| model | protocol | coverage | mean SD | NLL | CRPS | own coverage |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, entry in rows:
        for protocol in ("standard", "generative"):
            m = entry[protocol]
            lines.append(
                f"| {model_label(name)} | {protocol} | {_g(m, 'coverage_2sd', _pct)} | "
                f"{_g(m, 'mean_sd')} | {_g(m, 'nll')} | {_g(m, 'crps')} | "
                f"{_g(m, 'coverage_2sd_model', _pct)} |"
            )
    return "\n".join(lines) + "\n"


def cohort_line(results: dict) -> str:
    c, f = results["cohort"], results["folds"]
    how = "chronological" if f.get("how", "").startswith("chronological") else None
    how = how or f"leave-{f['runners_out']}-runners-out"
    return (
        f"{c['n_runners']} runners, {c['n_sessions']} sessions, {c['hours']:.1f} h; "
        f"{how}, {f['n_folds']} folds trained in one vmapped program"
    )


def write_outputs(results: dict, predictions: dict, out: Path, *, n_plots: int = 3) -> list[Path]:
    """Write `metrics.json`, `report.md` and `plots/*.png`; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "metrics.json", out / "report.md", write_environment(out)]
    (out / "metrics.json").write_text(json.dumps(_finite_or_none(results), indent=2))
    plots = plot_sessions(predictions, out / "plots", n=n_plots)
    written += plots
    lines = ["# wearjax HR study", "", cohort_line(results), "", table_1(results)]
    lines += ["", "Training time per model (s): "]
    for name, entry in results["models"].items():
        if "train_seconds" in entry:
            lines.append(
                f"- {model_label(name)}: train {entry['train_seconds']:.0f} s, "
                f"predict {entry['eval_seconds']:.0f} s, {entry['epochs_run']} epochs, "
                f"{entry['n_parameters']} parameters"
            )
    lines += ["", "## Sessions", ""] + [f"![{p.stem}](plots/{p.name})" for p in plots]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return written


def _finite_or_none(obj):
    """JSON has no NaN: undefined metrics (an empty subset) are written as null."""
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite_or_none(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def plot_sessions(predictions: dict, folder: Path, *, n: int = 3) -> list[Path]:
    """True vs predicted HR for `n` held-out sessions (the most scored seconds first), both
    protocols, with the filter's 2-SD band. Where `predictions` has `scored` (a split that
    tests only some sessions, a chronological one), a session no fold tests is never plotted:
    its prediction is 0 bpm (until 2026-12-07 such a session could be)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    models = [k for k in predictions if k.partition("_")[0] in KIND_LABELS]
    if not models:
        return []
    model = models[0]
    hr, mask = predictions["hr"], predictions["mask"]
    observed = np.asarray(predictions.get("scored", {}).get("standard", mask)).sum(1)
    # longest first, and only sessions with scored HR (an empty one has nothing to plot)
    order = [s for s in np.argsort(-observed, kind="stable")[:n] if observed[s] > 0]
    paths = []
    for s in order:
        t = np.flatnonzero(mask[s])
        end = t.max() + 1
        fig, axes = plt.subplots(2, 1, figsize=(11, 6), sharex=True)
        for ax, protocol in zip(axes, ("standard", "generative"), strict=True):
            pred = predictions[model][protocol][s, :end]
            sd = np.sqrt(np.maximum(predictions[model][f"{protocol}_var"][s, :end], 0.0))
            minutes = np.arange(end) / 60
            ax.plot(t / 60, hr[s, t], ".", ms=1.5, color="0.3", label="true HR")
            ax.fill_between(minutes, pred - 2 * sd, pred + 2 * sd, alpha=0.25, label="±2 SD")
            ax.plot(minutes, pred, lw=1.2, label=f"{model_label(model)}")
            hold = predictions["baseline_hold"][protocol][s, :end]
            ax.plot(minutes, hold, lw=0.8, ls="--", label="known HR held")
            ax.set_ylabel("HR (bpm)")
            ax.set_title(f"session {s}, {protocol} protocol", fontsize=10)
            ax.legend(fontsize=7, loc="lower right")
        axes[-1].set_xlabel("time (min)")
        fig.tight_layout()
        path = folder / f"session_{s:03d}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths.append(path)
    return paths


# -- VO2 tables -------------------------------------------------------------------------------

VO2_LABELS = {
    "vo2_kalman": "VO2 Kalman (dual pathway)",
    "vo2_kalman_true_hr": "VO2 Kalman, true HR",
    "vo2_kalman_rolled_hr": "VO2 Kalman, HR rolled out by the HR model",
    "baseline_linear_hr": "(a) linear HR-VO2, first-second offset",
    "baseline_hr_ratio": "(b) first-second VO2 x HR ratio",
}


def report_table(results: dict) -> str:
    """Markdown table of every model's pooled and per-subject-mean MAE, RMSE, MAPE."""
    lines = [
        "| model | MAE (mL/min) | RMSE (mL/min) | MAPE (%) | subject-mean MAE | subject-mean "
        "MAPE (%) |",
        "|---|---|---|---|---|---|",
    ]
    num = lambda v, digits: "NaN" if _missing(v) else f"{v:.{digits}f}"  # noqa: E731  (diverged)
    for name, m in results["models"].items():
        s = m["subject_mean"]
        lines.append(
            f"| {VO2_LABELS.get(name, name)} | {num(m['mae'], 0)} | {num(m['rmse'], 0)} | "
            f"{num(m['mape'], 1)} | {num(s['mae'], 0)} | {num(s['mape'], 1)} |"
        )
    return "\n".join(lines) + "\n"


def write_report(results: dict, out: Path, title: str) -> str:
    """`out/metrics.json` and `out/report.md`; returns the markdown table."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(_finite_or_none(results), indent=2) + "\n")
    write_environment(out)
    table = report_table(results)
    c = results["cohort"]
    head = (
        f"# {title}\n\n{c['n_subjects']} subjects, {c['n_sessions']} sessions, "
        f"{c['hours']:.1f} h; {results['folds']['n_folds']} subject-wise folds; features: "
        f"{', '.join(c['features'])}. Only the first second of VO2 is known; metrics over the "
        "seconds after it, against Savitzky-Golay-smoothed VO2.\n\n"
    )
    (out / "report.md").write_text(head + table)
    return table
