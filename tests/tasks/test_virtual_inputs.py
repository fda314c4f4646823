"""What the virtual-sensing task does with imperfect files: ACC gaps, streams at rates the
spectra cannot use, references in the wrong units, and streams a model never reads."""

import jax
import numpy as np
import pytest

from tests.tasks.test_virtual import _recording, _write_folder
from wearjax.errors import WearjaxDataError
from wearjax.models.virtual import FLOOR_DB, GRID_HZ, VirtualSensing
from wearjax.tasks.virtual_data import (
    HOP_S,
    WINDOW_S,
    fill_gaps,
    grid_spectra,
    spectral_sessions,
)


def test_fill_gaps_interpolates_each_channel_and_marks_the_rows_measured_on_every_channel():
    values = np.array([[0.0, 1.0], [np.nan, 2.0], [np.nan, np.nan], [3.0, 4.0], [4.0, np.nan]])
    got, whole = fill_gaps(values)
    np.testing.assert_allclose(got[:, 0], [0.0, 1.0, 2.0, 3.0, 4.0])
    np.testing.assert_allclose(got[:, 1], [1.0, 2.0, 3.0, 4.0, 4.0])  # held beyond the end
    np.testing.assert_array_equal(whole, [True, False, False, True, False])


def test_an_acc_gap_is_filled_across_and_its_windows_carry_no_hr_label_for_acc():
    """1 s of missing ACC on a wrist whose z axis (a faint beat) carries gravity (1 g): read as
    0 g the gap is a step, whose spectrum buries the beat's line; filled across, the gap's
    windows keep the spectra of the unbroken recording, their peak on the beat, and carry no
    HR label for the settings that read ACC (their ACC is partly made up); the reference is
    still the window's (`ok`), for those that read PPG alone."""
    rec = _recording(0, "a", seconds=60)
    acc, rate = rec.acc
    acc = acc + np.array([0.0, 0.0, 1.0])  # gravity on z
    whole = spectral_sessions([rec._replace(acc=(acc, rate))])
    gap = (np.arange(len(acc)) >= 20 * rate) & (np.arange(len(acc)) < 21 * rate)
    broken = np.where(gap[:, None], np.nan, acc)
    s = spectral_sessions([rec._replace(acc=(broken, rate))])
    starts = np.arange(s.acc.shape[1]) * HOP_S
    covers = (starts < 21) & (starts + WINDOW_S > 20)
    np.testing.assert_array_equal(s.labels()[0], whole.ok[0] & ~covers)
    np.testing.assert_array_equal(s.ok[0], whole.ok[0])
    np.testing.assert_array_equal(s.labels(reads_acc=False), s.ok)
    np.testing.assert_array_equal(s.acc[0, ~covers], whole.acc[0, ~covers])
    z_whole, z_filled = whole.acc[0, covers, :, 2], s.acc[0, covers, :, 2]
    zero_filled = grid_spectra(np.nan_to_num(broken).T.astype(np.float32), rate)[covers, :, 2]
    np.testing.assert_allclose(np.argmax(z_filled, -1), np.argmax(z_whole, -1), atol=1)  # a bin
    err_filled, err_zero = (np.abs(z - z_whole).mean() for z in (z_filled, zero_filled))
    assert err_filled < err_zero / 2, (err_filled, err_zero)  # 0.054 against 0.159
    assert np.sum(GRID_HZ[np.argmax(zero_filled, -1)] < 0.6) >= 3  # of 4: the step, not the beat


def test_acc_gaps_cost_the_acc_settings_their_windows_not_the_ppg_settings():
    """A recording whose ACC is lost after its first 10 s (two gap-free windows) and whose PPG
    is whole: the settings that read PPG alone learn from and are scored on every window with
    a reference, those that read ACC on those two. Until 2026-12-07 one label mask served
    both, so the PPG settings were scored on two windows of that recording."""
    from wearjax.tasks.virtual import device_data, split_sessions
    from wearjax.tasks.virtual_study import _scores

    recs = [_recording(i, f"subject{i}", seconds=60) for i in range(4)]
    acc, rate = recs[0].acc
    early = (np.arange(len(acc)) < 10 * rate)[:, None]
    recs[0] = recs[0]._replace(acc=(np.where(early, acc, np.nan), rate))
    s = spectral_sessions(recs)
    assert s.ok.all() and s.labels()[0].sum() == 2 and s.labels()[1:].all()
    for reads_acc in (True, False):
        data = device_data(s, floor_db=FLOOR_DB, reads_acc=reads_acc)
        np.testing.assert_array_equal(np.asarray(data.ok), s.labels(reads_acc))
        # `virtual`'s PPG path (training only) reads every window with a reference
        np.testing.assert_array_equal(np.asarray(data.ref_ok), s.ok)
        # and its ACC terms (reconstruction, KL) only the two gap-free windows of that one
        acc_ok = np.asarray(data.acc_ok)
        assert acc_ok[0].sum() == 2 and acc_ok[0, :2].all() and acc_ok[1:].all()
    split = split_sessions(s, 1)
    off = np.where(s.labels(), 1.0, 20.0)  # 20 bpm off where the ACC had a gap
    pred = s.hr + off
    assert _scores(pred, s, split, "acc_only")["mae"] == pytest.approx(1.0, rel=1e-5)
    ppg = _scores(pred, s, split, "ppg_only")
    assert ppg["mae"] == pytest.approx(off.mean(), rel=1e-5) and ppg["mae"] > 5.0


