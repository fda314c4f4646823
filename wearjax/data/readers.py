"""What every reader shares: records to a 1 Hz grid (vendor fields to canonical channels are
`wearjax.data.channels`).

The format readers (`wearjax.data.garmin_fit`, `.tcx`, `.csv`) turn a file into `Records`: one
row per record as the source wrote it, at irregular times, with channels already in the
canonical units of `CHANNEL_UNITS`. `to_session` then puts them on a 1 Hz grid. Its conventions
hold for every source:

- **Grid.** Second k of a session is the first kept record's time plus k s; every record goes
  to its nearest second. A session spans the first to the last kept record.
- **Time order.** Where timestamps go back (a clock stepping back, a record a glitch dates
  ahead), the fewest records are dropped that leave the rest in time order
  (`wearjax.data.validate.in_time_order`), counted in `Session.metadata` as
  `records_out_of_order`. Timestamps that mostly go backwards are refused
  (`wearjax.data.validate.check_time_order`).
- **Length.** A session shorter than `min_length_s` (`MIN_LENGTH_S`, 60 s) is refused.
- **Duplicates.** Records that land on the same second (a duplicated timestamp, or sub-second
  samples) are averaged, quantity by quantity, over their finite values.
- **Channels** are each filled from their own observations: linearly interpolated between
  observations at most `max_gap_s` apart (10 s by default), held at the earlier value
  (zero-order hold, nothing interpolated) across longer gaps such as a pause, NaN before the
  first and after the last observation. A channel the source never observed in a session is
  left out of `Session.channels`; FIT's invalid values (0xFF, 0xFFFF, ...) arrive absent.
- **Pauses.** A watch stops recording when its runner stops (auto-pause, a traffic light), and
  HR falls through the stop. With `pauses="stop"` (the default), a gap between records longer
  than `max_gap_s` over which the recorded distance advanced less than `STILL_SPEED_MS` on
  average is a stop: speed and cadence are 0 inside it (the records either side keep their
  values), counted in `Session.metadata` as `stopped_s`. The running dynamics, which no step
  defines, are held; without a distance on both sides of a gap, or with a distance the speed
  contradicts (in km, or never advancing), every channel is held.
  `pauses="hold"` holds every channel across every gap, as the readers did until 2026-12-06.
- **HR and VO2** are the targets: a record without a value, or with HR outside 25-250 bpm
  (the sensor sentinels 0 and 255, dropouts), is missing (NaN, `mask` False) and never
  filled; how many HR values were out of range is logged as a warning and kept in
  `Session.metadata` as `hr_out_of_range`. Seconds with no record at all are filled only
  inside a short gap: when the records either side are at most `max_gap_s` apart and both
  have a value, linearly between them, counting as observed (`mask` True; a device recording
  every few seconds). Across a longer gap (a pause) HR and VO2 are NaN with `mask`/`vo2_mask`
  False. VO2 comes breath by breath, so its gaps are between breaths: a second without a VO2
  value between two breaths at most `max_gap_s` apart is filled linearly even where another
  record (an HR row of the same export) fell in it (until 2026-12-07 such seconds stayed
  missing, and the VO2 task held the last breath there).
- **Cadence** is stored in strides/min (one stride = two steps; FIT's running cadence), with
  FIT's `fractional_cadence` added. A source in steps/min is halved; a session declared in
  strides/min whose median cadence exceeds 130 is refused as probably in steps/min.
- **Speed** is in m/s; negative speeds, and a median moving speed above 8 m/s (km/h read as
  m/s), are refused (`wearjax.data.validate.check_speed`). A run with a distance and no
  speed value takes its speed from the distance, in every format.
- **Stance time** is stored as a percentage of the stride: a source's percentage as is, else
  stance time in ms over the stride time, `stance_ms / (60000 / cadence) * 100`, using the same
  record's cadence in strides/min.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import numpy as np
from jaxtyping import Float

from wearjax.data.types import (
    SESSION_CHANNEL_UNITS,
    START_TIME,
    SUBJECT_FIELDS,
    Session,
)
from wearjax.data.validate import (
    MIN_LENGTH_S,
    check_length,
    check_magnitude,
    check_time_order,
    in_time_order,
)
from wearjax.errors import WearjaxFileError

logger = logging.getLogger(__name__)

MAX_GAP_S = 10.0
"""Default longest gap (s) between observations that is interpolated; longer ones are masked."""

MAX_SESSION_S = 48 * 3600
"""Longest session accepted; a longer span means corrupt timestamps."""

MAX_MEDIAN_STEP_S = 60.0
"""Longest median step between records; sparser records are times in another unit."""

MAX_PAUSE_S = 3600.0
"""Longest gap between two records of one session; a longer one joins two recordings (or a
clock that jumped), whose padding would dominate the training segments drawn from the file."""

STILL_SPEED_MS = 0.5
"""Mean speed (m/s, from the distance) under which a pause is a stop: a slow walk is 1.3 m/s,
and a standing runner's GPS wanders a few metres."""

