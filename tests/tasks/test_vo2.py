"""VO2 study: HR -> VO2 as one compiled function, baselines against NumPy, the study's training
traced once, the real pyoxynet tests (skipped when the package is absent), the CLI hook's error."""

import importlib.util
import json
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wearjax.cli import main as wearjax
from wearjax.data.types import SUBJECT_FIELDS, Session, stack_sessions
from wearjax.errors import WearjaxError
from wearjax.eval.report import write_report
from wearjax.models import HRKalman, build_vo2_model
from wearjax.signal.features import fit_normalizer, running_features
from wearjax.signal.metabolic import metabolic_feature_names, metabolic_features
from wearjax.tasks import presets, vo2_chain
from wearjax.tasks import vo2 as vo2_study

HAS_PYOXYNET = importlib.util.find_spec("pyoxynet") is not None
CHANNELS = ("speed", "cadence", "altitude")


def toy_cohort(n_runners=3, t=60, seed=0):
    rng = np.random.default_rng(seed)
    sessions = []
    for r in range(n_runners):
        speed = 2.5 + 0.5 * np.sin(np.arange(t) / 20.0) + 0.1 * r
        x = np.stack([speed, 80 + 3 * speed, 100 + np.cumsum(0.02 * speed)], axis=1)
        hr = 100 + 20 * speed + rng.normal(0, 1, t)
        vo2 = 300 + 600 * speed + rng.normal(0, 30, t)
        subject = np.array([1.7 + 0.05 * r, 60.0 + 5 * r, 30.0 + r, r % 2], np.float32)
        assert subject.shape == (len(SUBJECT_FIELDS),)
        sessions.append(
            Session(
                x=x.astype(np.float32),
                hr=hr.astype(np.float32),
                vo2=vo2.astype(np.float32),
                mask=np.ones(t, bool),
                vo2_mask=np.ones(t, bool),
                subject=subject,
                runner=f"r{r}",
                channels=CHANNELS,
            )
        )
    return stack_sessions(sessions, bucket=60)


@pytest.mark.slow
def test_hr_to_vo2_is_one_compiled_function():
    cohort = toy_cohort()
    hr_feats, _ = running_features(cohort.x, cohort.channels, cohort.subject)
    hr_model = HRKalman(hr_feats.shape[-1], 8, 1, key=jax.random.key(0))
    hr_norm = fit_normalizer(hr_feats, cohort.mask)
    vo2_feats, _ = vo2_study.cohort_features(cohort)
    vo2_model = build_vo2_model(vo2_feats.shape[-1], (8, 1), key=jax.random.key(1))
    vo2_norm = fit_normalizer(vo2_feats, cohort.mask)
    traces = []

    @eqx.filter_jit
    def chain(i):
        traces.append(1)
        return vo2_chain.hr_to_vo2(
            hr_model, hr_norm, vo2_model, vo2_norm, hr_feats[i], cohort.x[i],
            cohort.subject[i], cohort.hr[i], cohort.mask[i], cohort.valid[i], cohort.vo2[i, 0],
            channels=cohort.channels,
        )  # fmt: skip

    outs = [chain(jnp.asarray(i)) for i in range(3)]
    assert len(traces) == 1
    # the same chain, step by step and eagerly
    hr = hr_model.rollout(hr_norm.apply(hr_feats[2]), cohort.hr[2, 0]).hr
    f = metabolic_features(cohort.x[2], CHANNELS, cohort.subject[2], hr, cohort.valid[2])
    vo2 = vo2_model.rollout(vo2_norm.apply(f), cohort.vo2[2, 0]).vo2
    np.testing.assert_allclose(outs[2][1], hr, rtol=1e-5)
    np.testing.assert_allclose(outs[2][0], vo2, rtol=1e-4)
    assert outs[2][0][0] == cohort.vo2[2, 0]
    # and it lowers as a single program
    assert "while" in chain.lower(jnp.asarray(0)).as_text()
    # a VO2 model that leaves inputs out (`VO2StudyConfig.without`) reads only its own columns
    # of the rolled-out HR's features (until 2026-12-07 the chain fed it all: a shape error)
    few, names = vo2_study.cohort_features(cohort, without=("window_index", "elapsed_min"))
    every = metabolic_feature_names(cohort.channels)
    keep = tuple(every.index(n) for n in names)
    small = build_vo2_model(few.shape[-1], (8, 1), key=jax.random.key(1))
    small_norm = fit_normalizer(few, cohort.mask)
    vo2_few, _ = eqx.filter_jit(vo2_chain.hr_to_vo2)(
        hr_model, hr_norm, small, small_norm, hr_feats[2], cohort.x[2], cohort.subject[2],
        cohort.hr[2], cohort.mask[2], cohort.valid[2], cohort.vo2[2, 0],
        channels=cohort.channels, keep=keep,
    )  # fmt: skip
    want = small.rollout(small_norm.apply(f[:, list(keep)]), cohort.vo2[2, 0]).vo2
    np.testing.assert_allclose(vo2_few, want, rtol=1e-4)


