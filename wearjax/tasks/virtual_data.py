"""Wrist recordings to arrays for the virtual-sensing task (`tasks.virtual`).

`spectral_sessions`: each session's ACC axes and PPG become band magnitude spectra
(`signal.spectra`, Hann, 8 s windows every 2 s, 0.5-4 Hz), linearly interpolated onto the
model's grid (`models.virtual.GRID_HZ`, so files at any rate share one model) and divided by
their maximum per window and channel (the peak's position carries HR; the amplitude changes with
skin contact, arm and motion). The models read them in decibels under that peak
(`device_data`, `models.virtual.compress`): the heart's trace in a running wrist's
ACC lies about 50 dB under the gait's lines, a fraction of a percent of the peak on a linear
scale. Reference HR per window is the mean of the reference series over the window, or, for a
series at the hop rate (0.5 Hz: one value per window), the value at the window's start.
Sessions are padded to the longest one's window count. `folder_sessions` reads a folder of
sampled-signal recordings into them (a recording without usable ACC for its PPG alone).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from wearjax.data.readers import HR_RANGE_BPM as HR_RANGE
from wearjax.errors import WearjaxDataError, WearjaxFileError
from wearjax.models.virtual import GRID_HZ, compress
from wearjax.signal.gait import lagged, stride_hz
from wearjax.signal.spectra import band_spectra, normalise, window_mean

WINDOW_S = 8.0
HOP_S = 2.0


class SpectralSessions(NamedTuple):
    """Per-window spectra of S sessions on `GRID_HZ`, padded to W windows."""

    acc: np.ndarray  # [S, W, F, 3]
    ppg: np.ndarray  # [S, W, F, 1] (zeros where a session has no PPG)
    acc_scale: np.ndarray  # [S, W, 3] each ACC spectrum's maximum before normalising
    valid: np.ndarray  # [S, W] bool: a window of the session (False for padding)
    hr: np.ndarray  # [S, W] reference HR per window (bpm; 0 where not ok)
    ok: np.ndarray  # [S, W] bool: a window with a reference HR (`labels`: with gap-free ACC)
    ppg_ok: np.ndarray  # [S, W] bool: PPG present over the whole window
    subject: np.ndarray  # [S] int subject index
    subjects: tuple[str, ...]  # subject names
    severity: np.ndarray  # [S] motion severity (NaN when unknown)
    names: tuple[str, ...]  # [S] session names
    has_ppg: bool
    acc_ok: np.ndarray | None = None  # [S, W] bool: no ACC gap in the window (None: no gaps)
    has_acc: bool = True  # False: PPG-only recordings, whose ACC spectra are zeros
    acc_present: np.ndarray | None = None  # [S] bool: a session with ACC (None: every one)

    @property
    def n_windows(self) -> np.ndarray:
        return self.valid.sum(1)

    @property
    def with_acc(self) -> np.ndarray:
        """`[S]` bool: the sessions with ACC (those without read zero ACC spectra)."""
        if self.acc_present is None:
            return np.full(len(self.names), self.has_acc)
        return np.asarray(self.acc_present, bool)

    def labels(self, reads_acc: bool = True) -> np.ndarray:
        """`[S, W]` bool: the windows a setting trains on and is scored on, those with a
        reference HR (`ok`); for one that reads ACC, only those among them without an ACC gap
        (their ACC is partly made up). A setting that reads PPG alone keeps the others."""
        if not reads_acc or self.acc_ok is None:
            return np.asarray(self.ok, bool)
        return np.asarray(self.ok, bool) & np.asarray(self.acc_ok, bool)

    @property
    def with_ppg(self) -> np.ndarray:
        """`[S]` bool: the sessions with PPG in some window."""
        return np.asarray(self.ppg_ok).any(axis=1)


class VirtualData(NamedTuple):
    acc: jax.Array  # [S, W, F, 3] spectra as the models read them (`device_data`)
    ppg: jax.Array  # [S, W, F, 1] likewise
    gait: jax.Array  # [S, W, N_GAIT] cadence (steps/min) and its lags (`gait_features`)
    hr: jax.Array  # [S, W]
    ok: jax.Array  # [S, W] the windows the setting learns from and is scored on (`labels`)
    ref_ok: jax.Array  # [S, W] those with a reference HR, ACC gap or not (`virtual`'s PPG path)
    ppg_ok: jax.Array  # [S, W]
    acc_ok: jax.Array  # [S, W] windows of a session with ACC, without an ACC gap
    valid: jax.Array  # [S, W]
    n_windows: jax.Array  # [S]


def gait_features(s: SpectralSessions) -> jax.Array:
    """`[S, W, N_GAIT]`: the cadence each window's ACC shows (`signal.gait.stride_hz` on its
    power summed over the axes, in steps/min) and its first-order lags (`signal.gait.lagged`),
    causal over each whole session. Through a window with an ACC gap (`s.acc_ok`), whose
    filled signal shows no gait, the last gap-free window's cadence is held (before the first
    one, the first one's), so the lags do not carry the gap into the minutes after it."""
    power = jnp.square(jnp.asarray(s.acc) * jnp.asarray(s.acc_scale)[:, :, None, :]).sum(-1)
    cadence = 120.0 * stride_hz(power, GRID_HZ)  # [S, W]
    if s.acc_ok is not None and not np.all(s.acc_ok | ~s.valid):
        ok = np.asarray(s.acc_ok)
        last = np.maximum.accumulate(np.where(ok, np.arange(ok.shape[1]), -1), axis=1)
        last = np.where(last < 0, np.argmax(ok, axis=1)[:, None], last)
        cadence = jnp.take_along_axis(cadence, jnp.asarray(last), axis=1)
    return jnp.concatenate([cadence[..., None], lagged(cadence, HOP_S)], axis=-1)


