"""`wearjax fit hr`, `wearjax predict` and `wearjax cv hr` on recordings, as a user runs them;
checkpoints; the CLI's one-line errors."""

import csv
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.conftest import tree_allclose
from wearjax import cli
from wearjax.cli import main
from wearjax.data import read_file
from wearjax.errors import WearjaxDataError, WearjaxFileError
from wearjax.signal.features import Normalizer
from wearjax.tasks.hr import build_model
from wearjax.train import checkpoints

REAL_CSV = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "running-csv"
COLUMNS = ("timestamp", "heart_rate", "enhanced_speed", "cadence", "enhanced_altitude")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    """Parsed recordings are cached under the test's own folder, not the user's home."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def write_run(path, seconds, seed, *, columns=COLUMNS):
    """A CSV run: speed steps between easy and hard, HR relaxing toward a speed-driven level."""
    rng = np.random.default_rng(seed)
    t = np.arange(seconds)
    speed = np.where((t // 240) % 2 == 1, 3.8, 2.6) + 0.05 * rng.standard_normal(seconds)
    level = 60 + 27 * speed
    hr = np.empty(seconds)
    hr[0] = 95.0
    for i in range(1, seconds):  # the test's data maker, not model code
        hr[i] = hr[i - 1] + (level[i] - hr[i - 1]) / 40
    values = {
        "timestamp": t,
        "heart_rate": np.round(hr + rng.standard_normal(seconds)),
        "enhanced_speed": speed,
        "cadence": 80 + 4 * speed,
        "enhanced_altitude": 100 + 5 * np.sin(t / 300),
        "vertical_oscillation": 95 - 4 * speed + rng.standard_normal(seconds),  # mm
    }
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        w.writerows(zip(*(values[c] for c in columns), strict=True))
    return path


# The tests that predict with `trained` run in the slow step: its fit takes about a minute
# cold on 2 cores (274 XLA programs), which the fast suite cannot spare.
FITTED = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One quick `wearjax fit hr` on a folder of synthetic CSV runs (shared by the tests)."""
    root = tmp_path_factory.mktemp("runs")
    folder = root / "me"
    folder.mkdir()
    for i in range(4):
        write_run(folder / f"run{i}.csv", 900 + 150 * i, seed=i)
    (folder / "notes.txt").write_text("not a recording")
    ckpt = root / "model.wjx"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(root / "cache"))
        assert main(["fit", "hr", "--data", str(folder), "--out", str(ckpt), "--quick"]) == 0
    return folder, ckpt


def _one_line_error(capsys, code):
    out = capsys.readouterr()
    assert code == 2
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wearjax: "), out.err
    assert "Traceback" not in out.err + out.out
    return lines[0]


def _predictions(path):
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return {k: np.array([float(r[k]) for r in rows]) for k in rows[0]}


