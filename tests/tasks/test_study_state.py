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
