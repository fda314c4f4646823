"""The fingerprint a resumable study keeps of its data (`tasks.study_state`)."""

import numpy as np

from wearjax.tasks.study_state import fingerprint


def test_the_fingerprint_tells_apart_data_with_the_same_bytes():
    """Until 2026-12-07 only the bytes were hashed: arrays split elsewhere, reshaped or read
    as another dtype of the same bytes were the same data to a resume."""
    a, b = np.arange(3, dtype=np.int32), np.arange(6, dtype=np.float32).reshape(2, 3)
    same = fingerprint(a, b)
    assert fingerprint(a.copy(), b.copy()) == same and len(same) == 64
    assert fingerprint(np.arange(2), np.arange(2, 3)) != fingerprint(np.arange(1), np.arange(1, 3))
    assert fingerprint(a, b.reshape(3, 2)) != same
    assert fingerprint(a.view(np.float32), b) != same
    assert fingerprint(a, np.asfortranarray(b)) == same  # the values, not their memory layout


def test_a_new_study_clears_what_a_study_whose_json_was_deleted_left(tmp_path):
    """The refusal names every partial file; a new study removes stale ones. Until 2026-12-07
    it named partial.json only, and a training state left beside a deleted one made the next
    study that stopped on bad data keep its empty partial.json (`clear_if_nothing_kept` reads
    a state file as a model in training), so the run after it was refused too."""
    import pytest

    from wearjax.errors import WearjaxError
    from wearjax.tasks import study_state

    study_state.save(tmp_path, {"study": "x"}, {}, {"a": np.zeros(2)}, {})
    stale = tmp_path / "partial_kalman_8x1.state"
    stale.write_bytes(b"state")
    with pytest.raises(WearjaxError, match=r"delete its partial\* files \(.*partial\*\) to start"):
        study_state.check(tmp_path, False, "cv hr study")
    (tmp_path / study_state.JSON).unlink()  # as the message said until 2026-12-07
    study_state.check(tmp_path, False, "cv hr study")
    assert not stale.exists() and not (tmp_path / study_state.NPZ).exists()
    study_state.save(
        tmp_path, {"study": "x"}, {}, {}, {}
    )  # the new study starts, stops on bad data
    study_state.clear_if_nothing_kept(tmp_path)
    assert not study_state.exists(tmp_path)  # so the next run starts afresh, not refused