def device_data(s: SpectralSessions, *, floor_db: float | None, reads_acc=True) -> VirtualData:
    """The sessions as the models see them: decibel spectra (`compress`), gait features; `ok`
    the windows a setting that reads ACC (or not: `reads_acc`) learns from (`s.labels`);
    `acc_ok` those whose ACC was measured throughout (`virtual`'s ACC terms read only them)."""
    acc_ok = np.asarray(s.valid, bool) & s.with_acc[:, None]
    if s.acc_ok is not None:
        acc_ok &= np.asarray(s.acc_ok, bool)
    return VirtualData(
        compress(jnp.asarray(s.acc), floor_db), compress(jnp.asarray(s.ppg), floor_db),
        gait_features(s), jnp.asarray(s.hr), jnp.asarray(s.labels(reads_acc)),
        jnp.asarray(s.ok), jnp.asarray(s.ppg_ok), jnp.asarray(acc_ok), jnp.asarray(s.valid),
        jnp.asarray(s.n_windows, jnp.int32),
    )  # fmt: skip


def check_rate(rate: float, what: str, *, signal: bool = False) -> None:
    """A stream must give at least one sample per 2 s hop (a hop that is not a whole number
    of samples, e.g. 62.5 at 31.25 Hz, is fine: `signal.spectra.frame_starts` rounds each
    window's start on its own, so streams at different rates stay within half a sample of
    each other), and a `signal` (ACC, PPG) must be sampled at twice the grid's top frequency
    or more, or the grid's upper bins would repeat the spectrum's last one;
    `WearjaxDataError` naming the stream otherwise."""
    if not np.isfinite(rate) or HOP_S * rate < 1:
        raise WearjaxDataError(
            f"{what} is sampled at {rate:g} Hz, under one sample per {HOP_S:g} s hop: "
            f"resample it to {1 / HOP_S:g} Hz or more"
        )
    if signal and rate < 2 * GRID_HZ[-1]:
        raise WearjaxDataError(
            f"{what} is sampled at {rate:g} Hz, too slow for HR up to {GRID_HZ[-1]:g} Hz "
            f"({60 * GRID_HZ[-1]:g} bpm): record or resample it at {2 * GRID_HZ[-1]:g} Hz or more"
        )


