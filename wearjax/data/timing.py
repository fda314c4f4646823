"""Sampling times: the rate of a regular time column, and reference values on a rate's grid.

`sampling_rate` accepts times within 1% of a step (or the column's printed resolution) of
`t0 + k / rate`; `reference_hr` places sparse reference values (one per 8 s window every 2 s,
with gaps) at `k / rate` seconds from the recording's start. Both raise `WearjaxFileError`
naming the file, the problem and the fix.
"""

from __future__ import annotations

import numpy as np

from wearjax.data.readers import HR_RANGE_BPM, MAX_SESSION_S
from wearjax.data.types import Signal
from wearjax.errors import WearjaxFileError

MAX_JITTER = 0.01
"""Largest deviation of a sample time from the regular grid, as a fraction of the step."""

MAX_SAMPLE_STEP_S = 1.0
"""The slowest sampled stream read (1 Hz): a median step of 10 is 100 Hz timed in milliseconds."""

MAX_REFERENCE_HZ = 1000.0
"""A reference-HR grid may hold up to `MAX_SESSION_S` seconds at this rate (an ECG-rate `hr_ref`
column); a longer one (times 1e-9 s apart, a corrupt time) would not fit in memory."""


def sampling_rate(time: np.ndarray, decimals: int | None, rate_hz: float | None, path) -> float:
    """The sampling rate of `time [T]` seconds (one row per sample), checked to be regular."""
    if time.size < 2:
        raise WearjaxFileError(
            path, "a single sample, so no sampling rate", "record more than one row"
        )
    bad = np.flatnonzero(~np.isfinite(time))
    if bad.size:
        raise WearjaxFileError(path, f"line {bad[0] + 2} has no time", "give every row a time")
    with np.errstate(over="ignore"):  # times near 1e308 s overflow to inf: refused below
        dt = np.diff(time)
        span = time[-1] - time[0]
    resolution = 10.0**-decimals if decimals else 0.0  # times are printed rounded to this
    coarse = resolution > 0 and 0 < span and resolution * (1 + 1e-6) >= 0.5 * span / (time.size - 1)
    back = np.flatnonzero(dt <= 0)
    if back.size and coarse and np.all(dt >= -resolution * (1 + 1e-6)):
        if rate_hz is None:  # rows that repeat a printed time are samples, not duplicates
            raise WearjaxFileError(
                path,
                f"the time column is printed to {resolution:g} s, too coarse for samples "
                f"{span / (time.size - 1):.3g} s apart (line {back[0] + 3} repeats a time)",
                "export the times with more decimals, or pass the file's rate_hz",
            )
        back = back[:0]  # its grid is checked against rate_hz, to the printed resolution
        # (so fewer lost samples than the resolution spans cannot be seen: the file hides them)
    if back.size:
        i = back[0]
        if dt[i] == 0:
            problem = f"duplicate timestamp {time[i]:g} s at lines {i + 2} and {i + 3}"
            raise WearjaxFileError(path, problem, "drop the repeated rows")
        problem = (
            f"timestamps go back in time at line {i + 3} ({time[i + 1]:g} s after {time[i]:g} s)"
        )
        raise WearjaxFileError(path, problem, "sort the rows by time")
    step = float(np.median(dt))
    if MAX_SAMPLE_STEP_S < step < np.inf:  # (an infinite span is refused below)
        raise WearjaxFileError(
            path,
            f"samples are a median {step:g} apart in the time column, where a wearable sensor "
            "samples many times a second",
            "the times look like milliseconds: give them in seconds"
            if step < 1000
            else "check the unit of the time column (seconds)",
        )
    if rate_hz is None and step == 1.0 and np.all(time == np.round(time)):
        # whole numbers one apart: a 1 Hz sensor timed in seconds, or, far more often, a
        # 1000 Hz one (ECG, ACC) timed in milliseconds, which read as seconds would last
        # 1000 times too long; the file cannot say which, so the user does
        raise WearjaxFileError(
            path,
            "the times are whole numbers 1 apart: 1 Hz in seconds, or 1000 Hz in milliseconds",
            "give the times in seconds (t / 1000 for milliseconds), or pass rate_hz=1 if "
            "the sensor samples once a second",
        )
    if not span <= MAX_SESSION_S:
        raise WearjaxFileError(
            path,
            f"the times span {span / 3600:.3g} h, longer than {MAX_SESSION_S // 3600} h",
            "times are seconds: check the time column, or split the recording",
        )

    def fits(rate: float) -> bool:
        offset = time - time[0] - np.arange(time.size) / rate
        tolerance = max(MAX_JITTER / rate, resolution) * (1 + 1e-6)
        return bool(np.all(np.abs(offset - np.median(offset)) <= tolerance))

    # the least-squares step, not the ends' mean: each printed time is off by up to half its
    # resolution, which over a short file (100 rows at 512 Hz timed to the millisecond) moves
    # the ends' mean a whole Hz, to a rounder rate that the resolution's tolerance then accepts
    k = np.arange(time.size) - (time.size - 1) / 2
    mean_step = float(np.dot(k, time - time[0]) / np.dot(k, k))
    inferred = next((r for r in _candidates(1.0 / mean_step) if fits(r)), None)
    if inferred is None:
        step = np.median(dt)
        bad = np.flatnonzero(np.abs(dt - step) > max(MAX_JITTER * step, resolution) * (1 + 1e-6))
        where = (
            f"the step to line {bad[0] + 3} ({time[bad[0] + 1]:g} s) is {dt[bad[0]]:.6g} s, the "
            f"median step {step:.6g} s"
            if bad.size
            else "the times drift off every regular grid"
        )
        raise WearjaxFileError(
            path,
            f"irregular sampling: {where} (more than 1% apart)",
            "resample to a regular grid, or split the file at gaps",
        )
    if rate_hz is not None and (
        abs(inferred - rate_hz) > MAX_JITTER * rate_hz or not fits(rate_hz)
    ):
        raise WearjaxFileError(
            path,
            f"rate_hz={rate_hz:g} but the times are sampled at {inferred:g} Hz",
            "pass the file's true rate, or omit rate_hz to infer it",
        )
    return inferred if rate_hz is None else float(rate_hz)


