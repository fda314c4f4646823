"""The virtual-sensing task: spectra on the model's grid, reference HR per window, the ACC ->
PPG reconstruction learning in a small run, and `wearjax cv virtual` on folders of files."""

import json
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wearjax.cli import main
from wearjax.cv import Split
from wearjax.errors import WearjaxDataError
from wearjax.models.virtual import FLOOR_DB, GRID_HZ
from wearjax.tasks.virtual import (
    VirtualConfig,
    device_data,
    make_folds,
    make_task,
    split_sessions,
)
from wearjax.tasks.virtual_data import (
    HOP_S,
    WINDOW_S,
    WristRecording,
    grid_spectra,
    spectral_sessions,
)
from wearjax.train.loop import fit


def _recording(seed: int, subject: str, seconds: int = 120, rate: float = 25.0, ppg=True):
    """A wrist-like recording: PPG pulses at a varying HR, ACC with a swing at 1.4 Hz, a step
    bounce at 2.8 Hz and a weak beat component."""
    rng = np.random.default_rng(seed)
    hr = 110 + 40 * np.sin(np.arange(seconds) / 40.0 + seed)
    t = np.arange(int(seconds * rate)) / rate
    phase = np.cumsum(np.interp(t, np.arange(seconds), hr) / 60) / rate
    pulse = np.sin(2 * np.pi * phase) + 0.4 * np.sin(4 * np.pi * phase + 1.0)
    swing = np.sin(2 * np.pi * 1.4 * t + seed)
    acc = np.stack(
        [swing, np.sin(2 * np.pi * 2.8 * t), 0.05 * np.sin(2 * np.pi * phase)], axis=1
    ) + 0.05 * rng.normal(size=(t.size, 3))
    p = (pulse + 0.5 * swing + 0.1 * rng.normal(size=t.size), rate) if ppg else None
    return WristRecording(f"rec{seed}", subject, (acc, rate), p, (hr, 1.0))


@pytest.mark.parametrize("rate", [25.0, 31.25, 51.2, 64.0, 128.0])
def test_grid_spectra_put_a_sinusoid_at_its_frequency_whatever_the_rate(rate):
    t = np.arange(int(40 * rate)) / rate
    x = np.stack([np.sin(2 * np.pi * 1.9 * t), np.sin(2 * np.pi * 3.1 * t)])
    spec = grid_spectra(x, rate)  # [W, F, 2]
    assert spec.shape == (1 + int((40 - WINDOW_S) / HOP_S), len(GRID_HZ), 2)
    step = GRID_HZ[1] - GRID_HZ[0]
    for c, f in enumerate((1.9, 3.1)):
        peaks = GRID_HZ[np.argmax(spec[:, :, c], axis=1)]
        assert np.all(np.abs(peaks - f) <= step)
    np.testing.assert_allclose(spec.max(axis=1), 1.0, rtol=1e-5)


def test_reference_hr_per_window_and_ppg_presence_against_a_loop():
    rec = _recording(0, "a")
    ppg, rate = rec.ppg
    ppg = ppg.copy()
    ppg[1000:1100] = np.nan  # a 4 s PPG dropout at 40-44 s
    hr = rec.hr[0].copy()
    hr[50:70] = np.nan
    s = spectral_sessions([rec._replace(ppg=(ppg, rate), hr=(hr, 1.0))])
    for w in range(s.ok.shape[1]):
        lo = w * HOP_S
        values = hr[int(lo) : int(lo + WINDOW_S)]
        values = values[np.isfinite(values)]
        assert s.ok[0, w] == (values.size > 0)
        if values.size:
            np.testing.assert_allclose(s.hr[0, w], values.mean(), rtol=1e-5)
        covered = np.isfinite(ppg[int(lo * rate) : int((lo + WINDOW_S) * rate)]).all()
        assert s.ppg_ok[0, w] == covered


def test_a_reference_at_the_hop_rate_is_one_value_per_window(tmp_path):
    """One HR per 8 s window every 2 s (as public PPG benchmarks give it), written as a sidecar
    at the windows' start times: each window gets its own value, not a mean over the four
    values its 8 s cover; a missing value leaves its window without reference."""
    from wearjax.data.sampled import read_sampled
    from wearjax.tasks.virtual_data import wrist_recording

    rec = _recording(0, "a", seconds=60)
    acc, rate = rec.acc
    n = 1 + int((60 - WINDOW_S) / HOP_S)  # windows of the recording
    per_window = 100.0 + 3.0 * np.arange(n) + 5.0 * (np.arange(n) % 2)  # no two alike
    per_window[7] = np.nan
    cols = {"time": np.arange(len(acc)) / rate, "acc_x": acc[:, 0], "acc_y": acc[:, 1],
            "acc_z": acc[:, 2]}  # fmt: skip
    lines = [",".join(cols)]
    lines += [",".join(f"{v:.4f}" for v in row) for row in zip(*cols.values(), strict=True)]
    (tmp_path / "run.csv").write_text("\n".join(lines) + "\n")
    side = ["time,hr"] + [f"{HOP_S * k:.1f},{h:.2f}" for k, h in enumerate(per_window)]
    (tmp_path / "run.hr.csv").write_text("\n".join(side) + "\n")
    session = read_sampled(tmp_path / "run.csv", require_hr=False)
    assert session.targets["hr"].rate_hz == 1 / HOP_S
    s = spectral_sessions([wrist_recording(session)])
    assert s.hr.shape[1] == n
    known = np.isfinite(per_window)
    np.testing.assert_array_equal(s.ok[0], known)
    np.testing.assert_allclose(s.hr[0, known], per_window[known], rtol=1e-6)


def test_a_rate_whose_hop_is_not_whole_samples_keeps_its_windows_on_the_reference():
    """At 31.25 Hz a 2 s hop is 62.5 samples: each window starts at its own rounded sample,
    so the session has the windows, labels and PPG peaks of the same recording at 32 Hz."""
    odd = spectral_sessions([_recording(0, "a", seconds=300, rate=31.25)])
    even = spectral_sessions([_recording(0, "a", seconds=300, rate=32.0)])
    assert odd.hr.shape == even.hr.shape == (1, 1 + int((300 - WINDOW_S) / HOP_S))
    np.testing.assert_array_equal(odd.ok, even.ok)
    np.testing.assert_allclose(odd.hr, even.hr, rtol=1e-6)
    step = GRID_HZ[1] - GRID_HZ[0]
    for s in (odd, even):  # each window's PPG peak on the window's mean HR
        peak = GRID_HZ[np.argmax(s.ppg[0, :, :, 0], axis=1)]
        assert np.all(np.abs(peak - s.hr[0] / 60.0) <= 1.5 * step)