def test_baselines_match_numpy():
    cohort = toy_cohort(n_runners=4)
    cfg = vo2_study.VO2StudyConfig(subjects_out=2, validation_subjects=1)
    data, fold, split, names = vo2_study.prepare(cohort, cfg)
    test = split.test
    weight = jnp.asarray(~test)[:, :, None] & data.mask[None]
    base = vo2_study.hr_baselines(data, weight, split.owner)
    hr, vo2, v0 = (np.asarray(a, np.float64) for a in (data.hr, data.vo2, data.v0))
    for s in range(4):
        k = int(np.flatnonzero(test[:, s])[0])
        train = ~test[k]
        slope = np.polyfit(hr[train].ravel(), vo2[train].ravel(), 1)[0]
        np.testing.assert_allclose(
            base["baseline_linear_hr"][s], v0[s] + slope * (hr[s] - hr[s, 0]), rtol=1e-3
        )
        np.testing.assert_allclose(
            base["baseline_hr_ratio"][s], v0[s] * hr[s] / hr[s, 0], rtol=1e-5
        )


@pytest.mark.slow
def test_study_trains_once_and_scores(tmp_path):
    cohort = toy_cohort(n_runners=4)
    cfg = vo2_study.VO2StudyConfig(
        variant=(4, 1),
        batch_size=2,
        subjects_out=2,
        validation_subjects=1,
        train=vo2_study.VO2StudyConfig().train._replace(epochs=2, steps_per_epoch=2),
    )
    results, pred = vo2_study.run_vo2_study(cohort, cfg, progress=False)
    entry = results["models"]["vo2_kalman"]
    assert entry["n_traces"] == 1
    assert set(results["models"]) == {"vo2_kalman", "baseline_linear_hr", "baseline_hr_ratio"}
    assert len(entry["per_subject"]) == 4 and np.isfinite(entry["mape"])
    np.testing.assert_allclose(pred["vo2_kalman"][:, 0], np.asarray(cohort.vo2)[:, 0], rtol=0.2)
    table = write_report(results, tmp_path, "toy")
    assert (tmp_path / "metrics.json").exists() and "MAPE" in table


def test_cli_names_the_fix_when_pyoxynet_is_missing(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "pyoxynet" else real(name, *a)
    )
    with pytest.raises(WearjaxError, match=r"pip install wearjax\[data\]"):
        presets.load_cpet_cohort(5)
    assert wearjax(["cv", "vo2", "--data", "pyoxynet", "--quick", "--out", str(tmp_path)]) == 2