@FITTED
def test_fit_then_predict_round_trip_on_synthetic_runs(trained, tmp_path, capsys):
    folder, ckpt = trained
    header = checkpoints.load_hr(ckpt).header
    assert header["channels"] == ["speed", "cadence", "altitude"]
    assert header["features"] == [
        "pace_s_per_km",
        "cadence_steps_per_min",
        "altitude_m",
        "altitude_gain_m",
    ]
    assert (header["task"], header["kind"]) == ("hr", "hr_kalman")
    assert header["init"] == {"n_features": 4, "hidden": 32, "n_layers": 1, "window": 60}
    assert header["data"]["sessions"] == 4 and len(header["data"]["validation_sessions"]) == 1
    assert header["pauses"] == "stop"  # how its training files were read: predict reads alike

    run = write_run(tmp_path / "new.csv", 1000, seed=9)  # not a multiple of the 60 s window
    rows = run.read_text().splitlines()
    for k in range(401, 521):  # a 2 min gap in the measured HR (row 0 is the header)
        cells = rows[k].split(",")
        cells[COLUMNS.index("heart_rate")] = ""
        rows[k] = ",".join(cells)
    rows[1:] = [f"{int(r.split(',')[0]) + 5000}," + r.split(",", 1)[1] for r in rows[1:]]
    run.write_text("\n".join(rows) + "\n")  # the file's clock starts at 5000 s
    assert main(["predict", "--model", str(ckpt), str(run), "--out", str(tmp_path / "p")]) == 0
    out = capsys.readouterr().out
    assert "standard   MAE" in out and "generative MAE" in out
    pred = _predictions(tmp_path / "p" / "new.csv")
    np.testing.assert_array_equal(pred["time_s"], pred["second"] + 5000)  # joins the file back
    assert len(pred["second"]) == 1000  # trimmed back from the 1020 s padding
    for protocol in ("standard", "generative"):
        assert np.all(np.isfinite(pred[f"{protocol}_bpm"]))
        assert np.all((pred[f"{protocol}_bpm"] > 30) & (pred[f"{protocol}_bpm"] < 230))
    assert pred["generative_bpm"][0] == pred["measured_hr_bpm"][0]
    # the gaps in the measured HR are marked: seconds since it was last measured
    measured = np.isfinite(pred["measured_hr_bpm"])
    expected = [0.0 if m else np.nan for m in measured]
    for k in range(1, len(expected)):
        if not measured[k] and np.isfinite(expected[k - 1]):
            expected[k] = expected[k - 1] + 1
    np.testing.assert_array_equal(pred["since_measured_s"], expected)
    assert pred["since_measured_s"][519] == 120.0
    assert (tmp_path / "p" / "new.png").stat().st_size > 0
    # the band is calibrated on the held-out session and stored in the checkpoint
    for protocol in ("standard", "generative"):
        coef = header["calibration"][protocol]
        assert set(coef) == {"model", "floor", "growth"}
        assert all(np.isfinite(v) and v >= 0 for v in coef.values())
        assert np.all(pred[f"{protocol}_sd_bpm"] > 0)
    # the gap (400-519 s) hides the window starts at 420 and 480 s: the standard band keeps
    # widening from the start at 360 s instead of restarting at 420 s (`hr_bands.horizons`)
    if header["calibration"]["standard"]["growth"] > 0:
        sd = pred["standard_sd_bpm"]
        assert sd[519] > sd[419] and sd[479] > sd[419]


@pytest.mark.slow  # two one-epoch trainings: ~30 s on 2 cores
def test_a_run_shorter_than_a_segment_never_validates_and_a_resume_keeps_the_study(tmp_path):
    """Early stopping read whole segments, yet drew its session at random: with seed 0 the
    last file, here a 240 s run under the quick preset's 300 s segment, so `fit hr` failed
    ("sessions are too short") on a folder that could train. And resuming with another batch
    size or loss weights was accepted."""
    from wearjax.errors import WearjaxDataError
    from wearjax.tasks.hr_fit import train_hr
    from wearjax.tasks.hr_recordings import read_recordings
    from wearjax.tasks.presets import recordings_config

    for name, seconds in (("a", 700), ("b", 700), ("c", 240)):
        write_run(tmp_path / f"{name}.csv", seconds, seed=len(name) + seconds)
    sessions, _ = read_recordings(tmp_path, require_hr=True)
    config = recordings_config("kalman", True)
    config = config._replace(train=config.train._replace(epochs=1))
    state = tmp_path / "m.state"
    fitted = train_hr(sessions, "kalman", 8, 1, config, state_file=state)
    data = fitted.header["data"]
    assert [Path(v).name for v in data["validation_sessions"]] in (["a.csv"], ["b.csv"])
    assert [Path(v).name for v in data["sessions_too_short"]] == ["c.csv"]
    other = config._replace(batch_size=1)
    with pytest.raises(WearjaxDataError, match="study"):
        train_hr(sessions, "kalman", 8, 1, other, state_file=state, resume=True)