PAUSES = ("stop", "hold")
"""How `to_session` fills a pause: "stop" (speed and cadence 0 where the distance stood
still) or "hold" (every channel held)."""

STOPPED_CHANNELS = ("speed", "cadence")
"""The channels a stop sets to 0."""

HR_RANGE_BPM = (25.0, 250.0)
"""Heart rates outside this range are missing: the sentinels 0 and 255, and sensor dropouts."""


def hr_in_range(hr: np.ndarray) -> np.ndarray:
    """`hr` (bpm, any shape) within `HR_RANGE_BPM`: False for NaN and what is missing."""
    return (hr >= HR_RANGE_BPM[0]) & (hr <= HR_RANGE_BPM[1])


class Records(NamedTuple):
    """Samples as a source wrote them: `time [R]` in seconds (any epoch), `channels` named as
    in `SESSION_CHANNEL_UNITS` and in its units, `hr [R]` in bpm and `vo2 [R]` in mL/min, NaN
    where absent; `distance [R]` the cumulative distance in m (NaN where absent), which tells a
    stop from a pause on the move.
    """

    time: Float[np.ndarray, " record"]
    channels: dict[str, Float[np.ndarray, " record"]]
    hr: Float[np.ndarray, " record"]
    vo2: Float[np.ndarray, " record"] | None = None
    distance: Float[np.ndarray, " record"] | None = None


SUBJECT_RANGES = {"height_m": (0.5, 2.5), "weight_kg": (20.0, 300.0), "age_years": (5.0, 110.0)}
"""What a file's or manifest's subject values may hold: a height of 180 is centimetres in a
metres column, an age of 1985 a year of birth."""


def subject_vector(
    values: Mapping[str, float | None] | None = None, *, path: str | Path = "subject",
    ranges: Mapping[str, tuple[float, float]] | None = None,
) -> Float[np.ndarray, " 4"]:  # fmt: skip
    """`SUBJECT_FIELDS` scalars from a mapping, NaN where absent; a value beyond float32's range,
    or outside its `ranges` entry (e.g. `SUBJECT_RANGES`), raises `WearjaxFileError` naming
    `path`."""
    values = values or {}
    for f in SUBJECT_FIELDS:
        if values.get(f) is not None:
            check_magnitude(values[f], f"subject {f}", path)
            low, high = (ranges or {}).get(f, (-np.inf, np.inf))
            if not low <= float(values[f]) <= high:
                unit = f.rsplit("_", 1)[1]
                raise WearjaxFileError(
                    path, f"{f} is {values[f]:g}, outside {low:g}-{high:g} {unit}",
                    f"give the subject's {f.rsplit('_', 1)[0]} in {unit}",
                )  # fmt: skip
    return np.array(
        [np.nan if values.get(f) is None else float(values[f]) for f in SUBJECT_FIELDS],
        np.float32,
    )