@pytest.mark.skipif(not HAS_PYOXYNET, reason="pyoxynet not installed: pip install wearjax[data]")
def test_pyoxynet_ramp_tests_load():
    from wearjax.data.pyoxynet import load_ramp_tests

    sessions, skipped = load_ramp_tests()
    assert len(sessions) + len(skipped) == 88
    assert all("no heart rate" in s.reason for s in skipped)
    assert len(skipped) >= 1
    s = sessions[0]
    assert s.channels == () and s.vo2_mask.all() and s.mask.any()
    assert 1.4 < s.subject[SUBJECT_FIELDS.index("height_m")] < 2.2
    cohort = presets.load_cpet_cohort(limit=5)
    assert cohort.x.shape[1] % 60 == 0 and cohort.n_runners == 5


@pytest.mark.slow
@pytest.mark.skipif(not HAS_PYOXYNET, reason="pyoxynet not installed: pip install wearjax[data]")
def test_cli_quick_pyoxynet(tmp_path: Path):
    assert wearjax(["cv", "vo2", "--data", "pyoxynet", "--quick", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "metrics.json").exists() and (tmp_path / "report.md").exists()


def test_prepare_refuses_sessions_without_vo2():
    cohort = toy_cohort(n_runners=3)
    cohort = eqx.tree_at(lambda c: c.vo2_mask, cohort, cohort.vo2_mask.at[1].set(False))
    with pytest.raises(WearjaxError, match="no VO2"):
        vo2_study.prepare(cohort, vo2_study.VO2StudyConfig())


def test_prepare_refuses_a_session_whose_vo2_starts_late():
    """The model is given second 0's VO2; a session whose first VO2 comes later would hand it
    a value held back from then, so the session is named with its first second of VO2."""
    cohort = toy_cohort(n_runners=3)
    cohort = eqx.tree_at(lambda c: c.vo2_mask, cohort, cohort.vo2_mask.at[2, :7].set(False))
    with pytest.raises(WearjaxError, match=r"'2 \(second 7\)'\] start before their first VO2"):
        vo2_study.prepare(cohort, vo2_study.VO2StudyConfig())
    gap = eqx.tree_at(lambda c: c.vo2_mask, cohort, cohort.vo2_mask.at[2, :7].set(True))
    gap = eqx.tree_at(lambda c: c.vo2_mask, gap, gap.vo2_mask.at[2, 3:7].set(False))
    vo2_study.prepare(gap, vo2_study.VO2StudyConfig())  # a dropout after second 0 is fine


def test_prepare_refuses_a_session_without_hr_where_the_others_have_it():
    """HR is an input once any session has it: a session without it would feed NaN (held
    over no observation) to the model and to the baselines' slope of every fold."""
    cohort = toy_cohort(n_runners=3)
    cohort = eqx.tree_at(lambda c: c.mask, cohort, cohort.mask.at[1].set(False))
    with pytest.raises(WearjaxError, match="no HR where the others have it"):
        vo2_study.prepare(cohort, vo2_study.VO2StudyConfig())


def write_cpet_folder(folder: Path, n_subjects=6, seconds=300):
    """Ramp tests of a lab's own export: VO2 in L/min rising with the load, its own names."""
    rng = np.random.default_rng(0)
    for i in range(n_subjects):
        t = np.arange(seconds)
        load = 50 + 0.5 * t
        fitness = 1 + 0.1 * i
        vo2 = (0.5 + 0.011 * load / fitness) * (1 - np.exp(-(t + 20) / 40))
        vo2 = vo2 + rng.normal(0, 0.03, seconds)
        hr = 80 + 0.45 * load / fitness + rng.normal(0, 1.5, seconds)
        path = folder / f"subject{i}" / "ramp.csv"
        path.parent.mkdir(parents=True)
        rows = ["Zeit;VO2 abs;HF;Last"] + [f"{s};{vo2[s]:.3f};{hr[s]:.0f};{load[s]:.0f}" for s in t]
        path.write_text("\n".join(rows) + "\n")
    (folder / "notes.txt").write_text("not a test")


def test_a_subject_field_some_tests_lack_is_filled_with_the_others_median(tmp_path):
    """Age in 3 of 5 tests: the other two read age 0 y once stacked, silently."""
    from wearjax.data.types import SUBJECT_FIELDS

    write_cpet_folder(tmp_path / "cpet", n_subjects=5)
    for i, age in enumerate((30, 40, 50)):
        path = tmp_path / "cpet" / f"subject{i}" / "ramp.csv"
        lines = path.read_text().splitlines()
        lines = [lines[0] + ";Age"] + [f"{line};{age}" for line in lines[1:]]
        path.write_text("\n".join(lines) + "\n")
    said = []
    columns = {"time": "Zeit", "vo2": "VO2 abs", "hr": "HF", "work_rate": "Last"}  # Age: found
    cohort, _ = presets.load_cpet_folder_cohort(tmp_path / "cpet", columns=columns, say=said.append)
    age = np.asarray(cohort.subject)[:, SUBJECT_FIELDS.index("age_years")]
    np.testing.assert_allclose(sorted(age), [30, 40, 40, 40, 50])
    assert "age_years: missing in 2 of 5 tests; filled with the median of the others (40)" in said


def test_cv_vo2_refused_on_its_data_leaves_nothing_to_resume(tmp_path, capsys):
    """The study is marked in --out before the folder is read: a folder it refuses (one test)
    used to leave that mark, and the corrected rerun was asked to --resume."""
    folder = tmp_path / "cpet"
    write_cpet_folder(folder, n_subjects=1)
    out = tmp_path / "out"
    argv = ["cv", "vo2", "--data", str(folder), "--columns", "time=Zeit,vo2=VO2 abs,hr=HF,"
            "work_rate=Last", "--quick", "--out", str(out)]  # fmt: skip
    assert wearjax(argv) == 2
    assert "--resume" not in capsys.readouterr().err and not list(out.glob("partial*"))


@pytest.mark.slow
def test_cli_cv_vo2_on_a_folder_of_lab_files(tmp_path, capsys):
    folder = tmp_path / "cpet"
    write_cpet_folder(folder)
    out = tmp_path / "out"
    argv = ["cv", "vo2", "--data", str(folder), "--columns", "time=Zeit,vo2=VO2 abs,hr=HF,"
            "work_rate=Last", "--quick", "--out", str(out)]  # fmt: skip
    assert wearjax(argv) == 0
    captured = capsys.readouterr()
    assert "6 tests of 6 subjects; VO2 read as L/min (detected) in 6, reported in mL/min" in (
        captured.out
    )
    assert "inputs: hr, work_rate" in captured.out
    assert "notes.txt" in captured.err and captured.err.startswith("wearjax: skipped")
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["models"]) == {"vo2_kalman", "baseline_linear_hr", "baseline_hr_ratio"}
    assert metrics["cohort"]["features"][:2] == ["hr_bpm", "work_rate_hw"]
    # VO2 is reported in mL/min whatever the files used (an error under 5 would be L/min), and
    # on these ramps the model follows VO2 better than the linear HR baseline
    model, linear = metrics["models"]["vo2_kalman"], metrics["models"]["baseline_linear_hr"]
    assert 5 < model["mae"] < linear["mae"]
    assert metrics["folds"]["n_folds"] == 6
    assert not list(out.glob("partial*"))  # the training state, dropped once the study ends
    # a bad --columns value is one line and exit code 2
    assert wearjax(["cv", "vo2", "--data", str(folder), "--columns", "vo2", "--out", str(out)]) == 2
    assert "is not NAME=COLUMN" in capsys.readouterr().err
    _interrupted_and_resumed(argv, out, metrics, capsys)


