"""The HR study's report: undefined metrics print as the tables' dash, and the session plots
skip sessions with no observed HR."""

import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from wearjax.eval.metrics import predictive_scores, summarize
from wearjax.eval.report import _finite_or_none, calibration_table, plot_sessions, table_1

DASH = "–"
COLUMNS = ("coverage_2sd", "mean_sd", "nll", "crps")


def _entry(scores: dict) -> dict:
    metrics = dict.fromkeys(
        ("mae", "rmse", "pearson_r", "mae_low", "mae_medium", "mae_high", "mae_transition"),
        5.0,
    )
    return {p: metrics | {"mae_steady": float("nan")} | scores for p in ("standard", "generative")}


def _rows(table: str, model: str) -> list[list[str]]:
    return [
        [c.strip() for c in line.strip("|").split("|")]
        for line in table.splitlines()
        if line.startswith(f"| {model} |")
    ]


def test_undefined_band_scores_print_as_the_dash_from_nan_and_from_null():
    """An empty mask's scores (NaN, `predictive_scores`) and the same read back from
    metrics.json (null) fill the band's row with dashes: no `nan%`, no 0.0% coverage."""
    empty = predictive_scores(*(jnp.zeros(5) for _ in range(3)), jnp.zeros(5, bool))
    scores = {k: float(v) for k, v in empty.items()} | {"coverage_2sd_model": float("nan")}
    results = {"models": {"kalman_8x2": _entry(scores)}}
    reloaded = json.loads(json.dumps(_finite_or_none(results)))
    assert reloaded["models"]["kalman_8x2"]["standard"]["coverage_2sd"] is None
    for res in (results, reloaded):
        band = calibration_table(res)
        rows = _rows(band, "Kalman (8, 2)")
        assert [r[1] for r in rows] == ["standard", "generative"]
        assert all(r[2:] == [DASH] * 5 for r in rows), band
        assert "nan" not in band.lower()
        full = table_1(res)
        assert "nan" not in full.lower()
        assert all(r[-1] == DASH for r in _rows(full, "Kalman (8, 2)") if len(r) == 9)


def test_defined_band_scores_keep_their_format():
    scores = {"coverage_2sd": 0.9536, "mean_sd": 4.321, "nll": 3.2, "crps": 2.25}
    band = calibration_table({"models": {"ode_8x2": _entry(scores)}})
    assert _rows(band, "ODE (8, 2)")[0][2:] == ["95.4%", "4.32", "3.20", "2.25", DASH]


def test_plots_skip_sessions_with_no_observed_hr(tmp_path):
    """Three sessions asked for, the longest first; the one with no observed HR (which
    `argsort` of the counts alone picks among the three) is left out, not an error."""
    s, t = 4, 120
    rng = np.random.default_rng(0)
    mask = np.zeros((s, t), bool)
    mask[0, :100], mask[2, :60] = True, True  # sessions 1 and 3 have no observed HR
    hr = np.where(mask, rng.uniform(100, 170, (s, t)), np.nan)
    pred = {p: hr + 1.0 for p in ("standard", "generative")}
    predictions = {
        "hr": hr,
        "mask": mask,
        "kalman_8x2": pred | {f"{p}_var": np.ones((s, t)) for p in pred},
        "baseline_hold": pred,
    }
    paths = plot_sessions(predictions, tmp_path, n=3)
    assert [p.name for p in paths] == ["session_000.png", "session_002.png"]
    assert all(p.stat().st_size > 0 for p in paths)
    # a split that tests only session 2 (a chronological one): session 0, the longest, was
    # trained on and predicted as 0 bpm, so it is not plotted
    scored = np.zeros_like(mask)
    scored[2, 5:60] = True
    predictions["scored"] = {"standard": scored, "generative": scored}
    paths = plot_sessions(predictions, tmp_path / "held_out", n=3)
    assert [p.name for p in paths] == ["session_002.png"]