@pytest.mark.slow  # 6-16 s cold on 2 cores: the slow step (2026-12-07)
def test_predict_scores_an_acc_model_on_gap_free_windows_and_a_ppg_model_on_all(tmp_path):
    """The file's reference column holds the windows the printed MAE scores: for an ACC model
    those without an ACC gap, for a PPG-only model (which does not read the ACC) every one."""
    from wearjax.data.sampled import read_sampled
    from wearjax.tasks.virtual_io import predict_recording

    rec = _recording(0, "s", seconds=60)
    acc, rate = rec.acc
    path = tmp_path / "gappy.npz"
    lost = np.where((np.arange(len(acc)) < 10 * rate)[:, None], acc, np.nan)
    np.savez(path, acc=lost, acc_rate_hz=rate, ppg=rec.ppg[0], ppg_rate_hz=rate,
             hr=rec.hr[0], hr_rate_hz=1.0)  # fmt: skip
    header = {"context": 4, "q": 4.0, "floor_db": FLOOR_DB}
    windows = {}
    for setting in ("acc_only", "ppg_only"):
        model = VirtualSensing(setting, width=8, key=jax.random.key(0))
        got = predict_recording(model, header, read_sampled(path))
        windows[setting] = got["metrics"]["hr"]["windows"]
        assert np.isfinite(got["columns"]["hr_reference"]).sum() == windows[setting]
    assert windows == {"acc_only": 2, "ppg_only": 27}


def test_a_ppg_gap_is_filled_across_not_with_zeros():
    """A raw PPG sits on a DC level (here 2000 counts): filled with 0, a 1 s gap was a step
    whose spectrum buried the pulse's line in the windows around it."""
    rec = _recording(1, "a", seconds=60)
    ppg, rate = rec.ppg
    ppg = ppg + 2000.0
    whole = spectral_sessions([rec._replace(ppg=(ppg, rate))])
    gap = (np.arange(len(ppg)) >= 30 * rate) & (np.arange(len(ppg)) < 31 * rate)
    s = spectral_sessions([rec._replace(ppg=(np.where(gap, np.nan, ppg), rate))])
    starts = np.arange(s.ppg.shape[1]) * HOP_S
    covers = (starts < 31) & (starts + WINDOW_S > 30)
    np.testing.assert_array_equal(s.ppg_ok[0], whole.ppg_ok[0] & ~covers)
    np.testing.assert_array_equal(s.ppg[0, ~covers], whole.ppg[0, ~covers])
    peaks = lambda x: np.argmax(x[0, covers, :, 0], -1)  # noqa: E731
    np.testing.assert_allclose(peaks(s.ppg), peaks(whole.ppg), atol=1)  # on the pulse, a bin
    zeroed = grid_spectra(np.where(gap, 0.0, ppg).astype(np.float32)[None], rate)[covers, :, 0]
    assert np.all(GRID_HZ[np.argmax(zeroed, -1)] < 0.6)  # what zeros gave: the step
    # the simulated watch's contact dropouts are zeros in its signal, as the study reads them
    # (`synthetic_sessions`; every learned figure was computed so): the same session, zeroed
    sim = spectral_sessions([rec._replace(ppg=(np.where(gap, np.nan, ppg), rate))], ppg_gaps="zero")
    np.testing.assert_array_equal(sim.ppg_ok, s.ppg_ok)
    np.testing.assert_allclose(sim.ppg[0, covers, :, 0], zeroed, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="ppg_gaps must be"):
        spectral_sessions([rec], ppg_gaps="hold")


def test_signals_too_slow_for_the_band_are_refused():
    with pytest.raises(WearjaxDataError, match="sampled at 5 Hz, too slow for HR up to 4 Hz"):
        grid_spectra(np.zeros((1, 200), np.float32), 5.0)
    rec = _recording(0, "a", seconds=60, rate=6.0)
    with pytest.raises(WearjaxDataError, match="'rec0': acc is sampled at 6 Hz, too slow"):
        spectral_sessions([rec])