def _interrupted_and_resumed(argv, first: Path, metrics: dict, capsys):
    """A Ctrl-C in the third epoch, then `--resume`: the metrics of the uninterrupted run."""
    from wearjax import cv

    out = first.parent / "again"
    argv = [*argv[:-1], str(out)]
    train_epochs, calls = cv.train_epochs, []

    def interrupting(epoch_fn, *args, **kw):
        def epoch(*a):
            calls.append(1)
            if len(calls) == 3:
                raise KeyboardInterrupt
            return epoch_fn(*a)

        return train_epochs(epoch, *args, **kw)

    with pytest.MonkeyPatch.context() as m:
        m.setattr(cv, "train_epochs", interrupting)
        assert wearjax(argv) == 130
    assert "interrupted after epoch 2" in capsys.readouterr().err
    assert (out / "partial_vo2.state").exists() and not (out / "metrics.json").exists()
    assert wearjax(argv) == 2  # never overwritten without --resume
    assert "pass --resume" in capsys.readouterr().err
    assert wearjax([*argv, "--resume"]) == 0
    resumed = json.loads((out / "metrics.json").read_text())
    untimed = lambda m: {k: v for k, v in m["vo2_kalman"].items() if "second" not in k}  # noqa: E731
    assert untimed(resumed["models"]) == untimed(metrics["models"])
    assert not list(out.glob("partial*"))