def test_calibrated_band_is_the_stored_formula():
    """`predict`'s SD: sqrt(model var_model + floor + growth h H / (h + H)), h the seconds
    since the model started from a known HR (NumPy against `_band`), counted through a gap
    that hides a window start."""
    from wearjax.eval.calibration import GROWTH_TIME
    from wearjax.tasks.hr_fit import _band

    coef = {"model": 2.0, "floor": 3.0, "growth": 0.01}
    var = np.linspace(0.0, 4.0, 150)
    header = {"window": 60, "calibration": {"standard": coef, "generative": coef}}
    t = np.arange(150.0)
    full, gap = np.ones(150, bool), (t < 55) | (t > 70)  # the gap hides the start at 60 s
    cases = (
        ("standard", full, t % 60),
        ("standard", gap, np.where(t < 120, t, t % 60)),  # the window at 60 s starts from 0 s
        ("generative", gap, t),
    )
    for protocol, mask, h in cases:
        want = 2.0 * var + 3.0 + 0.01 * h * GROWTH_TIME / (h + GROWTH_TIME)
        np.testing.assert_allclose(_band(header, protocol, var, mask), want, rtol=1e-6)
    own = _band({"window": 60}, "standard", var, full)
    np.testing.assert_array_equal(own, var)  # the model's own


def test_fit_lists_skipped_files_one_line_each(tmp_path, capsys):
    folder = tmp_path / "runs"
    folder.mkdir()
    write_run(folder / "a.csv", 700, seed=1)
    write_run(folder / "b.csv", 700, seed=2)
    (folder / "empty.csv").write_text("")
    (folder / "watch.gpx").write_text("<gpx/>")  # a GPX without a track
    ckpt = tmp_path / "m.wjx"
    argv = ["fit", "hr", "--data", str(folder), "--out", str(ckpt), "--quick"]
    # training is not what this test checks: stop it after the recordings are read
    from wearjax.tasks import hr_fit

    def stop(sessions, *args, **kwargs):
        assert len(sessions) == 2
        raise WearjaxFileError(folder, "stopped by the test", "none")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(hr_fit, "train_hr", stop)
        code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 3 and all(line.startswith("wearjax: ") for line in err)
    assert "skipped" in err[0] and "empty.csv" in err[0] and "empty" in err[0].split(":", 2)[2]
    assert "watch.gpx" in err[1] and "the GPX file has no track" in err[1]


def test_checkpoint_save_load_is_exact(tmp_path):
    model = build_model("kalman", 4, 8, 2, window=60, key=jax.random.key(3))
    norm = Normalizer(jnp.arange(4.0), jnp.full(4, 2.0))
    init = dict(n_features=4, hidden=8, n_layers=2, window=60)
    header = dict(task="hr", kind="hr_kalman", init=init, window=60, channels=["speed"])
    header["features"] = ["a", "b", "c", "d"]
    path = checkpoints.save_hr(tmp_path / "m.wjx", model, norm, header)
    loaded = checkpoints.load_hr(path)
    assert tree_allclose((loaded.model, loaded.normalizer), (model, norm), rtol=0, atol=0)
    assert {k: loaded.header[k] for k in header} == header
    assert loaded.header["version"] == checkpoints.VERSION
    # a checkpoint of the previous format (kind/hidden/layers, no task or init) names versions
    first, _, payload = path.read_bytes().partition(b"\n")
    old = json.loads(first)
    old.update(version=1, kind="kalman", hidden=8, layers=2)
    del old["task"], old["init"]
    (tmp_path / "old.wjx").write_bytes(json.dumps(old).encode() + b"\n" + payload)
    with pytest.raises(
        WearjaxFileError, match=f"format version 1.*reads version {checkpoints.VERSION}"
    ):
        checkpoints.load_hr(tmp_path / "old.wjx")


def _corrupt(path: Path, tmp_path: Path) -> dict[str, Path]:
    data = path.read_bytes()
    first, _, payload = data.partition(b"\n")
    flipped = bytearray(data)
    flipped[-10] ^= 0xFF
    header = json.loads(first)
    header["version"] = checkpoints.VERSION + 1
    files = {
        "flipped": bytes(flipped),
        "truncated": data[: len(data) - 100],
        "version": json.dumps(header).encode() + b"\n" + payload,
        "not": b"second,hr\n0,120\n",
        # one digit of the window changed in the header: valid JSON, intact weights
        "edited": first.replace(b'"window":60', b'"window":30', 1) + b"\n" + payload,
    }
    out = {}
    for name, content in files.items():
        out[name] = tmp_path / f"{name}.wjx"
        out[name].write_bytes(content)
    return out