def _candidates(rate: float) -> list[float]:
    """`rate` rounded to 0, 1, ... 6 decimals where within 1% of it, then `rate` itself."""
    rounded = [round(rate, d) for d in range(7)]
    return [r for r in rounded if r > 0 and abs(r - rate) <= MAX_JITTER * rate] + [rate]


def reference_hr(times, values, hr_rate_hz, path) -> Signal | None:
    """Reference HR values at `times [R]` s from the start on a grid of `1 / hr_rate_hz` s."""
    ok = np.isfinite(values) & np.isfinite(times)
    if not ok.any():
        return None
    t, v = times[ok], values[ok]
    far = t[np.argmax(np.abs(t))]
    if abs(far) > MAX_SESSION_S:  # its grid would not fit in memory (or an int64)
        raise WearjaxFileError(
            path,
            f"reference HR at {far:g} s is more than {MAX_SESSION_S // 3600} h "
            f"{'before' if far < 0 else 'after'} the recording's start",
            "put the reference on the recording's clock (seconds; the recording's own times)",
        )

    def off_grid(rate: float) -> np.ndarray:
        k = t * rate
        return np.flatnonzero(np.abs(k - np.floor(k + 0.5)) > MAX_JITTER)

    if hr_rate_hz is None:  # the shortest step, rounded where the times allow
        steps = np.diff(np.sort(t))
        if not np.any(steps > 0):
            raise WearjaxFileError(
                path, "cannot tell the reference HR's rate from its times", "pass hr_rate_hz"
            )
        with np.errstate(over="ignore"):  # a step of 1e-320 s: no rate
            raw = 1.0 / steps[steps > 0].min()
        if not np.isfinite(raw):
            raise WearjaxFileError(
                path, "cannot tell the reference HR's rate from its times", "pass hr_rate_hz"
            )
        hr_rate_hz = next(r for r in _candidates(raw) if r == raw or not off_grid(r).size)
    if t.max() * hr_rate_hz > MAX_SESSION_S * MAX_REFERENCE_HZ:  # a grid too long to hold
        raise WearjaxFileError(
            path,
            f"reference HR at {t.max():g} s lies {t.max() * hr_rate_hz:.3g} values into a grid "
            f"of {hr_rate_hz:g} Hz, longer than {MAX_SESSION_S // 3600} h at "
            f"{MAX_REFERENCE_HZ:g} Hz",
            "pass the reference's true hr_rate_hz, or check its times",
        )
    index = np.floor(t * hr_rate_hz + 0.5).astype(np.int64)
    off = off_grid(hr_rate_hz)
    if off.size:
        raise WearjaxFileError(
            path,
            f"reference HR at {t[off[0]]:g} s is off the grid of {1 / hr_rate_hz:g} s steps",
            "give reference times as multiples of 1 / hr_rate_hz from the recording's start",
        )
    if index.min() < 0:
        raise WearjaxFileError(
            path,
            f"reference HR at {t[np.argmin(index)]:g} s is before the recording starts",
            "put the reference on the recording's clock",
        )
    order = np.argsort(index, kind="stable")
    clash = np.flatnonzero(np.diff(index[order]) == 0)
    if clash.size:
        a, b = t[order[clash[0]]], t[order[clash[0] + 1]]
        raise WearjaxFileError(
            path, f"two reference HR values at {index[order[clash[0]]] / hr_rate_hz:g} s ({a:g} "
            f"and {b:g} s, on a {hr_rate_hz:g} Hz grid)", "keep one value per time",
        )  # fmt: skip
    out = np.full(index.max() + 1, np.nan)
    out[index] = v
    return reference_signal(out, hr_rate_hz, path)


def reference_signal(hr: np.ndarray, rate: float, path) -> Signal:
    low, high = HR_RANGE_BPM
    with np.errstate(invalid="ignore"):
        mask = np.isfinite(hr) & (hr >= low) & (hr <= high)
    if not (np.isfinite(rate) and rate > 0):
        raise WearjaxFileError(path, f"hr_rate_hz is {rate}", "give a positive rate in Hz")
    with np.errstate(over="ignore"):  # HR beyond float32 is out of range, so masked: inf
        values = hr[:, None].astype(np.float32)
    return Signal(values, rate, mask, ("hr",), ("bpm",))