def test_folder_folds_are_sized_to_the_folder():
    assert (
        presets.folder_config(87).subjects_out,
        presets.folder_config(87).validation_subjects,
    ) == (9, 4)
    assert (
        presets.folder_config(6).subjects_out,
        presets.folder_config(6).validation_subjects,
    ) == (1, 1)
    with pytest.raises(WearjaxError, match="3 subject\\(s\\): subject-wise cross-validation needs"):
        presets.folder_config(3)


@pytest.mark.skipif(not HAS_PYOXYNET, reason="pyoxynet not installed: pip install wearjax[data]")
def test_resting_tests_are_other_subjects_than_the_ramp_tests():
    """The CPET pretraining corpus (`tasks.pretrain.cpet_corpus`) comes from the resting tests;
    the metabolic-domain probe is scored on the ramp tests: no subject in both (age, height,
    weight, sex), and its windows are HR, VO2, VCO2 and VE without a missing value, HR within
    25-250 bpm: a strap's dropout reads 0 bpm in two resting tests, which until 2026-12-07
    reached the corpus as 0 bpm (one of them, HR in only 32 of its 539 s, is now skipped)."""
    from wearjax.data.pyoxynet import (
        DOMAIN_CHANNELS,
        domain_windows,
        pyoxynet_data_folder,
        resting_series,
    )
    from wearjax.tasks.pretrain import cpet_corpus

    def subjects(pattern):
        out = set()
        for path in pyoxynet_data_folder().glob(pattern):
            with path.open() as f:
                names = f.readline().strip().split(",")
            row = np.loadtxt(path, delimiter=",", skiprows=1, max_rows=1)
            out.add(
                tuple(float(row[names.index(k)]) for k in ("age", "height", "weight", "gender"))
            )
        return out

    ramp, resting = subjects("ramp_real_test_*.csv"), subjects("resting_real_test_*.csv")
    assert len(ramp) > 80 and len(resting) > 40 and not ramp & resting
    series, skipped = resting_series()
    assert len(series) + len(skipped) == 50
    reasons = sorted(s.reason for s in skipped)  # "heart rate in ..." sorts first
    assert reasons[0] == "heart rate in 25-250 bpm in only 32 of 539 s"
    assert all("no heart rate" in r for r in reasons[1:])
    assert all(x.shape[1] == len(DOMAIN_CHANNELS) for x in series)
    corpus = cpet_corpus()
    assert corpus.x.shape[1:] == (4, 60) and bool(np.all(np.isfinite(corpus.x)))
    hr, vo2 = np.asarray(corpus.x[:, 0]), np.asarray(corpus.x[:, 1])
    assert hr.min() >= 25 and hr.max() <= 250
    assert 40 < np.median(hr) < 200 and 300 < np.median(vo2) < 5000  # bpm, mL/min
    probed, _ = domain_windows()  # the probe's windows: 87 ramp tests with HR
    assert probed.x.shape == (3483, 60, 4) and probed.n_subjects == 87