@pytest.mark.parametrize("rate", [31.25, 51.2])
def test_at_a_fractional_hop_each_window_holds_its_own_two_seconds_of_the_session(rate):
    """An ACC whose swing jumps from 1.4 to 3.0 Hz at 1200 s of a 30 min session: every
    window wholly before the jump peaks at 1.4 Hz and every one after it at 3.0 Hz, so window
    w covers [2w, 2w + 8) s; a hop rounded once (62 samples at 31.25 Hz) would have started
    the windows after the jump up to 9 s early, still on the slow swing."""
    seconds, jump = 1800, 1200.0
    t = np.arange(int(seconds * rate)) / rate
    phase = np.cumsum(np.where(t < jump, 1.4, 3.0)) / rate
    noise = 0.01 * np.random.default_rng(0).normal(size=(t.size, 3))
    acc = np.stack([np.sin(2 * np.pi * phase), 0.5 * np.sin(2 * np.pi * phase), 0 * t], 1)
    rec = WristRecording("jump", "a", (acc + noise, rate), None, (np.full(seconds, 120.0), 1.0))
    s = spectral_sessions([rec])
    peak = GRID_HZ[np.argmax(s.acc[0, :, :, 0], axis=1)]
    start = HOP_S * np.arange(len(peak))
    before, after = start + WINDOW_S <= jump - 1, start >= jump + 1
    step = GRID_HZ[1] - GRID_HZ[0]
    assert len(peak) == 1 + int((seconds - WINDOW_S) / HOP_S)
    assert np.all(np.abs(peak[before] - 1.4) <= step) and np.all(np.abs(peak[after] - 3.0) <= step)


def test_a_rate_under_one_sample_per_hop_or_too_slow_for_the_grid_is_named():
    hr, _ = _recording(0, "a").hr
    with pytest.raises(WearjaxDataError, match="hr is sampled at 0.25 Hz, under one sample"):
        spectral_sessions([_recording(0, "a")._replace(hr=(hr[::4], 0.25))])
    with pytest.raises(WearjaxDataError, match="'rec0': acc is sampled at 6 Hz, too slow"):
        spectral_sessions([_recording(0, "a", seconds=30, rate=6.0)])


def test_a_session_shorter_than_one_window_is_named():
    rec = _recording(0, "a", seconds=6)
    with pytest.raises(WearjaxDataError, match="rec0.*shorter than one 8 s window"):
        spectral_sessions([rec])


@pytest.mark.slow
def test_the_acc_to_ppg_reconstruction_improves_with_training():
    s = spectral_sessions([_recording(i, f"subject{i % 4}") for i in range(8)])
    split = split_sessions(s, 1)
    config = VirtualConfig(width=8, latent=2, batch_size=8)
    config = config._replace(train=config.train._replace(epochs=6, steps_per_epoch=10))
    data = device_data(s, floor_db=FLOOR_DB)
    fold = jax.tree_util.tree_map(lambda a: a[0], make_folds(s, split))
    from wearjax.tasks.virtual import build

    def recon_error(model):
        feats = jax.vmap(lambda a: model.features(a, None)["ppg_hat"])(data.acc)
        w = data.ppg_ok.astype(jnp.float32)[..., None, None]
        return float(jnp.sum(jnp.square(feats - data.ppg) * w) / jnp.sum(w) / len(GRID_HZ))

    model = build(config, "virtual", jax.random.key(0))
    before = recon_error(model)
    trained = fit(model, make_task(config, "virtual"), data, fold, config.train.recipe(),
                  jax.random.key(1)).model  # fmt: skip
    after = recon_error(trained)
    assert after < 0.7 * before, (before, after)
    assert eqx.tree_equal(
        jax.tree_util.tree_structure(model), jax.tree_util.tree_structure(trained)
    )