def to_session(
    records: Records,
    *,
    path: str | Path,
    runner: str,
    workout: str,
    subject: Float[np.ndarray, " 4"] | None = None,
    max_gap_s: float = MAX_GAP_S,
    min_length_s: float = MIN_LENGTH_S,
    pauses: str = "stop",
) -> Session:
    """Records on a 1 Hz grid as a `Session`, following the module's conventions (`pauses`
    one of `PAUSES`).

    Channels appear in `SESSION_CHANNEL_UNITS` order. Raises `WearjaxFileError` when no record
    has a timestamp, the timestamps mostly go backwards, or the records span more than
    `MAX_SESSION_S` or less than `min_length_s`.
    """
    if pauses not in PAUSES:
        raise ValueError(f"pauses must be one of {PAUSES}, got {pauses!r}")
    t = np.asarray(records.time, np.float64)
    n = t.shape[0]
    finite = np.isfinite(t)
    check_time_order(t, path)
    keep = in_time_order(t)  # the most records that stay in time order
    if not keep.any():
        raise WearjaxFileError(
            path, "no record has a timestamp", "check that the file holds a recording"
        )
    dropped = int(finite.sum() - keep.sum())
    if dropped:
        logger.info("%s: dropped %d records out of time order", path, dropped)  # in metadata
    t = t[keep]
    with np.errstate(over="ignore"):  # times near 1e308 s overflow to inf: refused just below
        offset = t - t[0]
    # checked in float first: an absurd span (1e20 s) would overflow the integer grid
    length = int(np.floor(offset[-1] + 0.5)) + 1 if offset[-1] <= MAX_SESSION_S else None
    step = np.diff(t)
    median = float(np.median(step)) if step.size else 0.0
    if median > MAX_MEDIAN_STEP_S:
        ms = 500.0 <= median <= 2000.0
        raise WearjaxFileError(
            path,
            f"records are a median {median:g} s apart, where a watch records every 1-10 s",
            "the times look like milliseconds: give them in seconds"
            if ms
            else "check the unit of the time column",
        )
    if length is None or length > MAX_SESSION_S:
        raise WearjaxFileError(
            path,
            f"records span {(offset[-1] + 1) / 3600:.3g} h, longer than {MAX_SESSION_S // 3600} h",
            "the timestamps are probably corrupt; split or repair the recording",
        )
    if step.size and step.max() > MAX_PAUSE_S:
        i = int(np.argmax(step))
        raise WearjaxFileError(
            path,
            f"records {i + 1} and {i + 2} (of those kept in time order) are "
            f"{step[i] / 3600:.3g} h apart, longer than a pause of {MAX_PAUSE_S / 3600:g} h",
            "split the file there into two recordings",
        )
    second = np.floor(offset + 0.5).astype(np.int64)
    check_length(length, int(keep.sum()), path, min_length_s)

    recorded = np.flatnonzero(np.bincount(second, minlength=length))

    def per_second(values: np.ndarray | None, name: str) -> np.ndarray:
        if values is None:
            return np.full(length, np.nan)
        v = np.asarray(values, np.float64)
        if v.shape != (n,):
            raise WearjaxFileError(
                path, f"a field has {v.shape} values for {n} records", "report this as a bug"
            )
        check_magnitude(v[keep], name, path)
        return _mean_per_second(v[keep], second, length)

    hr_values = np.asarray(records.hr, np.float64)
    in_range = hr_in_range(hr_values)
    out_of_range = int(np.sum(np.isfinite(hr_values) & ~in_range))
    metadata = ((START_TIME, repr(float(t[0]))),)  # second 0 on the file's clock
    metadata += (("hr_out_of_range", str(out_of_range)),) if out_of_range else ()
    metadata += (("records_out_of_order", str(dropped)),) if dropped else ()
    if out_of_range:
        logger.info(  # also in the metadata, which the CLI prints once (reader_notes)
            "%s: %d heart rates outside %g-%g bpm are masked (not used)",
            path, out_of_range, *HR_RANGE_BPM,
        )  # fmt: skip
    hr_values = np.where(in_range, hr_values, np.nan)
    hr = _fill_unrecorded(per_second(hr_values, "heart rate"), recorded, max_gap_s)
    vo2 = per_second(records.vo2, "VO2")
    breaths = np.flatnonzero(np.isfinite(vo2))  # VO2's own records, not every row's
    if breaths.size:
        vo2 = _fill_unrecorded(vo2, breaths, max_gap_s)
    names = [c for c in SESSION_CHANNEL_UNITS if c in records.channels]
    columns = [_fill_channel(per_second(records.channels[c], c), max_gap_s) for c in names]
    if pauses == "stop" and records.distance is not None:
        distance = per_second(records.distance, "distance")
        speed = columns[names.index("speed")] if "speed" in names else None
        stopped = _stopped(distance, recorded, max_gap_s, speed)
        columns = [
            np.where(stopped & np.isfinite(col), 0.0, col) if c in STOPPED_CHANNELS else col
            for c, col in zip(names, columns, strict=True)
        ]
        n_stopped = int(stopped.sum())
        metadata += (("stopped_s", str(n_stopped)),) if n_stopped else ()
    present = [i for i, col in enumerate(columns) if np.isfinite(col).any()]
    x = np.stack([columns[i] for i in present], axis=1) if present else np.zeros((length, 0))
    return Session(
        x=x.astype(np.float32),
        hr=hr.astype(np.float32),
        vo2=vo2.astype(np.float32),
        mask=np.isfinite(hr),
        vo2_mask=np.isfinite(vo2),
        subject=subject_vector() if subject is None else np.asarray(subject, np.float32),
        runner=runner,
        channels=tuple(names[i] for i in present),
        source=str(path),
        workout=workout,
        metadata=metadata,
    )


