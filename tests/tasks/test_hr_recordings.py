"""A user's recordings without a runner height: vertical oscillation is scaled by height, and
many watch files carry no user profile, so a missing height is filled (never an error that
stops a whole folder) and the fill is said."""

import jax.numpy as jnp
import numpy as np
import pytest

from wearjax.data.types import SUBJECT_FIELDS, Session
from wearjax.signal.features import running_features
from wearjax.tasks.hr_recordings import REFERENCE_HEIGHT_M, fill_heights, shared_channels

H = SUBJECT_FIELDS.index("height_m")


def _session(height, channels=("speed", "cadence", "vertical_oscillation"), t=30):
    subject = np.full(len(SUBJECT_FIELDS), np.nan, np.float32)
    subject[H] = height
    x = np.tile(np.asarray([3.0, 85.0, 90.0][: len(channels)], np.float32), (t, 1))
    return Session(
        x=x, hr=np.full(t, 140.0, np.float32), vo2=np.full(t, np.nan, np.float32),
        mask=np.ones(t, bool), vo2_mask=np.zeros(t, bool), subject=subject, runner="me",
        channels=channels,
    )  # fmt: skip


def _heights(sessions):
    return [float(s.subject[H]) for s in sessions]


def test_unknown_heights_take_the_median_of_the_known_ones():
    sessions = [_session(1.70), _session(np.nan), _session(1.90), _session(0.0), _session(1.80)]
    out, notes = fill_heights(sessions)
    assert _heights(out) == pytest.approx([1.70, 1.80, 1.90, 1.80, 1.80])
    assert len(notes) == 1 and "2 of 5 session(s)" in notes[0] and "1.80 m" in notes[0]
    assert np.isnan(sessions[1].subject[H])  # the input is not changed


@pytest.mark.parametrize(("fallback", "expected"), [(None, REFERENCE_HEIGHT_M), (1.62, 1.62)])
def test_with_no_known_height_the_model_height_or_a_reference_one(fallback, expected):
    out, notes = fill_heights([_session(np.nan), _session(np.nan)], fallback)
    assert _heights(out) == pytest.approx([expected, expected])
    assert "2 of 2" in notes[0]
    x, subject = (jnp.asarray(np.stack([getattr(s, f) for s in out])) for f in ("x", "subject"))
    features, names = running_features(x, out[0].channels, subject)  # raised before the fill
    i = names.index("vertical_oscillation_per_height")
    np.testing.assert_allclose(features[..., i], 0.090 / expected, rtol=1e-6)


def test_sessions_without_vertical_oscillation_are_left_as_they_are():
    sessions = [_session(np.nan, channels=("speed", "cadence"))]
    out, notes = fill_heights(sessions)
    assert out == sessions and notes == []


def test_shared_channels_fills_heights_and_says_so():
    sessions = [_session(np.nan), _session(np.nan)]
    out, notes = shared_channels(sessions)
    assert _heights(out) == pytest.approx([REFERENCE_HEIGHT_M] * 2)
    assert any("height unknown" in n for n in notes)


def test_a_recording_of_hr_alone_is_left_out_and_named_not_stopping_the_others():
    from dataclasses import replace

    from wearjax.errors import WearjaxDataError

    runs = [replace(_session(1.8), source=f"run{i}.csv") for i in range(2)]
    hr_only = replace(_session(1.8, channels=()), x=np.zeros((30, 0), np.float32),
                      source="strap.csv")  # fmt: skip
    out, notes = shared_channels([runs[0], hr_only, runs[1]])
    assert [s.source for s in out] == ["run0.csv", "run1.csv"]
    assert out[0].channels == ("speed", "cadence", "vertical_oscillation")
    assert notes[0].startswith("skipped strap.csv: no running channel (it has [])")
    with pytest.raises(WearjaxDataError, match=r"^strap.csv: no running channel"):
        shared_channels([hr_only])
    speed = replace(_session(1.8, channels=("speed",)), source="a.csv")
    cadence = replace(_session(1.8, channels=("speed",)), channels=("cadence",), source="b.csv")
    with pytest.raises(WearjaxDataError, match=r"share no running channel: a.csv has \['speed'\], "
                       r"b.csv has \['cadence'\]"):  # fmt: skip
        shared_channels([speed, cadence])