def grid_spectra(x: np.ndarray, rate: float, *, scale: bool = False):
    """`x [C, N]` samples -> `[W, F, C]` spectra on `GRID_HZ`, each window and channel peak 1
    (and, with `scale`, the maxima `[W, C]` they were divided by)."""
    check_rate(rate, "a signal", signal=True)
    mag, freqs = band_spectra(jnp.asarray(x, jnp.float32), rate, window_s=WINDOW_S, hop_s=HOP_S)
    interp = jax.vmap(jax.vmap(lambda row: jnp.interp(jnp.asarray(GRID_HZ), freqs, row)))
    raw = interp(mag)  # [C, W, F]
    spec = np.asarray(jnp.moveaxis(normalise(raw, axis=-1), 0, -1))
    return (spec, np.asarray(jnp.max(raw, axis=-1)).T) if scale else spec


def _pad(arrays: list[np.ndarray], n: int) -> np.ndarray:
    return np.stack(
        [np.concatenate([a, np.zeros((n - len(a),) + a.shape[1:], a.dtype)]) for a in arrays]
    )


class WristRecording(NamedTuple):
    """One session's samples: `acc = (values [N, 3], rate_hz)` or None (a PPG-only recording,
    for a model that reads no ACC), `ppg = (values [N], rate_hz)` or None, both NaN where a
    sample is missing, reference `hr = (values, rate_hz)` (NaN where absent); `notes` says
    what was left out of the file and why."""

    name: str
    subject: str
    acc: tuple[np.ndarray, float] | None
    ppg: tuple[np.ndarray, float] | None
    hr: tuple[np.ndarray, float]
    severity: float = float("nan")
    notes: tuple[str, ...] = ()


def wrist_recording(
    session, *, require_reference: bool = True, require_acc: bool = True, use_ppg: bool = True
) -> WristRecording:
    """A sampled-signal `Session` (`data.sampled`) as a `WristRecording`: its `acc` (three
    axes; with `require_acc=False`, for a model that reads PPG alone, it is left out and PPG
    is required), `ppg` if present (left out with `use_ppg=False`, for a model that reads
    none) and reference HR (NaN throughout when absent and not required). Every stream kept
    is checked here, so a folder skips the file with its reason (`check_rate`; a reference
    without one value in 25-250 bpm). A reference that is not required but unusable is left
    out, with a note. `WearjaxDataError` with the reason when the file cannot be used."""
    acc, ppg = session.signals.get("acc"), session.signals.get("ppg")
    ref = session.targets.get("hr")
    name = Path(session.source).stem if session.source else session.workout
    ppg = ppg if use_ppg else None
    if not require_acc:  # a model that reads PPG alone: whatever ACC the file has is unused
        if ppg is None:
            raise WearjaxDataError(f"{name}: a PPG-only model needs a ppg column the file lacks")
        acc = None
    elif acc is None or acc.values.shape[1] != 3:
        raise WearjaxDataError(f"{name}: no acc_x/acc_y/acc_z signal; add the three ACC axes")
    for stream, signal in (("acc", acc), ("ppg", ppg)):
        if signal is not None:
            check_rate(signal.rate_hz, f"{name}: {stream}", signal=True)
            if not signal.mask.any():
                raise WearjaxDataError(f"{name}: {stream} holds no measured sample; drop it")
    notes = []
    if ref is not None:
        try:
            check_rate(ref.rate_hz, f"{name}: the reference HR")
            if not ref.mask.any():
                raise WearjaxDataError(
                    f"{name}: the reference HR has no value in {HR_RANGE[0]:g}-{HR_RANGE[1]:g} "
                    "bpm; give it in beats per minute"
                )
        except WearjaxDataError as err:
            if require_reference:
                raise
            notes.append(f"{err}; predicted without it")
            ref = None
    if ref is None and require_reference:
        raise WearjaxDataError(
            f"{name}: no reference HR; add an hr_ref column, an hr array or NAME.hr.csv"
        )
    timed = acc if acc is not None else ppg
    if timed.duration_s < WINDOW_S:
        raise WearjaxDataError(
            f"{name}: {timed.duration_s:.1f} s long, shorter than one {WINDOW_S:.0f} s window"
        )
    a = None if acc is None else (np.where(acc.mask[:, None], acc.values, np.nan), acc.rate_hz)
    p = None if ppg is None else (np.where(ppg.mask, ppg.values[:, 0], np.nan), ppg.rate_hz)
    hr = (np.full(int(timed.duration_s) + 1, np.nan), 1.0) if ref is None else (
        np.where(ref.mask, ref.values[:, 0], np.nan), ref.rate_hz)  # fmt: skip
    return WristRecording(name, session.runner, a, p, hr, notes=tuple(notes))