def check_hr(session: Session, path: str | Path) -> Session:
    """The session itself, or a `WearjaxFileError` when it has no heart rate at all."""
    if not np.any(session.mask):
        raise WearjaxFileError(
            path,
            f"session {session.workout!r} has no heart rate",
            "record with an HR sensor, or read with require_hr=False to use it without HR",
        )
    return session


def read_bytes(path: str | Path) -> bytes:
    """The file's bytes; `WearjaxFileError` when it is missing, unreadable or empty."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise WearjaxFileError(
            path, f"cannot be read ({err.strerror})", "check the path and its permissions"
        ) from err
    if not data:
        raise WearjaxFileError(
            path, "the file is empty (0 bytes)", "copy the recording again or remove the file"
        )
    return data


def _mean_per_second(
    values: Float[np.ndarray, " record"], second: np.ndarray, length: int
) -> Float[np.ndarray, " time"]:
    """Mean of the finite values landing on each second; NaN where none does."""
    ok = np.isfinite(values)
    total = np.bincount(second[ok], weights=values[ok], minlength=length)
    count = np.bincount(second[ok], minlength=length)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _fill_channel(v: Float[np.ndarray, " time"], max_gap_s: float) -> Float[np.ndarray, " time"]:
    """Interpolate between observations at most `max_gap_s` apart; hold across longer gaps."""
    seen = np.flatnonzero(np.isfinite(v))
    if seen.size == 0:
        return v
    t = np.arange(v.shape[0])
    before, after, inside = _neighbours(seen, t)
    short = inside & (after - before <= max_gap_s)
    return np.where(short, np.interp(t, seen, v[seen]), np.where(inside, v[before], np.nan))


def _fill_unrecorded(
    v: Float[np.ndarray, " time"], recorded: np.ndarray, max_gap_s: float
) -> Float[np.ndarray, " time"]:
    """Fill seconds without a record, linearly between the records either side, when those are
    at most `max_gap_s` apart and both have a value; recorded seconds keep their value or NaN.
    """
    t = np.arange(v.shape[0])
    before, after, inside = _neighbours(recorded, t)
    va, vb = v[before], v[after]
    fill = inside & np.isnan(v) & (after - before <= max_gap_s) & np.isfinite(va) & np.isfinite(vb)
    span = np.maximum(after - before, 1)
    return np.where(fill, va + (vb - va) * (t - before) / span, v)


def _stopped(
    distance: Float[np.ndarray, " time"],
    recorded: np.ndarray,
    max_gap_s: float,
    speed: Float[np.ndarray, " time"] | None = None,
) -> np.ndarray:
    """Seconds inside a gap between records longer than `max_gap_s` over which the distance
    (the last finite value at or before the gap and the first at or after it, each from the
    gap's own side: no nearer than the gaps beside it) advanced by 0 to `STILL_SPEED_MS` m/s on
    average; a distance that goes back (a reset) says nothing. Nor does a distance that
    disagrees with the recorded `speed` (held across gaps, as `_fill_channel` gives it) by more
    than a factor of 2 over the seconds outside the gaps, once they run 100 m or more: one in
    km, or one that never advances."""
    n = distance.shape[0]
    seen = np.flatnonzero(np.isfinite(distance))
    gaps = np.flatnonzero(np.diff(recorded) > max_gap_s)
    if seen.size == 0 or gaps.size == 0:
        return np.zeros(n, bool)
    start, end = recorded[gaps], recorded[gaps + 1]
    before = seen[np.clip(np.searchsorted(seen, start, side="right") - 1, 0, seen.size - 1)]
    after = seen[np.clip(np.searchsorted(seen, end, side="left"), 0, seen.size - 1)]
    side_from = np.concatenate([[recorded[0]], end[:-1]])  # the gap before this one ends
    side_to = np.concatenate([start[1:], [recorded[-1]]])  # the gap after it starts
    known = (side_from <= before) & (before <= start) & (end <= after) & (after <= side_to)
    advance = distance[after] - distance[before]
    still = known & (advance > -1.0) & (advance < STILL_SPEED_MS * (after - before))
    edges = np.zeros(n + 1, np.int64)  # +1 where a gap's inside begins, -1 after it
    np.add.at(edges, start + 1, 1)
    np.add.at(edges, end, -1)
    inside = np.cumsum(edges[:-1]) > 0
    if speed is not None:
        span = (np.arange(n) >= seen[0]) & (np.arange(n) <= seen[-1]) & ~inside
        ran = float(np.nansum(np.where(span, speed, 0.0)))
        ratio = (distance[seen[-1]] - distance[seen[0]]) / max(ran, 1e-9)
        if ran >= 100.0 and not 0.5 <= ratio <= 2.0:
            return np.zeros(n, bool)
    edges = np.zeros(n + 1, np.int64)
    np.add.at(edges, start[still] + 1, 1)
    np.add.at(edges, end[still], -1)
    return np.cumsum(edges[:-1]) > 0


def _neighbours(seen: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each second: the last of the sorted `seen` seconds at or before it, the first at or
    after it, and whether it lies between the first and last of them."""
    before = seen[np.clip(np.searchsorted(seen, t, side="right") - 1, 0, seen.size - 1)]
    after = seen[np.clip(np.searchsorted(seen, t, side="left"), 0, seen.size - 1)]
    return before, after, (t >= seen[0]) & (t <= seen[-1])


def usable_parts(path: str | Path, attempts, *, require_hr: bool, what: str) -> list[Session]:
    """The sessions of a file with several parts (FIT sessions, TCX activities).

    `attempts` are `(workout, build)` pairs, `build()` giving the part's `Session` or raising
    `WearjaxFileError` (`to_session`'s refusals). A refused part is left out with a warning
    naming it; when no part is usable the first refusal is raised, so a one-part file fails
    with its own reason. With `require_hr`, sessions go through `check_hr`.
    """
    sessions, refused = [], []
    for workout, build in attempts:
        try:
            session = build()
            sessions.append(check_hr(session, path) if require_hr else session)
        except WearjaxFileError as err:  # a part without HR is refused like a broken one
            refused.append((workout, err))
    if refused and not sessions:
        raise refused[0][1]
    for workout, err in refused:
        logger.warning("%s: left out %s %s: %s", path, what, workout, err.problem)
    return sessions