@FITTED
def test_damaged_checkpoints_are_refused_naming_the_file(trained, tmp_path, capsys):
    folder, ckpt = trained
    problems = {
        "flipped": "damaged",
        "truncated": "damaged",
        "version": "version",
        "not": "not a wearjax checkpoint",
        "edited": "the header does not match its checksum",
    }
    for name, path in _corrupt(ckpt, tmp_path).items():
        with pytest.raises(WearjaxFileError, match=problems[name]) as err:
            checkpoints.load_hr(path)
        assert err.value.path == path
        code = main(["predict", "--model", str(path), str(folder / "run0.csv")])
        line = _one_line_error(capsys, code)
        assert str(path) in line and problems[name] in line


@pytest.mark.slow
def test_runs_with_vertical_oscillation_and_no_height_train_and_predict(tmp_path, capsys):
    """Vertical oscillation is scaled by the runner's height, which a CSV (and many FIT files)
    does not carry: training and prediction fill it and say so instead of stopping. The CLI's
    default `--normalise session` is recorded in the checkpoint and applied by `predict`: the
    same run through another watch gets the same prediction."""
    folder = tmp_path / "runs"
    folder.mkdir()
    columns = COLUMNS + ("vertical_oscillation",)
    for i in range(3):
        write_run(folder / f"run{i}.csv", 900, seed=20 + i, columns=columns)
    ckpt = tmp_path / "model.wjx"
    assert main(["fit", "hr", "--data", str(folder), "--out", str(ckpt), "--quick"]) == 0
    said = capsys.readouterr()
    assert "height unknown in 3 of 3 session(s)" in said.out + said.err
    header = checkpoints.load_hr(ckpt).header
    assert "vertical_oscillation_per_height" in header["features"]
    assert header["height_m"] == pytest.approx(1.75)
    assert header["session_relative"] == ["vertical_oscillation_per_height", "altitude_m"]
    run = write_run(tmp_path / "new.csv", 700, seed=30, columns=columns)
    other = _another_watch(run, tmp_path / "new_other.csv")
    for f in (run, other):
        assert main(["predict", "--model", str(ckpt), str(f), "--out", str(tmp_path / "p")]) == 0
    a, b = (_predictions(tmp_path / "p" / f"{n}.csv") for n in ("new", "new_other"))
    assert np.all(np.isfinite(a["generative_bpm"]))
    assert np.allclose(a["generative_bpm"], b["generative_bpm"], atol=1e-2)


@FITTED
def test_predict_reads_pauses_as_the_checkpoint_was_trained(trained, tmp_path, monkeypatch):
    """A checkpoint trained on files read with --pauses hold (or one saved before stops were
    read) predicts from files read the same way, unless --pauses says otherwise."""
    from wearjax.tasks import hr_recordings

    _, ckpt = trained
    model, norm, header = checkpoints.load_hr(ckpt)
    held = checkpoints.save_hr(tmp_path / "held.wjx", model, norm, header | {"pauses": "hold"})
    run = write_run(tmp_path / "run.csv", 700, seed=3)
    seen = []
    read = hr_recordings.read_recordings

    def spy(*args, **kwargs):
        seen.append(kwargs["pauses"])
        return read(*args, **kwargs)

    monkeypatch.setattr(hr_recordings, "read_recordings", spy)
    for path, extra in ((held, []), (held, ["--pauses", "stop"]), (ckpt, [])):
        argv = ["predict", "--model", str(path), str(run), "--out", str(tmp_path / "p"), *extra]
        assert main(argv) == 0
    assert seen == ["hold", "stop", "stop"]


@FITTED
def test_predict_names_the_channel_the_file_lacks(trained, tmp_path, capsys):
    _, ckpt = trained
    run = write_run(tmp_path / "nocad.csv", 600, seed=5, columns=COLUMNS[:3] + COLUMNS[4:])
    code = main(["predict", "--model", str(ckpt), str(run), "--out", str(tmp_path / "p")])
    line = _one_line_error(capsys, code)
    assert "nocad.csv" in line and "'cadence'" in line