def fill_gaps(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`values [N, C]` with NaN gaps -> each channel linearly interpolated across its gaps
    (held at the nearest measured sample beyond the ends), and `[N]` whether every channel
    was measured. A gap filled with zeros would put a step (1 g to 0 g on the axis that
    carries gravity) into the spectrum, whose power piles up at the band's lowest bin."""
    measured = np.isfinite(values)
    out = np.array(values, dtype=np.float32)
    t = np.arange(len(values))
    for c in range(values.shape[1]):
        ok = measured[:, c]
        if not ok.all():
            out[:, c] = np.interp(t, t[ok], values[ok, c])
    return out, measured.all(axis=1)


def _window_means(values: np.ndarray, ok: np.ndarray, rate: float, w: int):
    check_rate(rate, "the reference HR")
    mean, seen = window_mean(
        jnp.asarray(np.where(ok, values, 0.0), jnp.float32), rate, WINDOW_S, HOP_S,
        mask=jnp.asarray(ok),
    )  # fmt: skip
    m, s = np.zeros(w, np.float32), np.zeros(w, bool)
    k = min(w, len(mean))
    m[:k], s[:k] = np.asarray(mean)[:k], np.asarray(seen)[:k]
    return m, s


def _window_reference(values: np.ndarray, ok: np.ndarray, rate: float, w: int):
    """Reference HR per window: the series' mean over each window, or, for a series at the hop
    rate (one value every 2 s, as public PPG benchmarks give one per 8 s window), the value at
    each window's start: the HR of the window that starts there (a mean over the window would
    average four windows' values and lead by 3 s)."""
    check_rate(rate, "the reference HR")
    if abs(rate * HOP_S - 1.0) > 1e-9:
        return _window_means(values, ok, rate, w)
    k = min(w, len(values))
    m, s = np.zeros(w, np.float32), np.zeros(w, bool)
    m[:k], s[:k] = np.where(ok[:k], values[:k], 0.0), ok[:k]
    return m, s


def spectral_sessions(recordings: list[WristRecording], *,
                      ppg_gaps: str = "filled") -> SpectralSessions:  # fmt: skip
    """Recordings to `SpectralSessions` (module docstring): spectra on the grid, reference HR
    per window, and whether the PPG is present over each whole window (NaN: missing). A
    file's missing PPG samples are `"filled"` linearly across the gap before the spectra (a
    raw PPG's DC level read as 0 would be a step); `"zero"` reads them as 0, as the simulated
    watch's contact dropouts are (`synthetic_sessions`)."""
    if ppg_gaps not in ("filled", "zero"):
        raise ValueError(f"ppg_gaps must be 'filled' or 'zero', got {ppg_gaps!r}")
    accs, scales, ppgs, hrs, oks, pok, aoks = [], [], [], [], [], [], []
    for rec in recordings:
        a, rate = rec.acc if rec.acc is not None else (None, None)
        for stream, r in (("acc", rate), ("ppg", rec.ppg and rec.ppg[1]), ("hr", rec.hr[1])):
            if r:
                check_rate(r, f"session {rec.name!r}: {stream}", signal=stream != "hr")
        if a is None:  # PPG only: the windows are the PPG's, the ACC spectra zero
            p, p_rate = rec.ppg
            a, rate, acc_whole = np.zeros((len(p), 3), np.float32), p_rate, None
        else:
            a, measured = fill_gaps(np.asarray(a, np.float32))
            acc_whole = measured
        spec, scale = grid_spectra(np.asarray(a, np.float32).T, rate, scale=True)
        w = spec.shape[0]
        if w == 0:
            raise WearjaxDataError(
                f"session {rec.name!r} is {len(a) / rate:.1f} s long, shorter than one "
                f"{WINDOW_S:.0f} s window; drop it or record longer"
            )
        accs.append(spec)
        scales.append(scale)
        if rec.ppg is None:
            ppgs.append(np.zeros((w, len(GRID_HZ), 1), np.float32))
            pok.append(np.zeros(w, bool))
        else:
            p, p_rate = rec.ppg
            valid = np.isfinite(p)
            # filled across like the ACC: a raw PPG's DC level read as 0 in a gap is a step
            filled = fill_gaps(np.asarray(p, np.float32)[:, None])[0][:, 0] if valid.any() else (
                np.zeros(len(p), np.float32))  # fmt: skip
            if ppg_gaps == "zero":
                filled = np.where(valid, p, 0.0).astype(np.float32)
            p_spec = grid_spectra(filled[None], p_rate)
            ppgs.append(_pad([p_spec[:w]], w)[0].astype(np.float32))
            frac, _ = _window_means(valid.astype(np.float32), np.ones(len(p), bool), p_rate, w)
            pok.append(frac > 1.0 - 1e-6)  # every sample of the window valid
        values, hr_rate = rec.hr
        values = np.asarray(values, np.float32)
        m, seen = _window_reference(values, np.isfinite(values) & (values > 0), hr_rate, w)
        # no ACC at all: no window an ACC setting may read (until 2026-12-07 all of them)
        whole = np.full(w, acc_whole is not None)
        if acc_whole is not None and not acc_whole.all():  # an ACC gap: no label for ACC
            frac, _ = _window_means(acc_whole.astype(np.float32), np.ones(len(a), bool), rate, w)
            whole = frac > 1.0 - 1e-6  # (`SpectralSessions.labels`); PPG keeps it
        aoks.append(whole)
        hrs.append(np.where(seen, m, 0.0).astype(np.float32))
        oks.append(seen)
    n = max(len(a) for a in accs)
    subjects = sorted({r.subject for r in recordings})
    return SpectralSessions(
        acc=_pad(accs, n), ppg=_pad(ppgs, n), acc_scale=_pad(scales, n),
        valid=_pad([np.ones(len(a), bool) for a in accs], n), hr=_pad(hrs, n), ok=_pad(oks, n),
        ppg_ok=_pad(pok, n), subject=np.asarray([subjects.index(r.subject) for r in recordings]),
        subjects=tuple(subjects), severity=np.asarray([r.severity for r in recordings], float),
        names=tuple(r.name for r in recordings), has_ppg=any(r.ppg is not None for r in recordings),
        acc_ok=_pad(aoks, n), has_acc=any(r.acc is not None for r in recordings),
        acc_present=np.asarray([r.acc is not None for r in recordings]),
    )  # fmt: skip


def folder_sessions(folder: Path, say=None) -> tuple[SpectralSessions, list]:
    """Recordings under `folder` with an `acc` signal or a `ppg` one, and a reference HR;
    others skipped with their reason (returned with the reader's own skips). A recording
    without usable ACC is read for its PPG alone (said through `say`), for the settings that
    read PPG (`SpectralSessions.with_acc` False; `has_acc` False when no recording has ACC).
    Subjects are the subfolders; in a folder without subfolders, as public PPG benchmarks
    ship one file per subject, each file is its own subject (said through `say`). A
    recording with an ACC gap in every window is read for its PPG alone too; one with no
    window left to score is skipped (`NO_LABEL`)."""
    from wearjax.data.folders import Skipped, load_folder

    want = "add sampled-signal CSV/NPZ files with acc_x, acc_y, acc_z (or ppg) and hr_ref"
    sessions, skipped = load_folder(folder, fix=want)
    files = {Path(s.source) for s in sessions}
    flat = len(files) > 1 and all(f.parent == folder for f in files)
    if flat:
        sessions = [dataclasses.replace(s, runner=Path(s.source).stem) for s in sessions]
    recs, sources = [], []
    acc_alone = []
    for s in sessions:
        try:
            rec = wrist_recording(s, require_reference=True)
        except WearjaxDataError as err:  # its PPG alone, else its ACC alone, where usable
            rec = _one_stream(s) if "ppg" in s.signals else None
            if rec is None:
                skipped.append(Skipped(Path(s.source), str(err)))
                continue
            if rec.acc is not None:
                acc_alone.append(f"{err}; read for its ACC alone")
        recs.append(rec)
        sources.append(Path(s.source))
    if not recs:
        raise WearjaxFileError(
            folder, "no recording with acc_x/y/z (or ppg) and a reference HR", want
        )
    spectral = spectral_sessions(recs)
    gappy = [not n and r.acc is not None and r.ppg is not None
             for r, n in zip(recs, spectral.labels().sum(axis=1), strict=True)]  # fmt: skip
    if any(gappy):  # an ACC gap in every labelled window: its PPG may still be read alone
        recs = [r._replace(acc=None) if g else r for r, g in zip(recs, gappy, strict=True)]
        spectral = spectral_sessions(recs)
    # a recording with ACC must have a window its ACC settings can score; one without, any
    labelled = np.where(spectral.with_acc, spectral.labels().sum(1), spectral.ok.sum(1))
    if not labelled.all():  # nothing to train on or score: said, not averaged as nothing
        skipped += [Skipped(f, NO_LABEL) for f, n in zip(sources, labelled, strict=True) if not n]
        recs = [r for r, n in zip(recs, labelled, strict=True) if n > 0]
        if not recs:
            raise WearjaxFileError(folder, NO_LABEL, "check the reference HR and the ACC")
        spectral = spectral_sessions(recs)
    for said in acc_alone if say is not None else ():
        say(said)
    ppg_alone = [r.name for r in recs if r.acc is None]
    if ppg_alone and say is not None:
        names = ", ".join(ppg_alone[:5]) + (", ..." if len(ppg_alone) > 5 else "")
        said = ("no recording has usable acc_x/y/z: reading PPG alone, for the settings that "
                "read PPG without ACC (ppg_only, ppg_peak)") if len(ppg_alone) == len(recs) else (
                f"{len(ppg_alone)} recording{'s' * (len(ppg_alone) > 1)} without usable "
                f"acc_x/y/z ({names}) read for their PPG alone: the settings that read ACC "
                "neither train on them nor score them")  # fmt: skip
        say(f"{folder}: {said}")
    if flat and say is not None:
        n = len({r.subject for r in recs})
        say(f"{folder}: no subfolders, so each of the {n} files read is one subject (put one "
            "subject's files in a subfolder to keep them together)")  # fmt: skip
    without = sorted({r.subject for r in recs} - {r.subject for r in recs if r.ppg is not None})
    if spectral.has_ppg and without and say is not None:
        say(f"no PPG for subject(s) {', '.join(without)}: the settings that read PPG are "
            "scored on the other subjects' sessions")  # fmt: skip
    return spectral, skipped


def _one_stream(session) -> WristRecording | None:
    """A recording whose ACC and PPG together are unusable, read for its PPG alone, else for
    its ACC alone (an empty or too slow ppg column beside good ACC; until 2026-12-07 such a
    file was skipped, though `predict` with an ACC model reads it); None when neither is."""
    for only in ({"require_acc": False}, {"use_ppg": False}):
        try:
            return wrist_recording(session, require_reference=True, **only)
        except WearjaxDataError:
            pass
    return None


NO_LABEL = (
    "no 8 s window has both a reference HR and gap-free ACC (rows with acc_x/y/z empty, as in "
    "a file that merges streams at several rates, are gaps)"
)
