"""Garmin FIT activity files, read through the vendor's SDK (`garmin-fit-sdk`).

Each running session of a file becomes one `Session` (conventions in `wearjax.data.readers`).
Record fields and their units, as the SDK decodes them (scale and offset applied, 16-bit
`speed`/`altitude` expanded into `enhanced_speed`/`enhanced_altitude` as the FIT profile's
components prescribe, HR from `hr` messages merged into the records):

- `enhanced_speed` (m/s), else `speed`; `enhanced_altitude` (m), else `altitude`;
- `cadence` + `fractional_cadence`: strides/min (FIT's running cadence; steps/min / 2);
- `stance_time_percent` (%), else `stance_time` (ms) over the stride time;
- `vertical_ratio` (%), `vertical_oscillation` (mm), `step_length` (mm);
- `heart_rate` (bpm; outside 25-250 bpm, e.g. 0, counts as missing).

Multisport files: records are split by the `session` messages' start and end times and only
sessions whose sport is running are kept; one that cannot be used (out of time order, shorter
than `min_length_s`: `wearjax.data.validate`) is left out when another can, else the file
raises its error. The subject's height, weight, age and sex come from
the `user_profile` message when the file has one.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np

from wearjax.data.channels import (
    RECORD_FIELDS,
    needs_speed_from_distance,
    running_channels,
    speed_from_distance,
)
from wearjax.data.readers import (
    MAX_GAP_S,
    SUBJECT_RANGES,
    Records,
    read_bytes,
    subject_vector,
    to_session,
    usable_parts,
)
from wearjax.data.types import Session
from wearjax.data.validate import (
    CADENCE_UNIT_FIX,
    MIN_LENGTH_S,
    SPEED_FIELDS,
    check_cadence,
    check_speed,
)
from wearjax.errors import WearjaxFileError

logger = logging.getLogger(__name__)

RUNNING = "running"


def read_fit(
    path: str | Path,
    *,
    runner: str | None = None,
    max_gap_s: float = MAX_GAP_S,
    require_hr: bool = False,
    assume_running: bool = False,
    cadence_unit: str = "strides/min",
    min_length_s: float = MIN_LENGTH_S,
    pauses: str = "stop",
) -> list[Session]:
    """The running sessions of a FIT activity file, one `Session` each, on a 1 Hz grid.

    `runner` defaults to the file's stem; `pauses` as for `data.readers.to_session`.
    `require_hr` raises when a session has no heart rate. A file without `session` or `sport`
    messages (a recording cut short) is read as one running session only when
    `assume_running`. `cadence_unit="steps/min"` reads a device that breaks
    the FIT convention. Raises `WearjaxFileError` (naming the file, the problem and the fix) for
    an empty, non-FIT, truncated or corrupted file, or one with no running records.
    """
    path = Path(path)
    messages = decode_fit(path)
    records = messages.get("record_mesgs", [])
    if not records:
        raise WearjaxFileError(
            path,
            "the FIT file has no records (it is not an activity, or nothing was recorded)",
            "pass an activity file that holds a recording",
        )
    time = _column(records, "timestamp")
    fields = {name: _column(records, name) for name in RECORD_FIELDS if _has(records, name)}
    if _has(records, "distance"):
        fields["distance"] = _column(records, "distance")
    if needs_speed_from_distance(fields):  # a treadmill run: as TCX and CSV read it
        fields = {k: v for k, v in fields.items() if k != "enhanced_speed"}
        fields["speed"] = speed_from_distance(time, fields["distance"])
    channels = running_channels(fields, path=path, units={"cadence": cadence_unit})
    hr = _column(records, "heart_rate")
    subject = _subject(messages.get("user_profile_mesgs", []), path)
    stem = path.stem
    windows = _running_windows(messages, path, assume_running)
    attempts = []
    for name, start, end, closed in windows:
        inside = (time >= start) & ((time < end) | (closed & (time == end)))
        if not inside.any():
            continue
        part = Records(
            time=time[inside] + FIT_EPOCH_UNIX_S,  # Unix time, as TCX and CSV give it
            channels={c: v[inside] for c, v in channels.items()},
            hr=hr[inside],
            distance=fields["distance"][inside] if "distance" in fields else None,
        )
        speeds = {n: v[inside] for n, v in fields.items() if n in SPEED_FIELDS}
        fix = "FIT speed is in m/s: copy the file from the device again"
        check_speed(speeds, part.channels.get("speed"), path, unit="m/s", fix=fix)
        if "cadence" in part.channels:
            check_cadence(part.channels["cadence"], path, CADENCE_UNIT_FIX)
        workout = stem if name is None else f"{stem}#{name}"
        build = functools.partial(
            to_session, part, path=path, runner=stem if runner is None else runner,
            workout=workout, subject=subject, max_gap_s=max_gap_s, min_length_s=min_length_s,
            pauses=pauses,
        )  # fmt: skip
        attempts.append((workout, build))
    sessions = usable_parts(path, attempts, require_hr=require_hr, what="running session")
    if not sessions:
        raise WearjaxFileError(
            path,
            "no record falls inside the file's running session",
            "check the file on the device; its session and record times disagree",
        )
    return sessions


FIT_EPOCH_UNIX_S = 631_065_600
"""FIT's second 0 (1989-12-31 00:00 UTC) in Unix time: sessions keep Unix time, so a run's
`start_time_s` is the same read from FIT, TCX or CSV."""


def decode_fit(path: str | Path) -> dict[str, list[dict]]:
    """All messages of a FIT file, decoded by the vendor's SDK, after checking the container.

    Timestamps stay FIT seconds (since 1989-12-31 UTC); enums are strings (`"running"`).
    """
    try:
        from garmin_fit_sdk import Decoder, Stream
    except ImportError as err:  # a file error: a folder skips the file and reads the rest
        raise WearjaxFileError(
            path, "reading FIT files needs Garmin's SDK", "pip install 'wearjax[data]'"
        ) from err

    path = Path(path)
    data = read_bytes(path)
    if len(data) < 12 or data[0] not in (12, 14) or data[8:12] != b".FIT":
        raise WearjaxFileError(
            path,
            "not a FIT file (its first bytes are not a FIT file header)",
            "pass a .fit activity file as the device wrote it, or the reader for this format",
        )
    expected = data[0] + int.from_bytes(data[4:8], "little") + 2
    if len(data) < expected:
        raise WearjaxFileError(
            path,
            f"truncated FIT file: its header announces {expected} bytes, it has {len(data)}",
            "copy the file from the device or the service again (the transfer was cut short)",
        )
    messages, errors = Decoder(Stream.from_byte_array(bytearray(data))).read(
        convert_datetimes_to_dates=False
    )
    from garmin_fit_sdk.crc_calculator import CrcCalculator

    whole = CrcCalculator.calculate_crc(bytearray(data), 0, expected - 2)
    intact = whole == int.from_bytes(data[expected - 2 : expected], "little")
    if errors and intact and "compressed timestamp" in str(errors[0]).lower():  # valid, unread
        raise WearjaxFileError(
            path,
            "its records use compressed timestamps, which Garmin's FIT SDK does not decode",
            "export the activity as TCX, or as FIT from a service that writes full timestamps",
        )
    if errors:
        problem = (
            "corrupted FIT file (checksum mismatch)"
            if "CRC" in str(errors[0])
            else (f"corrupted FIT file ({errors[0]})")
        )
        raise WearjaxFileError(path, problem, "copy the file from the device or the service again")
    return messages


def _running_windows(
    messages: dict[str, list[dict]], path: Path, assume_running: bool
) -> list[tuple[int | None, float, float, bool]]:
    """(index, start, end, closed) in FIT seconds of each running session; index None for a
    lone one. `closed`: the session holds a record at its end time, unless another session
    starts there (a record on the boundary of two sessions is the later one's, not both's)."""
    sessions = messages.get("session_mesgs", [])
    if not sessions:
        sports = {m.get("sport") for m in messages.get("sport_mesgs", [])}
        if RUNNING in sports or assume_running:
            return [(None, -np.inf, np.inf, True)]
        if sports:
            raise WearjaxFileError(
                path,
                f"no running session (sports: {', '.join(sorted(map(str, sports)))})",
                "wearjax reads runs only; pass a running activity",
            )
        raise WearjaxFileError(
            path,
            "the file has no session message saying which sport it records",
            "if it is a run (a recording cut short, say), read it in Python with "
            "wearjax.data.garmin_fit.read_fit(path, assume_running=True)",
        )
    spans = []
    for s in sessions:
        start, end, elapsed = s.get("start_time"), s.get("timestamp"), s.get("total_elapsed_time")
        if start is None:
            start = end - elapsed if end is not None and elapsed is not None else -np.inf
        if elapsed is not None:
            end = max(end if end is not None else -np.inf, start + elapsed)
        spans.append((float(start), float(np.inf if end is None else end)))
    windows = []
    for k, (s, (start, end)) in enumerate(zip(sessions, spans, strict=True), start=1):
        if s.get("sport") != RUNNING:
            continue
        closed = not any(start < other <= end for j, (other, _) in enumerate(spans, 1) if j != k)
        windows.append((k if len(sessions) > 1 else None, start, end, closed))
    if not windows:
        sports = sorted({str(s.get("sport")) for s in sessions})
        raise WearjaxFileError(
            path,
            f"no running session (sports: {', '.join(sports)})",
            "wearjax reads runs only; pass a running activity",
        )
    return windows


def _has(records: list[dict], name: str) -> bool:
    return any(r.get(name) is not None for r in records)


def _column(records: list[dict], name: str) -> np.ndarray:
    """One field over all records as float64, NaN where absent or not a scalar number."""
    return np.array([_number(r.get(name)) for r in records], np.float64)


def _number(value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return np.nan
    return float(value)


def _subject(profiles: list[dict], path: Path) -> np.ndarray:
    """The watch's user profile. A value outside `SUBJECT_RANGES` (0: never entered on the
    watch, or a corrupt one) is left unset, as if the profile lacked it, with a warning: the
    run is still usable, and an unset value is filled downstream, which says so."""
    if not profiles:
        return subject_vector(path=path)
    p = profiles[0]
    gender = p.get("gender")
    values = {"height_m": p.get("height"), "weight_kg": p.get("weight"), "age_years": p.get("age")}
    for field, value in values.items():
        low, high = SUBJECT_RANGES[field]
        if value is not None and not low <= _number(value) <= high:
            logger.warning("%s: the watch's user profile gives %s %g, outside %g-%g; left unset",
                           path, field, _number(value), low, high)  # fmt: skip
            values[field] = None
    values["sex_male"] = {"male": 1.0, "female": 0.0}.get(gender) if gender else None
    return subject_vector(values, path=path, ranges=SUBJECT_RANGES)