@FITTED
def test_masked_out_of_range_hr_is_printed_not_only_logged(trained, tmp_path, capsys):
    _, ckpt = trained
    run = write_run(tmp_path / "spiky.csv", 600, seed=7)
    rows = run.read_text().splitlines()
    for k in (50, 51, 300):  # three implausible readings (row 0 is the header)
        cells = rows[k].split(",")
        cells[COLUMNS.index("heart_rate")] = "300"
        rows[k] = ",".join(cells)
    run.write_text("\n".join(rows) + "\n")
    assert main(["predict", "--model", str(ckpt), str(run), "--out", str(tmp_path / "p")]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"wearjax: {run}: 3 heart rates outside 25-250 bpm masked (not used)"]


@FITTED
def test_unit_options_named_by_the_errors_are_cli_options(trained, tmp_path, capsys):
    """A run with speed in km/h and cadence in steps/min is refused naming --speed-unit, then
    read as declared by --speed-unit and --cadence-unit."""
    _, ckpt = trained
    run = write_run(tmp_path / "kmh.csv", 600, seed=11)
    rows = [r.split(",") for r in run.read_text().splitlines()]
    i, j = COLUMNS.index("enhanced_speed"), COLUMNS.index("cadence")
    for r in rows[1:]:
        r[i], r[j] = f"{3.6 * float(r[i]):.4f}", f"{2 * float(r[j]):.1f}"
    run.write_text("\n".join(",".join(r) for r in rows) + "\n")
    argv = ["predict", "--model", str(ckpt), str(run), "--out", str(tmp_path / "p")]
    line = _one_line_error(capsys, main(argv))
    assert "km/h" in line and "--speed-unit km/h" in line
    assert main([*argv, "--speed-unit", "km/h", "--cadence-unit", "steps/min"]) == 0
    pred = _predictions(tmp_path / "p" / "kmh.csv")
    assert np.all(np.isfinite(pred["generative_bpm"]))


@FITTED
def test_predict_without_hr_needs_hr0_and_runs_the_generative_protocol(trained, tmp_path, capsys):
    _, ckpt = trained
    run = write_run(tmp_path / "nohr.csv", 500, seed=6, columns=COLUMNS[:1] + COLUMNS[2:])
    argv = ["predict", "--model", str(ckpt), str(run), "--out", str(tmp_path / "p")]
    line = _one_line_error(capsys, main(argv))
    assert "nohr.csv" in line and "--hr0" in line
    assert main(argv + ["--hr0", "100"]) == 0
    assert "standard   not run" in capsys.readouterr().out
    pred = _predictions(tmp_path / "p" / "nohr.csv")
    assert np.all(np.isnan(pred["standard_bpm"])) and np.all(np.isnan(pred["measured_hr_bpm"]))
    assert pred["generative_bpm"][0] == 100 and np.all(np.isfinite(pred["generative_bpm"]))


def test_training_on_a_file_without_hr_or_an_empty_folder_fails_in_one_line(tmp_path, capsys):
    run = write_run(tmp_path / "nohr.csv", 300, seed=7, columns=COLUMNS[:1] + COLUMNS[2:])
    out = str(tmp_path / "m.wjx")
    line = _one_line_error(capsys, main(["fit", "hr", "--data", str(run), "--out", out]))
    assert "nohr.csv" in line and "no heart rate" in line
    (tmp_path / "empty").mkdir()
    code = main(["fit", "hr", "--data", str(tmp_path / "empty"), "--out", out])
    assert "no usable recording" in _one_line_error(capsys, code)
    code = main(["cv", "hr", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "cv")])
    assert "no usable recording" in _one_line_error(capsys, code)
    assert not (tmp_path / "m.wjx").exists()


def _real_runs(n: int) -> list[Path]:
    if not REAL_CSV.is_dir():
        pytest.skip(f"the shared running CSVs are not at {REAL_CSV}")
    files = sorted(REAL_CSV.glob("*.csv"), key=lambda p: p.stat().st_size)
    if len(files) < n:
        pytest.skip(f"fewer than {n} running CSVs in {REAL_CSV}")
    return files[:n]