def test_a_folder_test_without_hr_is_skipped_where_the_others_have_it(tmp_path):
    """HR is an input once any test has it: a test without it would be read as 0 bpm (and
    baseline (b), VO2 in proportion to HR, would predict 0 there). It is skipped, named."""
    folder = tmp_path / "cpet"
    write_cpet_folder(folder, n_subjects=5, seconds=120)
    for path in folder.glob("*/ramp.csv"):  # HR and load under names found without a mapping
        lines = path.read_text().replace("HF", "HR").replace("Last", "Load").splitlines()
        if path.parent.name == "subject2":  # recorded without the chest strap, nor the load
            lines = [";".join(c for j, c in enumerate(line.split(";")) if j < 2) for line in lines]
        path.write_text("\n".join(lines) + "\n")
    said = []
    columns = {"time": "Zeit", "vo2": "VO2 abs"}  # HR and the load found by their names
    cohort, note = presets.load_cpet_folder_cohort(folder, columns=columns, say=said.append)
    assert cohort.x.shape[0] == 4 and "4 tests of 4 subjects" in note
    assert "inputs: hr, work_rate" in note  # the skipped test's missing load is not lost
    assert np.asarray(cohort.mask).any(axis=1).all()
    assert any("subject2" in s and "no heart rate, which the other tests have" in s for s in said)


def test_a_folders_gas_channels_are_inputs_only_when_asked(tmp_path):
    """VCO2 and VE come from the analyser that measures VO2 (VCO2 is VO2 times the exchange
    ratio): as inputs they would hand the model the target's own sensor, while the baselines
    read HR. They are left out, named, unless `gas_inputs`."""
    folder = tmp_path / "cpet"
    write_cpet_folder(folder, n_subjects=4, seconds=120)
    for path in folder.glob("*/ramp.csv"):
        lines = path.read_text().splitlines()
        rows = [line.split(";") for line in lines[1:]]
        extra = [f"{float(r[1]) * 0.9:.3f};{30 + float(r[1]) * 25:.1f}" for r in rows]
        lines = [lines[0] + ";VCO2;VE"] + [
            f"{a};{b}" for a, b in zip(lines[1:], extra, strict=True)
        ]
        path.write_text("\n".join(lines) + "\n")
    columns = {"time": "Zeit", "vo2": "VO2 abs", "hr": "HF", "work_rate": "Last"}
    said = []
    cohort, note = presets.load_cpet_folder_cohort(folder, columns=columns, say=said.append)
    assert cohort.channels == ("work_rate",) and note.endswith("inputs: hr, work_rate")
    assert said[-1] == "left out vco2, ve (the gas analyser's, beside VO2): --gas-inputs uses them"
    cohort, note = presets.load_cpet_folder_cohort(folder, columns=columns, gas_inputs=True)
    assert set(cohort.channels) == {"work_rate", "vco2", "ve"} and "vco2" in note


def test_inputs_left_out_are_the_other_columns_and_unknown_ones_are_named():
    """`VO2StudyConfig.without` drops named inputs (the clock since the start, say): the rest
    are the full features' other columns, in order; a name that is no input is refused."""
    cohort = toy_cohort(n_runners=2)
    full, names = vo2_study.cohort_features(cohort)
    part, kept = vo2_study.cohort_features(cohort, without=("window_index", "elapsed_min"))
    assert kept == tuple(n for n in names if n not in ("window_index", "elapsed_min"))
    np.testing.assert_array_equal(part, full[..., [names.index(n) for n in kept]])
    with pytest.raises(WearjaxError, match=r"no input \['clock'\] among"):
        vo2_study.cohort_features(cohort, without=("clock",))