def _write_folder(root, ppg: bool, *, files=("run",), flat=False, acc=True):
    """Four subjects' recordings: one subfolder each holding `files`, or (`flat`) one file
    per subject, named after it, directly in `root`; without ACC columns if not `acc`."""
    for i in range(4 * len(files)):
        rec = _recording(i, f"subject{i % 4}", ppg=ppg)
        a, rate = rec.acc
        folder = root if flat else root / rec.subject
        name = rec.subject if flat else files[i // 4]
        folder.mkdir(parents=True, exist_ok=True)
        cols = {"time": np.arange(len(a)) / rate}
        if acc:
            cols |= {"acc_x": a[:, 0], "acc_y": a[:, 1], "acc_z": a[:, 2]}
        if ppg:
            cols["ppg"] = rec.ppg[0]
        lines = [",".join(cols)]
        lines += [",".join(f"{v:.4f}" for v in row) for row in zip(*cols.values(), strict=True)]
        (folder / f"{name}.csv").write_text("\n".join(lines) + "\n")
        hr = rec.hr[0]
        side = ["time,hr"] + [f"{t:.1f},{h:.2f}" for t, h in enumerate(hr)]
        (folder / f"{name}.hr.csv").write_text("\n".join(side) + "\n")
    short = root / ("short.csv" if flat else "subject0/short.csv")
    short.write_text("time,acc_x,acc_y,acc_z\n0,0,0,1\n0.04,0,0,1\n")


def test_a_session_nothing_can_score_is_skipped_and_ppg_settings_score_where_there_is_ppg(
    tmp_path,
):
    """A file whose ACC rows alternate with empty ones (streams merged at two rates) has a gap
    in every window: with PPG it is read for its PPG alone; without, no window is labelled,
    and it is skipped with the reason, not averaged as nothing. A subject without PPG is
    named, and the settings that read PPG are scored on the other subjects' sessions only."""
    from wearjax.tasks.virtual_data import NO_LABEL, folder_sessions
    from wearjax.tasks.virtual_study import _scores

    def merge(path, keep):  # every other row's ACC empty; the first `keep` columns kept
        rows = [line.split(",")[:keep] for line in path.read_text().splitlines()]
        for row in rows[2::2]:
            row[1:4] = ["", "", ""]
        path.write_text("\n".join(",".join(r) for r in rows) + "\n")

    _write_folder(tmp_path / "d", ppg=True)
    merge(tmp_path / "d" / "subject3" / "run.csv", 4)  # and no PPG: nothing to read
    merge(tmp_path / "d" / "subject1" / "run.csv", 5)  # its PPG is read alone
    no_ppg = tmp_path / "d" / "subject2" / "run.csv"
    rows = [line.split(",")[:4] for line in no_ppg.read_text().splitlines()]
    no_ppg.write_text("\n".join(",".join(r) for r in rows) + "\n")
    said = []
    s, skipped = folder_sessions(tmp_path / "d", said.append)
    assert s.subjects == ("subject0", "subject1", "subject2")
    assert [(p.parent.name, r) for p, r in skipped if r == NO_LABEL] == [("subject3", NO_LABEL)]
    assert s.with_acc.tolist() == [True, False, True] and s.with_ppg.tolist() == [1, 1, 0]
    assert s.ok[1].sum() > 10 and not s.acc[1].any()
    assert any("1 recording without usable acc_x/y/z (run) read" in line for line in said), said
    assert any("no PPG for subject(s) subject2" in line for line in said), said
    split = split_sessions(s, 1)
    off = np.where(s.subject[:, None] == 2, 50.0, 1.0)  # 50 bpm off where there is no PPG
    pred = s.hr + off
    assert np.isclose(_scores(pred, s, split, "ppg_only")["mae"], 1.0, rtol=1e-5)
    assert _scores(pred, s, split, "acc_only")["mae"] > 10.0
    assert _scores(pred, s, split, "ppg_only")["folds_scored"] == 2  # subject2's fold: none


def test_settings_that_read_ppg_train_and_stop_early_on_sessions_with_ppg(tmp_path):
    """Sessions without PPG read all-zero spectra beside their HR: a PPG setting drew them as
    training batches and could stop early (and set its tracker) on a subject without PPG,
    then was scored only where there is PPG. They are left out of its training and
    validation, a fold's validation moves to a subject with PPG, and a fold with too few such
    subjects is named, leaving the ACC settings to run."""
    import shutil

    from wearjax.tasks.virtual import reading_split
    from wearjax.tasks.virtual_data import folder_sessions

    _write_folder(tmp_path / "d", ppg=True)
    no_ppg = tmp_path / "d" / "subject1" / "run.csv"
    rows = [line.split(",")[:4] for line in no_ppg.read_text().splitlines()]
    no_ppg.write_text("\n".join(",".join(r) for r in rows) + "\n")
    s, _ = folder_sessions(tmp_path / "d", lambda line: None)
    has = np.asarray(s.ppg_ok).any(axis=1)
    test = np.eye(4, dtype=bool)[:, s.subject]  # fold k tests subject k, validates k + 1
    val = np.roll(np.eye(4, dtype=bool), 1, axis=1)[:, s.subject]
    split = Split(test, val, ~test & ~val)
    assert (s.subject[split.validation[0]] == 1).all()  # fold 0 stops early on: no PPG
    assert reading_split(s, split, "acc_only") is split
    ppg = reading_split(s, split, "ppg_only")
    np.testing.assert_array_equal(ppg.test, split.test)
    assert not ((ppg.train | ppg.validation) & ~has).any()
    assert ppg.validation.any(axis=1).all() and ppg.train.any(axis=1).all()
    assert set(s.subject[ppg.validation[0]].tolist()) == {2}  # its first training one with PPG
    shutil.rmtree(tmp_path / "d" / "subject3")  # two subjects with PPG left: too few
    three, _ = folder_sessions(tmp_path / "d", lambda line: None)
    with pytest.raises(WearjaxDataError, match=r"ppg_only reads PPG: folds \[.*\] hold fewer"):
        reading_split(three, split_sessions(three, 1), "ppg_only")


def test_an_acc_gap_does_not_reach_the_gait_lags_after_it():
    """A 20 s ACC gap, filled linearly (no gait in it), holds the last gap-free cadence
    through its windows: at a steady cadence, every window's gait features, its lags over
    minutes included, are those of the same recording without the gap."""
    from wearjax.tasks.virtual import gait_features

    rec = _recording(0, "a", seconds=300)
    acc, rate = rec.acc
    gap = acc.copy()
    gap[int(60 * rate) : int(80 * rate)] = np.nan
    whole, holed = (spectral_sessions([rec._replace(acc=(a, rate))]) for a in (acc, gap))
    assert not holed.acc_ok.all() and whole.acc_ok.all()
    a, b = (np.asarray(gait_features(x))[0] for x in (whole, holed))
    assert np.all(np.abs(a[:, 0] - 168.0) < 3.0)  # the swing's 1.4 Hz, in steps/min
    np.testing.assert_allclose(b, a, atol=3.0)  # it read about 70 in the gap before
    later = np.arange(len(a)) * 2.0 >= 120.0
    np.testing.assert_allclose(b[later], a[later], atol=1.0)


def test_subjects_are_the_subfolders_or_in_a_flat_folder_the_files(tmp_path):
    from wearjax.tasks.virtual_data import folder_sessions

    _write_folder(tmp_path / "nested", ppg=False, files=("a", "b"))
    s, skipped = folder_sessions(tmp_path / "nested")
    assert s.subjects == ("subject0", "subject1", "subject2", "subject3")
    assert sorted(s.names) == ["a"] * 4 + ["b"] * 4
    np.testing.assert_array_equal(np.bincount(s.subject), [2, 2, 2, 2])  # 2 files each
    assert [p.name for p, _ in skipped] == ["short.csv"]
    said = []
    _write_folder(tmp_path / "flat", ppg=False, flat=True)
    s, skipped = folder_sessions(tmp_path / "flat", said.append)
    assert s.subjects == ("subject0", "subject1", "subject2", "subject3")
    np.testing.assert_array_equal(np.bincount(s.subject), [1, 1, 1, 1])
    assert [p.name for p, _ in skipped] == ["short.csv"]
    assert len(said) == 1 and "each of the 4 files read is one subject" in said[0]


@pytest.mark.slow
def test_cv_virtual_on_a_folder_without_ppg_runs_acc_only(tmp_path, capsys):
    _write_folder(tmp_path / "data", ppg=False)
    code = main(["cv", "virtual", "--data", str(tmp_path / "data"), "--quick", "--epochs", "1",
                 "--out", str(tmp_path / "out")])  # fmt: skip
    assert code == 0
    err = capsys.readouterr().err
    assert "only the ACC-only settings run" in err and "short.csv" in err
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert (
        "acc_only" in metrics
        and "acc_refined" in metrics
        and "acc_ridge" in metrics
        and "virtual" not in metrics
        and "troika" not in metrics
    )
    assert metrics["data"]["subjects"] == 4 and np.isfinite(metrics["acc_only"]["raw"]["mae"])
    from wearjax.tasks.virtual_study import latency_device

    assert metrics["acc_only"]["latency_device"] == latency_device()  # where it was timed
    # the saved per-window predictions give back the table's MAE without retraining
    saved = np.load(tmp_path / "out" / "predictions.npz")
    for name in ("acc_only", "acc_ridge"):
        tested = saved["ok"] & (saved["test_fold"] >= 0)[:, None]
        err = np.abs(saved[f"{name}/hr"] - saved["hr"])[tested]
        assert np.isclose(err.mean(), metrics[name]["raw"]["mae"], rtol=1e-5), name
    assert (tmp_path / "out" / "plots" / "hr_tracks.png").is_file()


def test_a_folder_of_ppg_only_recordings_is_read_for_the_settings_that_read_ppg_alone(
    tmp_path, capsys
):
    """Recordings with PPG and no ACC were all skipped ("no acc_x/acc_y/acc_z signal"), so
    such a folder could not be cross-validated at all; they are read for ppg_only."""
    from wearjax.errors import WearjaxError
    from wearjax.tasks.virtual_data import folder_sessions
    from wearjax.tasks.virtual_study import check_setting, references

    _write_folder(tmp_path / "d", ppg=True, acc=False)
    said = []
    s, skipped = folder_sessions(tmp_path / "d", said.append)
    assert not s.has_acc and s.has_ppg and s.subjects == tuple(f"subject{i}" for i in range(4))
    assert not s.acc.any() and s.ppg_ok.any()
    assert [p.name for p, _ in skipped] == ["short.csv"]  # the ACC-only stub, too short
    assert any("no recording has usable acc_x/y/z: reading PPG alone" in line for line in said), (
        said
    )
    refs = references(s, split_sessions(s, 1))
    assert set(refs) == {"ppg_peak", "train_mean"}  # no ACC for troika or the ACC ridges
    tested = s.ok & s.ppg_ok
    assert np.abs(refs["ppg_peak"] - s.hr)[tested].mean() < 5.0  # the clean pulse's peak
    check_setting(s, "ppg_only")
    for setting in ("acc_only", "virtual", "fusion"):
        with pytest.raises(WearjaxError, match=f"--setting {setting} needs ACC"):
            check_setting(s, setting)
    for flag in ("--gait", "--gait-ridge"):  # a prior from the ACC's gait: none to read
        out = str(tmp_path / f"out{flag}")
        assert main(["cv", "virtual", "--data", str(tmp_path / "d"), flag, "--out", out]) == 2
        assert f"{flag} reads the gait from the ACC" in capsys.readouterr().err


def _mixed_folder(root):
    """`_write_folder`'s four subjects, each with a second recording without ACC (wrist)."""
    _write_folder(root, ppg=True)
    _write_folder(root.with_name("extra"), ppg=True, acc=False)
    for i in range(4):
        for suffix in (".csv", ".hr.csv"):
            (root.with_name("extra") / f"subject{i}" / f"run{suffix}").replace(
                root / f"subject{i}" / f"wrist{suffix}"
            )


@pytest.mark.slow  # 6-16 s cold on 2 cores: the slow step (2026-12-07)
def test_in_a_folder_where_some_recordings_lack_acc_each_setting_learns_where_it_can_read(
    tmp_path,
):
    """Recordings without ACC beside ones with it were skipped; they are read for their PPG:
    the settings that read PPG train on them and are scored on them, the settings that read
    ACC (and the ACC references) neither train on them nor score them."""
    from wearjax.tasks.virtual import reading_split
    from wearjax.tasks.virtual_data import folder_sessions
    from wearjax.tasks.virtual_io import fit_split
    from wearjax.tasks.virtual_study import _scores, references

    _mixed_folder(tmp_path / "d")
    said = []
    s, _ = folder_sessions(tmp_path / "d", said.append)
    assert s.has_acc and len(s.names) == 8
    np.testing.assert_array_equal(s.with_acc, [n == "run" for n in s.names])
    assert any("4 recordings without usable acc_x/y/z" in line for line in said), said
    split = split_sessions(s, 1)
    readers = {"acc_only": s.with_acc, "virtual": s.with_acc, "ppg_only": s.with_ppg,
               "fusion": s.with_acc & s.with_ppg}  # fmt: skip
    for setting, reads in readers.items():
        r = reading_split(s, split, setting)
        assert not ((r.train | r.validation) & ~reads).any(), setting
        assert r.train.any(axis=1).all() and r.validation.any(axis=1).all()
        np.testing.assert_array_equal(r.test, split.test)
    assert (reading_split(s, split, "ppg_only").train & ~s.with_acc).any()  # PPG alone too
    # `virtual`'s ACC terms never read the zero spectra of a recording without ACC
    acc_ok = np.asarray(device_data(s, floor_db=FLOOR_DB).acc_ok)
    np.testing.assert_array_equal(acc_ok, s.valid & s.with_acc[:, None])
    off = np.where(s.with_acc[:, None], 1.0, 50.0)  # 50 bpm off where there is no ACC
    assert np.isclose(_scores(s.hr + off, s, split, "acc_only")["mae"], 1.0, rtol=1e-5)
    assert _scores(s.hr + off, s, split, "ppg_only")["mae"] > 10.0
    # relabelling a session without ACC moves no ACC reference's fit
    r = references(s, split)
    moved = references(s._replace(hr=np.where(~s.with_acc[:, None], s.hr + 30, s.hr)), split)
    for name in ("acc_ridge", "acc_gait"):
        np.testing.assert_array_equal(moved[name], r[name])
    # `fit virtual` on one subject stops early on its last session the setting can read
    one = s._replace(subject=np.zeros(8, int), subjects=("subject0",))
    last_acc = np.flatnonzero(one.with_acc)[-1]
    assert fit_split(one, "acc_only").validation[0, last_acc] and last_acc < 7
    reading_split(one, fit_split(one, "virtual"), "virtual")  # was: no training subject left


# ~9 s cold on 2 cores: slow step only (label-scarce references on sessions that all have ACC
# are tested fast)
@pytest.mark.slow
def test_with_few_labels_the_acc_references_learn_from_the_acc_models_labelled_subjects(
    tmp_path,
):
    """A subject without any ACC, one labelled subject per fold: the ACC references learn
    from the sessions the ACC models may read (`make_folds` on their split), and from no
    other (they drew their labelled subject among every training subject, ACC or not)."""
    from wearjax.tasks.virtual import make_folds, reading_split
    from wearjax.tasks.virtual_data import folder_sessions
    from wearjax.tasks.virtual_study import references

    _mixed_folder(tmp_path / "d")
    for suffix in (".csv", ".hr.csv"):
        (tmp_path / "d" / "subject3" / f"run{suffix}").unlink()
    s, _ = folder_sessions(tmp_path / "d")
    split = split_sessions(s, 1)
    acc = reading_split(s, split, "acc_only")
    readable = np.asarray(make_folds(s, acc, labelled=1).labelled) & (acc.train | acc.validation)
    r = references(s, split, labelled=1)["acc_ridge"]
    k = 1  # trains on subjects 0, 2 and 3 (subject 3 without ACC)
    tested = split.test[k] & s.with_acc
    learnt = np.flatnonzero(readable[k] & acc.train[k])
    for i, expect in ((learnt[0], True), (np.flatnonzero(~readable[k] & split.train[k])[0], False)):
        hr = np.where(np.arange(len(s.names))[:, None] == i, s.hr + 30, s.hr)
        got = references(s._replace(hr=hr), split, labelled=1)["acc_ridge"]
        assert np.any(got[tested] != r[tested]) == expect, (i, s.names[i], s.subject[i])


@pytest.mark.slow
def test_cv_virtual_on_a_folder_without_acc_runs_ppg_only(tmp_path, capsys):
    _write_folder(tmp_path / "data", ppg=True, acc=False)
    code = main(["cv", "virtual", "--data", str(tmp_path / "data"), "--quick", "--epochs", "1",
                 "--out", str(tmp_path / "out")])  # fmt: skip
    assert code == 0
    assert "reading PPG alone" in capsys.readouterr().err
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert {"ppg_only", "ppg_peak", "train_mean"} <= set(metrics)
    assert not {"acc_only", "virtual", "fusion", "troika", "acc_ridge", "acc_gait"} & set(metrics)
    assert np.isfinite(metrics["ppg_only"]["raw"]["mae"])
    assert (tmp_path / "out" / "plots" / "hr_tracks.png").is_file()


@pytest.mark.heavy  # ~6 min on 2 cores
@pytest.mark.slow
def test_cv_virtual_on_a_folder_with_ppg_runs_every_setting(tmp_path):
    _write_folder(tmp_path / "data", ppg=True)
    code = main(["cv", "virtual", "--data", str(tmp_path / "data"), "--quick", "--epochs", "2",
                 "--out", str(tmp_path / "out")])  # fmt: skip
    assert code == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    for name in ("acc_only", "virtual", "ppg_only", "fusion", "troika", "ppg_peak"):
        assert np.isfinite(metrics[name]["raw"]["mae"]), name
    assert (tmp_path / "out" / "plots" / "spectra.png").is_file()
    # the clean PPG's peak is the HR: the non-learned tracker finds it
    assert metrics["ppg_peak"]["raw"]["mae"] < 5.0


@pytest.mark.slow  # 1-1.5 min on 2 cores: keeps the fast suite under 10 min
def test_acc_references_learn_hr_from_acc_without_seeing_the_tested_subject():
    from wearjax.tasks.virtual_study import references

    # the ACC's third axis carries the beat, so a linear read of its spectra finds the HR
    s = spectral_sessions([_recording(i, f"sub{i}", seconds=240) for i in range(6)])
    split = split_sessions(s, 1)
    tested = s.ok & (split.owner >= 0)[:, None]
    r = references(s, split)
    mae = {k: np.abs(v - s.hr)[tested].mean() for k, v in r.items()}
    assert mae["acc_ridge"] < 0.6 * mae["train_mean"], mae
    # relabelling session 0 moves every fold's fit except the one that tests it
    moved = references(s._replace(hr=np.where(np.arange(6)[:, None] == 0, s.hr + 30, s.hr)), split)
    for name in ("acc_ridge", "acc_gait"):
        np.testing.assert_array_equal(moved[name][0], r[name][0])
        assert np.abs(moved[name][1:] - r[name][1:]).max() > 0.1


def test_choose_q_takes_the_validation_mae_minimiser(x64):
    from wearjax.eval.metrics import mae
    from wearjax.models.virtual import track
    from wearjax.tasks.virtual import Q_FACTORS, choose_q

    rng = np.random.default_rng(4)
    truth = 120 + np.cumsum(rng.normal(0, 2.0, (2, 3, 80)), axis=-1)  # [K, V, W]
    var = rng.uniform(4, 200, truth.shape)
    hr = truth + rng.normal(size=truth.shape) * np.sqrt(var)
    valid = np.ones(truth.shape, bool)
    ok = rng.random(truth.shape) > 0.1
    q0 = np.asarray([0.5, 3.0])
    got = np.asarray(choose_q(*map(jnp.asarray, (hr, var, valid, truth, ok, q0))))
    for k in range(2):
        errors = []
        for f in Q_FACTORS:
            m = [track(jnp.asarray(hr[k, v]), jnp.asarray(var[k, v]), jnp.asarray(valid[k, v]),
                       q0[k] * f)[0] for v in range(3)]  # fmt: skip
            errors.append(float(mae(jnp.stack(m), jnp.asarray(truth[k]), jnp.asarray(ok[k]))))
        assert got[k] == q0[k] * Q_FACTORS[int(np.argmin(errors))]


@pytest.mark.slow  # three short trainings: ~40 s on 2 cores
def test_fit_virtual_resumes_an_interrupted_training_to_the_same_model(tmp_path, capsys):
    from wearjax import cv
    from wearjax.tasks.virtual_io import load_virtual

    _write_folder(tmp_path / "data", ppg=True)
    argv = ["fit", "virtual", "--data", str(tmp_path / "data"), "--setting", "acc_only",
            "--quick", "--epochs", "3", "--out"]  # fmt: skip
    assert main([*argv, str(tmp_path / "whole.wjx")]) == 0
    assert not (tmp_path / "whole.wjx.state").exists()
    train_epochs, calls = cv.train_epochs, []

    def interrupting(epoch_fn, *args, **kw):
        def epoch(*a):  # Ctrl-C in the second epoch
            calls.append(1)
            if len(calls) == 2:
                raise KeyboardInterrupt
            return epoch_fn(*a)

        return train_epochs(epoch, *args, **kw)

    out = str(tmp_path / "again.wjx")
    with pytest.MonkeyPatch.context() as m:
        m.setattr(cv, "train_epochs", interrupting)
        assert main([*argv, out]) == 130
    assert "interrupted after epoch 1" in capsys.readouterr().err
    assert main([*argv, out]) == 2  # its state is never overwritten without --resume
    assert "holds an interrupted run: pass --resume" in capsys.readouterr().err
    assert main([*argv, out, "--resume"]) == 0 and not Path(f"{out}.state").exists()
    (whole, _), (resumed, _) = load_virtual(tmp_path / "whole.wjx"), load_virtual(out)
    jax.tree_util.tree_map(np.testing.assert_array_equal, whole, resumed)


@pytest.mark.slow
@pytest.mark.parametrize("prior", ["--gait", "--gait-ridge"])
def test_fit_virtual_then_predict_a_file_without_ppg(prior, tmp_path, capsys):
    _write_folder(tmp_path / "data", ppg=True)
    model = tmp_path / "virtual.wjx"
    code = main(["fit", "virtual", "--data", str(tmp_path / "data"), "--setting", "virtual",
                 prior, "--quick", "--epochs", "1", "--out", str(model)])  # fmt: skip
    assert code == 0 and model.is_file()
    # the same recording without its PPG column: the virtual model needs only the ACC
    rec = _recording(7, "subject9", ppg=False)
    acc, rate = rec.acc
    lines = ["time,acc_x,acc_y,acc_z,hr_ref"]
    hr = np.repeat(rec.hr[0], int(rate))
    lines += [f"{k / rate:.2f},{a[0]:.4f},{a[1]:.4f},{a[2]:.4f},{h:.2f}"
              for k, (a, h) in enumerate(zip(acc, hr, strict=True))]  # fmt: skip
    (tmp_path / "new.csv").write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    code = main(["predict", "--model", str(model), str(tmp_path / "new.csv"),
                 "--out", str(tmp_path / "pred")])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "new: 57 windows (virtual); hr MAE" in out
    table = np.genfromtxt(tmp_path / "pred" / "new.csv", delimiter=",", names=True)
    assert table.dtype.names == ("start_s", "time_s", "hr", "sd", "hr_tracked", "sd_tracked",
                                 "hr_reference")  # fmt: skip
    np.testing.assert_array_equal(table["time_s"], table["start_s"])  # the file starts at 0 s
    assert len(table) == 57 and np.all(np.isfinite(table["hr"])) and np.all(table["sd"] > 0)
    np.testing.assert_allclose(table["start_s"], np.arange(57) * HOP_S)
    # one subfolder per subject, the same file name in each: one output each, none lost
    for subject in ("s1", "s2"):
        (tmp_path / "subjects" / subject).mkdir(parents=True)
        (tmp_path / "subjects" / subject / "rec.csv").write_text("\n".join(lines) + "\n")
    argv = ["predict", "--model", str(model), str(tmp_path / "subjects")]
    assert main([*argv, "--out", str(tmp_path / "both")]) == 0
    assert sorted(p.name for p in (tmp_path / "both").glob("*.csv")) == ["rec-2.csv", "rec.csv"]
    capsys.readouterr()
    assert main([*argv, "--out", str(tmp_path / "x"), "--hr0", "90"]) == 2  # read by HR models
    assert "virtual-sensing model reads none" in capsys.readouterr().err
    # the input scale travels with the checkpoint; one without it was trained on linear spectra
    from wearjax.data.sampled import read_sampled
    from wearjax.tasks.virtual_io import load_virtual, predict_recording

    trained, header = load_virtual(model)
    assert header["floor_db"] == FLOOR_DB and trained.gait_prior is not None
    # the checkpoint holds the gait ridge fitted on the training subjects, not its start
    from wearjax.tasks.virtual_data import folder_sessions
    from wearjax.tasks.virtual_io import fit_split

    s = folder_sessions(tmp_path / "data")[0]
    if prior == "--gait-ridge":
        fitted = make_folds(s, fit_split(s), gait_ridge=True).gait_coef[0]
        np.testing.assert_allclose(trained.gait_prior.coef, fitted, rtol=1e-6)
    else:  # the joint prior's checkpoint has no ridge, and no key older wearjax would refuse
        assert trained.gait_prior.coef is None and "gait_ridge" not in header["init"]
    got = predict_recording(trained, header, read_sampled(tmp_path / "new.csv"))["columns"]
    np.testing.assert_allclose(got["hr"], table["hr"], atol=0.01)
    older = {k: v for k, v in header.items() if k != "floor_db"}
    linear = predict_recording(trained, older, read_sampled(tmp_path / "new.csv"))["columns"]
    assert not np.allclose(linear["hr"], got["hr"])
    # a PPG-only checkpoint refuses a file without PPG, naming it
    with pytest.raises(WearjaxDataError, match="needs a ppg column"):
        from wearjax.models.virtual import VirtualSensing

        m = VirtualSensing("ppg_only", width=8, key=jax.random.key(0))
        predict_recording(m, {"context": 16, "q": 1.0}, read_sampled(tmp_path / "new.csv"))


@pytest.mark.slow
@pytest.mark.parametrize("chunked", [False, True])
def test_predict_is_the_streaming_estimate_of_each_window(chunked, monkeypatch):
    from wearjax.models.virtual import VirtualSensing
    from wearjax.tasks import virtual
    from wearjax.tasks.virtual import predict

    if chunked:  # blocks of 4 windows run 2 at a time (a long context's memory bound)
        monkeypatch.setattr(virtual, "PREDICT_WINDOWS", 8)

    s = spectral_sessions([_recording(1, "a", seconds=40)])  # 17 windows
    data = device_data(s, floor_db=FLOOR_DB)
    model = VirtualSensing("fusion", width=8, latent=2, gait=True, key=jax.random.key(0))
    context = 4
    got = np.asarray(predict(model, None, data, 0, context=context).hr)
    last = eqx.filter_jit(lambda m, a, p, g: m(a, p, g).hr[-1])
    for w in range(s.n_windows[0]):  # what a watch computes at window w: the last 4 windows
        lo = max(0, w - context + 1)
        window = slice(lo, w + 1)
        expected = last(model, data.acc[0, window], data.ppg[0, window], data.gait[0, window])
        np.testing.assert_allclose(got[w], float(expected), rtol=1e-5)


@pytest.mark.slow  # ~12 s cold on 2 cores (compiling the wrist simulator): slow step only
def test_synthetic_sessions_simulates_the_subjects_asked_for():
    from wearjax.tasks.virtual_study import synthetic_sessions

    with pytest.raises(ValueError, match="at least 2 subjects"):
        synthetic_sessions(quick=True, subjects=1)
    s = synthetic_sessions(quick=True, subjects=3)
    # quick: 2 sessions of 6 min per subject, each subject's sessions under its own name
    assert len(s.subjects) == 3 and len(s.names) == 6
    np.testing.assert_array_equal(np.bincount(s.subject), [2, 2, 2])
    assert s.has_ppg and np.isfinite(s.severity).all()
    assert int(s.n_windows.max()) == int((6 * 60 - WINDOW_S) // HOP_S) + 1


@pytest.mark.slow  # 6-16 s cold on 2 cores: the slow step (2026-12-07)
def test_label_scarce_folds_hide_the_hr_of_all_but_the_chosen_training_subjects():
    s = spectral_sessions([_recording(i, f"sub{i % 6}", seconds=30) for i in range(12)])
    split = split_sessions(s, 1)
    full = make_folds(s, split)
    assert np.asarray(full.labelled).all()
    folds = make_folds(s, split, labelled=2, seed=3)
    labelled = np.asarray(folds.labelled)
    for k in range(split.n_folds):  # a check per fold against the masks, not model code
        kept = np.unique(s.subject[split.train[k] & labelled[k]])
        assert len(kept) == 2 and set(kept) <= set(s.subject[split.train[k]])
        assert labelled[k][~split.train[k]].all()  # validation and test keep their HR
    np.testing.assert_array_equal(labelled, np.asarray(make_folds(s, split, 2, seed=3).labelled))
    # the draw the published label-scarce studies used: one uniform number per (fold, subject),
    # the `labelled` smallest among each fold's training subjects kept
    trains = np.stack([np.isin(np.arange(len(s.subjects)), s.subject[t]) for t in split.train])
    draw = np.where(trains, np.random.default_rng(3).random(trains.shape), np.inf)
    keep = (np.argsort(np.argsort(draw, axis=1), axis=1) < 2) & trains
    np.testing.assert_array_equal(labelled, keep[:, s.subject] | ~split.train)
    with pytest.raises(ValueError, match="at least 1 labelled"):
        make_folds(s, split, labelled=0)

    data = device_data(s, floor_db=FLOOR_DB)
    fold = jax.tree_util.tree_map(lambda a: a[0], folds)
    config = VirtualConfig(batch_size=64, context=4)
    unlabelled = split.train[0] & ~labelled[0]
    for setting, draws_unlabelled in (("acc_refined", False), ("virtual", True)):
        batch = make_task(config, setting).sample(data, fold, jax.random.key(1))
        hr, ok, ref = np.asarray(batch[3]), np.asarray(batch[4]), np.asarray(batch[5])
        # a sampled block whose reference HR the loss may not read has every window masked
        rows = np.isin(hr, s.hr[unlabelled]).all(1) & (hr > 0).all(1)
        assert rows.any() == draws_unlabelled
        assert not ok[rows].any() and not ref[rows].any()  # `virtual`'s PPG path's mask too
        assert ok[~rows].sum() > 0


def test_the_gait_ridge_is_fitted_on_each_folds_labelled_training_sessions_only():
    from wearjax.eval.ridge import fold_ridge
    from wearjax.tasks.virtual import gait_features

    s = spectral_sessions([_recording(i, f"sub{i % 6}", seconds=60) for i in range(12)])
    split = split_sessions(s, 1)
    folds = make_folds(s, split, labelled=3, seed=2, gait_ridge=True)
    coef = np.asarray(folds.gait_coef, np.float64)
    labelled = np.asarray(folds.labelled)
    gait = np.asarray(gait_features(s), np.float64)
    for k in range(split.n_folds):
        fit_on = split.train[k] & labelled[k]
        # the fit's estimate is the ridge's prediction of every window
        one = fold_ridge(gait, s.hr, s.ok, fit_on[None], s.subject)
        np.testing.assert_allclose(coef[k, 0] + gait @ coef[k, 1:], one.pred[0], atol=1e-3)
    # moving the HR of a fold's unlabelled, validation or test sessions leaves its fit as it is;
    # moving a labelled training session's moves it
    k = 0
    other = ~(split.train[k] & labelled[k])
    moved = s._replace(hr=np.where(other[:, None], s.hr + 25.0, s.hr))
    again = np.asarray(make_folds(moved, split, 3, seed=2, gait_ridge=True).gait_coef)
    np.testing.assert_allclose(again[k], coef[k], rtol=1e-5, atol=1e-4)
    moved = s._replace(hr=np.where(~other[:, None], s.hr + 25.0, s.hr))
    again = np.asarray(make_folds(moved, split, 3, seed=2, gait_ridge=True).gait_coef)
    assert abs(again[k, 0] - coef[k, 0]) > 1.0
    assert not np.asarray(make_folds(s, split).gait_coef).any()  # off: zeros


@pytest.mark.slow  # compiles a task's sample, loss and validation: ~30 s
def test_the_loss_and_validation_read_the_gait_prior_from_the_folds_fit():
    from wearjax.tasks.virtual import build

    s = spectral_sessions([_recording(i, f"sub{i % 6}", seconds=60) for i in range(12)])
    folds = make_folds(s, split_sessions(s, 1), gait_ridge=True)
    config = VirtualConfig(batch_size=4, context=4, width=8, gait_ridge=True)
    model, task = build(config, "acc_refined", jax.random.key(0)), make_task(config, "acc_refined")
    data = device_data(s, floor_db=FLOOR_DB)
    fold = jax.tree_util.tree_map(lambda a: a[0], folds)
    other = fold._replace(gait_coef=fold.gait_coef.at[0].add(20.0))
    assert float(task.validate(model, data, fold)) != float(task.validate(model, data, other))
    batch = task.sample(data, fold, jax.random.key(1))
    moved = (*batch[:-1], batch[-1].at[0].add(20.0))
    key = jax.random.key(2)
    assert float(task.loss(model, batch, key, 0)[0]) != float(task.loss(model, moved, key, 0)[0])


def test_the_virtual_loss_is_the_elbo_computed_by_hand():
    """`make_task(config, "virtual").loss` (float32) against a float64 NumPy computation from
    the model's
    own outputs: per sample, the soft-target cross-entropy of the HR head on the ACC latent
    (the setting's windows: reference HR, no ACC gap) and on the PPG latent (every window with
    a reference HR, an ACC gap or not, and PPG present), the four spectra's MSE where the
    input and the target were measured (ACC -> PPG: both present; PPG -> PPG: the PPG; ACC ->
    ACC: no ACC gap; PPG -> ACC: both), the Gaussian KL per (window, bin) cell over the windows
    its modality has, weighted by the annealed beta = kl_weight min(1, epoch / kl_warmup); the
    batch's mean."""
    from scipy.special import logsumexp

    from wearjax.models.virtual import GRID_BPM
    from wearjax.tasks.virtual import build

    s = spectral_sessions([_recording(i, f"subject{i}", seconds=40) for i in range(3)])
    config = VirtualConfig(width=8, latent=2, batch_size=3, context=4, recon_weight=0.7)
    data = device_data(s, floor_db=FLOOR_DB)  # the data in float32, as always
    fold = jax.tree_util.tree_map(lambda a: a[0], make_folds(s, split_sessions(s, 1)))
    task = make_task(config, "virtual")
    batch = list(task.sample(data, fold, jax.random.key(1)))
    acc, ppg, gait, hr, ok, ref, ppg_ok, acc_ok, _ = batch
    assert np.asarray(ref).all() and np.asarray(ok).all()  # no ACC gap in these recordings
    assert np.asarray(acc_ok).all() and np.asarray(ppg_ok).all()
    # masks that bite: window 1 of sample 0 as one with an ACC gap (a reference and PPG, no
    # ACC label, no ACC to encode or reconstruct), window 0 of sample 2 as one without a
    # reference (neither path may read its HR), sample 1's first two windows without PPG
    batch[4] = ok.at[0, 1].set(False).at[2, 0].set(False)
    batch[5], batch[6] = ref.at[2, 0].set(False), ppg_ok.at[1, :2].set(False)
    batch[7] = acc_ok.at[0, 1].set(False).at[2, 3].set(False)
    acc, ppg, gait, hr, ok, ref, ppg_ok, acc_ok, _ = (np.asarray(b).astype(
        np.float64 if b.dtype == jnp.float32 else b.dtype) for b in batch)  # fmt: skip
    model = build(config, "virtual", jax.random.key(0))
    key = jax.random.key(2)

    def ce(logits, h, keep):
        target = np.exp(-0.5 * ((GRID_BPM[None] - h[:, None]) / config.target_sd) ** 2)
        target /= target.sum(1, keepdims=True)
        logp = logits - logsumexp(logits, axis=1, keepdims=True)
        per = -(target * logp).sum(1)
        return per[keep].mean() if keep.any() else 0.0

    def mse(x, y, keep):
        return np.mean((x[keep] - y[keep]) ** 2) if keep.any() else 0.0

    def kl(mu, logvar, keep):
        cells = 0.5 * (np.exp(logvar) + mu**2 - 1.0 - logvar).sum(-1)  # [L, F]
        return cells[keep].mean() if keep.any() else 0.0

    keys = jax.random.split(key, len(hr))
    # compiled, not op by op: the same numbers, a fraction of the time on a cold cache
    features = eqx.filter_jit(lambda m, a, p, k: m.features(a, p, k))
    head = eqx.filter_jit(lambda m, u, g: m.hr(u, g)[2])
    terms = []
    for b in range(len(hr)):
        ka, kp = jax.random.split(keys[b])
        fa = {k: np.asarray(v) for k, v in features(model, jnp.asarray(acc[b]), None, ka).items()}
        fp = {k: np.asarray(v) for k, v in features(model, None, jnp.asarray(ppg[b]), kp).items()}
        la = np.asarray(head(model, jnp.asarray(fa["u"]), jnp.asarray(gait[b])))
        lp = np.asarray(head(model, jnp.asarray(fp["u"]), jnp.asarray(gait[b])))
        both = ppg_ok[b] & acc_ok[b]  # the input and the target measured
        recon = (
            mse(fa["ppg_hat"], ppg[b], both)
            + mse(fp["ppg_hat"], ppg[b], ppg_ok[b])
            + mse(fa["acc_hat"], acc[b], acc_ok[b])
            + mse(fp["acc_hat"], acc[b], both)
        )
        kls = kl(fa["mu"], fa["logvar"], acc_ok[b]) + kl(fp["mu"], fp["logvar"], ppg_ok[b])
        ces = ce(la, hr[b], ok[b]) + ce(lp, hr[b], ref[b] & ppg_ok[b])
        terms.append((ces, recon, kls))
    ces, recon, kls = np.asarray(terms).T
    assert np.all(recon > 0) and np.all(kls > 0)
    loss = eqx.filter_jit(task.loss)  # as the trainer calls it
    for epoch in (0, 5, 20):  # before, halfway through and after the KL warm-up
        beta = config.kl_weight * min(1.0, epoch / config.kl_warmup)
        want = np.mean(ces + config.recon_weight * recon + beta * kls)
        got, aux = loss(model, tuple(batch), key, jnp.asarray(epoch))
        np.testing.assert_allclose(float(got), want, rtol=2e-6)
        np.testing.assert_allclose(float(aux["kl"]), kls.mean(), rtol=2e-6)
        np.testing.assert_allclose(float(aux["recon"]), recon.mean(), rtol=2e-6)


def test_frequency_stretch_moves_the_spectra_with_the_hr(x64):
    """`stretch_spectra` against NumPy's interpolation in float64, and a stretched training
    batch keeps each window's PPG peak on its stretched HR, the windows whose HR leaves the
    grid unscored."""
    from wearjax.models.virtual import GRID_BPM, GRID_HZ
    from wearjax.tasks.virtual import VirtualConfig, _stretched, stretch_spectra

    rng = np.random.default_rng(0)
    spec = rng.random((3, len(GRID_HZ)))
    for a in (0.5, 0.8, 1.3):
        want = [np.interp(GRID_HZ / a, GRID_HZ, row) for row in spec]  # edges continued
        np.testing.assert_allclose(stretch_spectra(jnp.asarray(spec), a), want, atol=1e-12)
    hr = rng.uniform(60.0, 200.0, (32, 5))  # [B, L] bpm
    bump = np.exp(-0.5 * ((GRID_HZ - hr[..., None] / 60.0) / 0.05) ** 2)[..., None]  # [B, L, F, 1]
    acc = np.repeat(bump, 3, axis=-1)
    gait = np.ones((32, 5, 4))
    config = VirtualConfig(stretch=(0.4, 1.5))
    some = rng.random((32, 5)) < 0.7  # a second mask: each comes back cut to the grid
    args = (jnp.asarray(a) for a in (acc, bump, gait, hr, np.ones((32, 5), bool), some))
    s_acc, s_ppg, s_gait, s_hr, ok, s_some = _stretched(config, jax.random.key(1), *args)
    factor = np.asarray(s_hr) / hr
    assert np.allclose(factor, factor[:, :1]) and factor.min() >= 0.4 and factor.max() <= 1.5
    assert factor.min() < 0.7 and factor.max() > 1.2  # the draws span the range
    np.testing.assert_allclose(np.asarray(s_gait), factor[..., None] * gait)
    inside = (np.asarray(s_hr) >= GRID_BPM[0]) & (np.asarray(s_hr) <= GRID_BPM[-1])
    np.testing.assert_array_equal(np.asarray(ok), inside)
    np.testing.assert_array_equal(np.asarray(s_some), some & inside)
    step = GRID_BPM[1] - GRID_BPM[0]
    peak = GRID_BPM[np.argmax(np.asarray(s_ppg)[..., 0], axis=-1)]
    assert np.all(np.abs(peak - np.asarray(s_hr))[inside] <= step)
    np.testing.assert_allclose(np.asarray(s_acc)[..., 0], np.asarray(s_ppg)[..., 0])


# ~11 s cold on 2 cores: slow step only (a folder's recordings without ACC are tested fast)
@pytest.mark.slow
def test_a_ppg_only_model_reads_a_file_without_acc_as_one_with_it(tmp_path):
    """`predict` of a PPG-only checkpoint on a recording of PPG alone (a finger or ear sensor,
    heartpy's examples) gives what it gives on the same PPG beside an ACC it does not read;
    a model that reads ACC refuses the file, naming the missing axes."""
    from wearjax.data.sampled import read_sampled
    from wearjax.models.virtual import VirtualSensing
    from wearjax.tasks.virtual_io import predict_recording

    rec = _recording(3, "s", seconds=60)
    (acc, rate), (ppg, _) = rec.acc, rec.ppg
    t = np.arange(len(ppg)) / rate
    with_acc, alone = tmp_path / "with_acc.csv", tmp_path / "alone.csv"
    np.savetxt(with_acc, np.column_stack([t, acc, ppg]), delimiter=",", comments="",
               header="time,acc_x,acc_y,acc_z,ppg")  # fmt: skip
    np.savetxt(alone, np.column_stack([t, ppg]), delimiter=",", header="time,ppg", comments="")
    header = {"context": 4, "q": 4.0, "floor_db": FLOOR_DB}
    model = VirtualSensing("ppg_only", width=8, key=jax.random.key(0))
    a = predict_recording(model, header, read_sampled(alone))["columns"]
    b = predict_recording(model, header, read_sampled(with_acc))["columns"]
    assert len(a["hr"]) == 27 and np.all(np.isfinite(a["hr"]))  # (60 - 8) / 2 + 1 windows
    for key in ("start_s", "hr", "sd", "hr_tracked"):
        np.testing.assert_allclose(a[key], b[key], rtol=1e-6, err_msg=key)
    fusion = VirtualSensing("fusion", width=8, key=jax.random.key(0))
    with pytest.raises(WearjaxDataError, match="alone: no acc_x/acc_y/acc_z"):
        predict_recording(fusion, header, read_sampled(alone))
    # and a file with neither is refused for the PPG the model reads
    acc_only = tmp_path / "acc.csv"
    np.savetxt(acc_only, np.column_stack([t, acc]), delimiter=",", comments="",
               header="time,acc_x,acc_y,acc_z")  # fmt: skip
    with pytest.raises(WearjaxDataError, match="acc: a PPG-only model needs a ppg column"):
        predict_recording(model, header, read_sampled(acc_only))


@pytest.mark.slow  # about a minute on 2 cores
def test_an_interrupted_virtual_study_resumes_to_the_same_results(tmp_path, monkeypatch):
    """Ctrl-C while the second setting trains keeps the first (its metrics, its per-window
    estimates and the virtual model the plots need); `resume` trains only the rest and
    writes what an uninterrupted study writes. Other options are refused, naming them."""
    from wearjax.errors import WearjaxError
    from wearjax.tasks import virtual_data, virtual_study

    _write_folder(tmp_path / "data", ppg=True)
    s, _ = virtual_data.folder_sessions(tmp_path / "data", lambda line: None)
    config = VirtualConfig()._replace(train=VirtualConfig().train._replace(epochs=1))
    settings = ["virtual", "acc_only"]
    whole = virtual_study.study(s, config, tmp_path / "whole", settings=settings)
    trained, real = [], virtual_study.run_setting

    def stop_at_acc_only(s, split, config, name, **kwargs):
        trained.append(name)
        if name == "acc_only" and len(trained) == 2:
            raise KeyboardInterrupt
        return real(s, split, config, name, **kwargs)

    monkeypatch.setattr(virtual_study, "run_setting", stop_at_acc_only)
    out = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        virtual_study.study(s, config, out, settings=settings)
    with pytest.raises(WearjaxError, match="holds an interrupted cv virtual study"):
        virtual_study.study(s, config, out, settings=settings)
    with pytest.raises(WearjaxError, match="ran with other config"):
        virtual_study.study(s, config._replace(seed=1), out, settings=settings, resume=True)
    got = virtual_study.study(s, config, out, settings=settings, resume=True)
    assert trained == ["virtual", "acc_only", "acc_only"]
    drop = ("seconds", "latency_ms_per_update")
    for name in whole:  # timings aside, the same metrics
        kept = [{k: v for k, v in m[name].items() if k not in drop} for m in (got, whole)]
        assert kept[0] == kept[1], name
    a, b = np.load(tmp_path / "whole" / "predictions.npz"), np.load(out / "predictions.npz")
    assert set(a.files) == set(b.files)
    for k in a.files:
        np.testing.assert_array_equal(a[k], b[k])
    assert (out / "plots" / "spectra.png").is_file() and not list(out.glob("partial*"))