def test_a_diverged_model_prints_nan_and_an_empty_subset_the_dash():
    """A prediction that is NaN on scored seconds (a diverged model) is counted
    (`n_nonfinite`) and shown as NaN with a note, not as the dash of an empty subset, from the
    study's floats and from metrics.json's nulls alike."""
    true = jnp.full((1, 60), 120.0, jnp.float32)  # every second in the low zone, none high
    mask = jnp.ones((1, 60), bool)
    good = {k: float(v) for k, v in summarize(true + 1, true, mask).items()}
    bad = {k: float(v) for k, v in summarize(jnp.full_like(true, jnp.nan), true, mask).items()}
    assert good["n_nonfinite"] == 0 and bad["n_nonfinite"] == 60
    results = {
        "models": {
            "kalman_8x2": {"standard": good, "generative": good},
            "ode_8x2": {"standard": good, "generative": bad},
        }
    }
    reloaded = json.loads(json.dumps(_finite_or_none(results)))
    for res in (results, reloaded):
        table = table_1(res)
        kalman, ode = _rows(table, "Kalman (8, 2)"), _rows(table, "ODE (8, 2)")
        assert kalman[0][1] == kalman[1][1] == "1.00" and kalman[1][6] == DASH  # no high zone
        assert ode[0][1] == "1.00" and ode[1][1:4] == ["NaN"] * 3 and ode[1][4] == "NaN"
        assert ode[1][6] == DASH  # the empty subset stays undefined, diverged or not
        assert "training diverged" in table
    assert "training diverged" not in table_1(
        {"models": {"k": {"standard": good, "generative": good}}}
    )


def test_the_vo2_report_writes_strict_json_and_shows_a_diverged_model_as_nan(tmp_path):
    """A diverged VO2 model's NaN metrics are null in metrics.json (strict JSON has no NaN) and
    NaN in the table, read back from the file as well as from the study's floats."""
    from wearjax.eval.report import report_table, write_report

    good = {"mae": 250.0, "rmse": 300.0, "mape": 11.4, "subject_mean": {"mae": 240.0, "mape": 11.0}}
    bad = {k: float("nan") for k in ("mae", "rmse", "mape")} | {
        "subject_mean": {"mae": float("nan"), "mape": float("nan")}
    }
    results = {
        "models": {"vo2_kalman": bad, "baseline_hr_ratio": good},
        "cohort": {"n_subjects": 2, "n_sessions": 2, "hours": 0.5, "features": ["hr"]},
        "folds": {"n_folds": 2},
    }
    table = write_report(results, tmp_path, "toy")
    reloaded = json.loads(
        (tmp_path / "metrics.json").read_text(),
        parse_constant=lambda c: pytest.fail(f"metrics.json holds {c}"),
    )
    assert reloaded["models"]["vo2_kalman"]["mae"] is None
    for t in (table, report_table(reloaded)):
        assert _rows(t, "VO2 Kalman (dual pathway)")[0][1:] == ["NaN"] * 5
        assert _rows(t, "(b) first-second VO2 x HR ratio")[0][1:] == [
            "250",
            "300",
            "11.4",
            "240",
            "11.0",
        ]


def test_a_non_finite_variance_prints_nan_in_the_band_table():
    """Finite predictions with an infinite variance make the band's scores NaN over seconds
    that were scored: NaN with the note, not the dash of an empty subset."""
    true = jnp.full((1, 60), 120.0, jnp.float32)
    mask = jnp.ones((1, 60), bool)
    m = {k: float(v) for k, v in summarize(true + 1, true, mask).items()}
    var = jnp.full_like(true, 4.0).at[0, 5].set(jnp.inf)
    m |= {k: float(v) for k, v in predictive_scores(true + 1, var, true, mask).items()}
    table = table_1({"models": {"kalman_8x2": {"standard": m, "generative": m}}})
    rows = [r for r in _rows(table, "Kalman (8, 2)") if r[1] in ("standard", "generative")]
    assert rows and all(r[2:6] == ["NaN"] * 4 and r[6] == DASH for r in rows), table
    assert "training diverged" in table


def test_the_environment_names_the_packages_that_computed_a_result(tmp_path):
    """`environment.json` beside metrics.json: the installed versions (here against the
    modules' own), the platform and JAX's devices; a package not installed is null."""
    import jax
    import scipy

    from wearjax.eval.report import environment, write_environment

    env = json.loads(write_environment(tmp_path).read_text())
    assert env == json.loads(json.dumps(environment()))
    assert env["packages"]["jax"] == jax.__version__ and env["packages"]["numpy"] == np.__version__
    assert env["packages"]["scipy"] == scipy.__version__
    assert env["devices"] == [str(d) for d in jax.devices()] and env["python"].count(".") == 2
    info = Path("/proc/cpuinfo")
    if info.exists():  # Linux: the model name and vector extensions, as the file has them
        first = info.read_text().split("\n\n", 1)[0]
        assert env["cpu"]["model"] and env["cpu"]["model"] in first
        assert all(f" {flag}" in first for flag in env["cpu"]["simd"])
