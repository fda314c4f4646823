"""The pretraining corpora of the channel-aware transformer (`tasks.pretrain`): windows of `C`
channels at the nominal rate from the simulated cohort's 1 Hz physiology, pyoxynet's real
resting-to-exercise tests, or the simulated wrist at 25 Hz (`tasks.pretrain.named_corpus`
names them and the settings each is pretrained with)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from wearjax.data.imu import windows
from wearjax.data.synthetic import simulate_cohort
from wearjax.signal.metabolic import hold_observed

WRIST_RATE = 25.0  # Hz: the wrist corpus's rate, the wrist encoder's nominal rate


class Corpus(NamedTuple):
    x: jax.Array  # [N, C, T] windows at the nominal rate
    ok: jax.Array  # [N, C] False: a padded channel
    # [N] the recording a window comes from; a recording's windows are consecutive and in time
    # order (windows left out, e.g. for PPG dropouts in `wrist_corpus`, leave gaps that a hop
    # of `partners` steps over)
    recording: jax.Array


def synthetic_corpus(
    n_runners: int = 12, sessions: int = 6, *, window_s: int = 60, hop_s: int = 30,
    n_channels: int = 4, seed: int = 0,
) -> Corpus:  # fmt: skip
    """Windows of `n_channels` 1 Hz channels (HR, VO2 and the running channels, a random
    subset per window) from a simulated cohort (module docstring)."""
    cohort = simulate_cohort(
        jax.random.key(seed), n_runners=n_runners, sessions_per_runner=sessions,
        min_minutes=20.0, max_minutes=40.0,
    )  # fmt: skip
    hr = np.asarray(hold_observed(cohort.hr, cohort.mask & cohort.valid))
    vo2 = np.asarray(hold_observed(cohort.vo2, cohort.vo2_mask & cohort.valid))
    series = np.concatenate([hr[..., None], vo2[..., None], np.asarray(cohort.x)], axis=-1)
    rng = np.random.default_rng(seed)
    out = []
    for s, length in enumerate(np.asarray(cohort.lengths)):  # data preparation, once
        out.append(windows(series[s, :length], window_s, hop_s))
    w = np.concatenate(out)  # [N, T, F]
    pick = np.argsort(rng.random((len(w), w.shape[2])), axis=1)[:, :n_channels]
    x = np.take_along_axis(w, pick[:, None, :], axis=2).transpose(0, 2, 1)
    return _corpus(x, np.repeat(np.arange(len(out)), [len(o) for o in out]))


def _corpus(x: np.ndarray, recording: np.ndarray) -> Corpus:
    return Corpus(
        jnp.asarray(x, jnp.float32), jnp.ones(x.shape[:2], bool), jnp.asarray(recording, jnp.int32)
    )


def cpet_corpus(*, window_s: int = 60, hop_s: int = 30) -> Corpus:
    """Windows of HR, VO2, VCO2 and VE (1 Hz) from pyoxynet's real resting-to-exercise tests
    (`data.pyoxynet.resting_series`: other subjects than the ramp tests the metabolic-domain
    probe is scored on; their labels are not used). Windows with a missing value are left out."""
    from wearjax.data.pyoxynet import resting_series

    series, _ = resting_series(window_s)
    parts = [windows(x, window_s, hop_s) for x in series]
    w = np.concatenate(parts)  # [N, T, 4]
    recording = np.repeat(np.arange(len(parts)), [len(p) for p in parts])
    keep = np.all(np.isfinite(w), axis=(1, 2))
    return _corpus(w[keep].transpose(0, 2, 1), recording[keep])


def join_corpora(*corpora: Corpus) -> Corpus:
    """One corpus of several with the same channel count and window length (recordings
    renumbered so that no two corpora share one)."""
    offsets = np.cumsum([0] + [int(c.recording.max()) + 1 for c in corpora[:-1]])
    return Corpus(
        jnp.concatenate([c.x for c in corpora]),
        jnp.concatenate([c.ok for c in corpora]),
        jnp.concatenate([c.recording + o for c, o in zip(corpora, offsets, strict=True)]),
    )


def wrist_corpus(n_subjects: int = 8, sessions: int = 2, *, minutes: float = 10.0,
                 window_s: float = 8.0, seed: int = 0) -> Corpus:  # fmt: skip
    """Non-overlapping `window_s` windows of the simulated wrist (`data.wrist_synthetic` at
    25 Hz): PPG, ACC x/y/z and gyro x/y/z, four of them per window at random (PPG dropouts
    cut out). Severity is drawn per session over light to heavy."""
    from wearjax.data.wrist_synthetic import simulate_wrist

    w = simulate_wrist(n_subjects, sessions, minutes=minutes, rate=WRIST_RATE, seed=seed)
    n = round(window_s * w.rate)
    k = w.ppg.shape[1] // n
    series = np.concatenate([w.ppg[..., None], w.acc, w.gyro], axis=-1)[:, : k * n]
    x = series.reshape(-1, k, n, 7).reshape(-1, n, 7)  # [S k, T, 7]
    whole = w.ppg_ok[:, : k * n].reshape(-1, n).all(axis=1)
    x = x[whole]
    recording = np.repeat(np.arange(series.shape[0]), k)[whole]
    rng = np.random.default_rng(seed)
    pick = np.argsort(rng.random((len(x), 7)), axis=1)[:, :4]
    x = np.take_along_axis(x, pick[:, None, :], axis=2).transpose(0, 2, 1)
    return _corpus(x, recording)