@pytest.mark.slow
def test_fit_then_predict_round_trip_on_real_runs(tmp_path, capsys):
    """Real exports have speed, cadence and altitude only: the models train on that subset."""
    files = _real_runs(4)
    folder = tmp_path / "runs"
    folder.mkdir()
    for f in files[:3]:
        (folder / f.name).symlink_to(f.resolve())
    ckpt = tmp_path / "m.wjx"
    assert main(["fit", "hr", "--data", str(folder), "--out", str(ckpt), "--quick"]) == 0
    assert checkpoints.load_hr(ckpt).header["channels"] == ["speed", "cadence", "altitude"]
    assert main(["predict", "--model", str(ckpt), str(files[3]), "--out", str(tmp_path)]) == 0
    pred = _predictions(tmp_path / f"{files[3].stem}.csv")
    assert len(pred["second"]) == read_file(files[3])[0].length  # one row per second
    scored = np.isfinite(pred["measured_hr_bpm"])
    for protocol, bound in (("standard", 15.0), ("generative", 40.0)):
        err = np.abs(pred[f"{protocol}_bpm"] - pred["measured_hr_bpm"])[scored]
        assert np.all(np.isfinite(pred[f"{protocol}_bpm"])) and np.mean(err) < bound
    assert "standard   MAE" in capsys.readouterr().out