def test_a_folder_skips_a_file_at_an_unusable_rate_or_in_the_wrong_units_and_reads_the_rest(
    tmp_path,
):
    from wearjax.tasks.virtual_data import folder_sessions

    _write_folder(tmp_path, ppg=True)
    (tmp_path / "subject4").mkdir()
    rec = _recording(7, "subject4")
    np.savez(tmp_path / "subject4" / "slow_ref.npz", acc=rec.acc[0], acc_rate_hz=25.0,
             hr=rec.hr[0][::4], hr_rate_hz=0.25)  # fmt: skip
    np.savez(tmp_path / "subject4" / "hz.npz", acc=rec.acc[0], acc_rate_hz=25.0,
             hr=rec.hr[0] / 60.0, hr_rate_hz=1.0)  # fmt: skip
    np.savez(tmp_path / "subject4" / "slow.npz", acc=rec.acc[0][::5], acc_rate_hz=5.0,
             hr=rec.hr[0], hr_rate_hz=1.0)  # fmt: skip
    s, skipped = folder_sessions(tmp_path)
    assert s.subjects == ("subject0", "subject1", "subject2", "subject3")
    reasons = {p.name: r for p, r in skipped}
    assert "the reference HR is sampled at 0.25 Hz" in reasons["slow_ref.npz"]
    assert "no value in 25-250 bpm; give it in beats per minute" in reasons["hz.npz"]
    assert "acc is sampled at 5 Hz, too slow" in reasons["slow.npz"]


def test_a_file_with_good_acc_beside_an_unusable_ppg_is_read_for_its_acc(tmp_path):
    """PPG at 5 Hz beside good ACC and reference: the ACC settings read the file (as
    `predict` with an ACC model does), with a line that says why; until 2026-12-07 the file
    was skipped as if it had no ACC."""
    from wearjax.tasks.virtual_data import folder_sessions

    for i in range(2):
        rec = _recording(i, f"subject{i}")
        (tmp_path / rec.subject).mkdir()
        np.savez(tmp_path / rec.subject / "run.npz", acc=rec.acc[0], acc_rate_hz=25.0,
                 ppg=rec.ppg[0][::5], ppg_rate_hz=5.0, hr=rec.hr[0], hr_rate_hz=1.0)  # fmt: skip
    said = []
    s, skipped = folder_sessions(tmp_path, say=said.append)
    assert not skipped and s.subjects == ("subject0", "subject1")
    assert s.has_acc and not s.has_ppg and s.acc_present.all()
    assert sum("ppg is sampled at 5 Hz" in x and "ACC alone" in x for x in said) == 2


def test_predict_leaves_out_what_the_model_does_not_read(tmp_path):
    """An ACC-only model on a file whose PPG is at 5 Hz (unusable) and whose reference is
    at 0.25 Hz: it predicts from the ACC, says the reference was left out, and gives what it
    gives on the ACC alone."""
    from wearjax.data.sampled import read_sampled
    from wearjax.tasks.virtual_io import predict_recording

    rec = _recording(3, "s", seconds=60, rate=125.0)
    acc, rate = rec.acc
    awkward = tmp_path / "awkward.npz"
    np.savez(awkward, acc=acc, acc_rate_hz=rate, ppg=rec.ppg[0][::25], ppg_rate_hz=5.0,
             hr=rec.hr[0][::4], hr_rate_hz=0.25)  # fmt: skip
    plain = tmp_path / "plain.npz"
    np.savez(plain, acc=acc, acc_rate_hz=rate)
    header = {"context": 4, "q": 4.0, "floor_db": FLOOR_DB}
    for setting in ("acc_only", "virtual"):
        model = VirtualSensing(setting, width=8, key=jax.random.key(0))
        got = predict_recording(model, header, read_sampled(awkward, require_hr=False))
        alone = predict_recording(model, header, read_sampled(plain, require_hr=False))
        assert len(got["notes"]) == 1 and "sampled at 0.25 Hz" in got["notes"][0]
        assert "predicted without it" in got["notes"][0] and not got["metrics"]
        np.testing.assert_allclose(got["columns"]["hr"], alone["columns"]["hr"], rtol=1e-6)
    fusion = VirtualSensing("fusion", width=8, key=jax.random.key(0))
    with pytest.raises(WearjaxDataError, match="awkward: ppg is sampled at 5 Hz, too slow"):
        predict_recording(fusion, header, read_sampled(awkward, require_hr=False))