@pytest.mark.slow
def test_cv_hr_by_sessions_writes_metrics_and_report(tmp_path, capsys):
    folder = tmp_path / "me"
    folder.mkdir()
    for i in range(5):
        write_run(folder / f"run{i}.csv", 720, seed=10 + i)
    out = tmp_path / "cv"
    assert main(["cv", "hr", "--data", str(folder), "--quick", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert "leave-1-sessions-out" in metrics["folds"]["how"]
    assert metrics["folds"]["n_folds"] == 5
    for protocol in ("standard", "generative"):
        assert np.isfinite(metrics["models"]["kalman_32x1"][protocol]["mae"])
    assert "leave-1-sessions-out" in (out / "report.md").read_text()
    assert "Standard protocol" in capsys.readouterr().out
    assert not list(out.glob("partial*"))  # the study's progress, dropped once it has ended


def test_cli_is_built_from_the_task_table(tmp_path, monkeypatch):
    from wearjax.tasks import HR_MODELS, commands

    for kind in HR_MODELS:
        args = cli._parser().parse_args(["cv", "hr", "--model", kind, "--data", "d", "--out", "o"])
        assert args.model == kind and args.run is commands.TASKS["hr"]["cv"].run
    required = {  # the smallest valid command line of each task
        "hr": ["--data", "d"], "vo2": ["--data", "d"], "pretrain": [], "har": [],
        "probe": ["--encoder", "e.wjx", "--data", "basic_motions"], "virtual": [],
    }  # fmt: skip
    for task, table in commands.TASKS.items():
        for command, entry in table.items():
            args = cli._parser().parse_args([command, task, *required[task], "--out", "o"])
            assert args.run is entry.run
    args = cli._parser().parse_args(["cv", "vo2", "--data", "pyoxynet", "--quick", "--out", "o"])
    assert (args.data, args.quick, args.seed) == ("pyoxynet", True, 0)
    with pytest.raises(SystemExit):  # a command the task's table does not hold
        cli._parser().parse_args(["fit", "probe", "--data", "d", "--out", "o"])


@FITTED
def test_predict_on_a_folder_names_outputs_by_file_and_skips_a_bad_one(trained, tmp_path, capsys):
    _, ckpt = trained
    folder = tmp_path / "new"
    folder.mkdir()
    write_run(folder / "tuesday.csv", 600, seed=8)
    write_run(folder / "nocad.csv", 600, seed=9, columns=COLUMNS[:3] + COLUMNS[4:])
    write_run(folder / "thursday.csv", 660, seed=10)
    out = tmp_path / "p"
    assert main(["predict", "--model", str(ckpt), str(folder), "--out", str(out)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "skipped" in err[0] and "nocad.csv" in err[0] and "'cadence'" in err[0]
    assert sorted(p.name for p in out.glob("*.csv")) == ["thursday.csv", "tuesday.csv"]
    assert len(_predictions(out / "thursday.csv")["generative_bpm"]) == 660


def _fit_process(folder, out, env, *extra):
    import subprocess
    import sys

    argv = [sys.executable, "-m", "wearjax.cli", "fit", "hr", "--data", str(folder), "--out",
            str(out), "--quick", *extra]  # fmt: skip
    return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _interrupt_after_first_save(proc, state_file, sig):
    import time

    deadline = time.monotonic() + 300
    while not state_file.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)  # poll often: a quick run's remaining epochs take well under a second
    assert proc.poll() is None, "training finished before it could be interrupted"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    return proc, err.decode()


@pytest.mark.heavy  # ~5 min on 2 cores
@pytest.mark.slow
def test_killed_or_interrupted_training_resumes_to_the_same_model(tmp_path):
    """SIGKILL mid-run and Ctrl-C (SIGINT) mid-run, each resumed with --resume, give the same
    weights as an uninterrupted run, bit for bit."""
    import os
    import signal

    folder = tmp_path / "runs"
    folder.mkdir()
    for i in range(4):
        write_run(folder / f"run{i}.csv", 900 + 150 * i, seed=i)
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    whole = _fit_process(folder, tmp_path / "whole.wjx", env)
    whole.communicate(timeout=600)
    assert whole.returncode == 0
    reference = checkpoints.load_hr(tmp_path / "whole.wjx")
    for sig, expected_code in ((signal.SIGINT, 130), (signal.SIGKILL, -signal.SIGKILL)):
        out = tmp_path / f"{sig.name}.wjx"
        state = Path(f"{out}.state")
        proc, stderr = _interrupt_after_first_save(_fit_process(folder, out, env), state, sig)
        assert proc.returncode == expected_code, stderr[-2000:]
        if sig == signal.SIGINT:
            err = stderr.strip().splitlines()
            assert err[-1].startswith("wearjax: interrupted after epoch") and "--resume" in err[-1]
            assert "Traceback" not in "\n".join(err)
        assert state.exists() and not out.exists()
        resumed = _fit_process(folder, out, env, "--resume")
        _, stderr = resumed.communicate(timeout=600)
        assert resumed.returncode == 0, stderr.decode()
        got = checkpoints.load_hr(out)
        assert tree_allclose((got.model, got.normalizer), (reference.model, reference.normalizer),
                             rtol=0, atol=0)  # fmt: skip
        assert not state.exists()


def _another_watch(path, out):
    """The run `path` as another device reports it: vertical oscillation x 1.3, altitude
    + 120 m (another estimation method, another altimeter calibration)."""
    with open(path) as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["vertical_oscillation"] = str(1.3 * float(r["vertical_oscillation"]))
        r["enhanced_altitude"] = str(float(r["enhanced_altitude"]) + 120.0)
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return out


def test_predict_with_session_relative_features_reads_another_watch_alike(tmp_path):
    """A checkpoint whose device features are standardised per session predicts a run the
    same way whatever offset and scale the device puts on them; one with the fold's
    normaliser alone does not (untrained weights: the invariance is the inputs', not
    learned)."""
    from wearjax.tasks.hr_fit import predict_hr

    columns = COLUMNS + ("vertical_oscillation",)
    [run] = read_file(write_run(tmp_path / "a.csv", 600, seed=3, columns=columns))
    [other] = read_file(_another_watch(tmp_path / "a.csv", tmp_path / "b.csv"))
    names = ["pace_s_per_km", "cadence_steps_per_min", "vertical_oscillation_per_height",
             "altitude_m", "altitude_gain_m"]  # fmt: skip
    model = build_model("kalman", len(names), 8, 1, window=60, key=jax.random.key(0))
    header = {"window": 60, "features": names, "channels": list(run.channels), "height_m": 1.75}
    normalizer = Normalizer(jnp.zeros(len(names)), jnp.ones(len(names)))
    gen = {}
    for relative in ([], ["vertical_oscillation_per_height", "altitude_m"]):
        h = {**header, "session_relative": relative}
        a, b = (predict_hr(model, normalizer, h, s) for s in (run, other))
        gen[bool(relative)] = np.abs(a.generative - b.generative).max()
        if relative:
            assert np.allclose(a.standard, b.standard, atol=1e-3)
    assert gen[True] < 1e-3 < gen[False]
    with pytest.raises(WearjaxDataError, match=r"a\.csv: hr0 is nan; give a bpm"):
        predict_hr(model, normalizer, header, run, hr0=float("nan"))  # not NaN predictions
