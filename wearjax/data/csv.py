"""CSV recordings: FIT-to-CSV running exports and cardiopulmonary exercise tests (CPET).

Running exports (e.g. `../shared/data/running-csv`) name their columns as FIT record fields:
`timestamp` (required: ISO 8601, UTC when it names no zone, or seconds), `heart_rate` (bpm),
`enhanced_speed`/`speed` (m/s), `enhanced_altitude`/`altitude` (m), `cadence` +
`fractional_cadence` (strides/min), `stance_time_percent` (%) or `stance_time` (ms),
`vertical_ratio` (%), `vertical_oscillation` (mm), `step_length` (mm) and `distance` (m: the
speed when there is no speed column, and whether a pause is a stop), matched whatever their
case. Other columns are
ignored. Any CSV may be UTF-8 or UTF-16 and separated by `,`, `;` or tabs (`read_table`).
Declare other units with `units`, e.g. `{"cadence": "steps/min", "speed": "km/h"}` (see
`UNIT_FACTORS`). Rows must run forward in time and span at least `min_length_s` (60 s);
negative speeds, and speeds whose moving median is above 8 m/s (km/h read as m/s), are refused
(`wearjax.data.validate`).

CPET exports in pyoxynet's layout: `time` (s), `VO2_I` (mL/min) and `HR_I` (bpm) are required;
`age` (years), `height` (m; values above 3 are taken as cm), `weight` (kg) and `gender`
(pyoxynet's -1 = male, 1 = female, or M/F) fill the subject. They have no running channels.
Grid conventions for both are those of `wearjax.data.readers`.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime
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
    check_hr,
    read_bytes,
    subject_vector,
    to_session,
)
from wearjax.data.types import Session
from wearjax.data.validate import MIN_LENGTH_S, MIN_VO2_ML_MIN, check_cadence, check_speed
from wearjax.errors import WearjaxFileError

RUNNING_COLUMNS = ("heart_rate", *RECORD_FIELDS, "distance")
"""Running-CSV columns: FIT record field names (the watch exports), HR and distance."""
CPET_COLUMNS = ("time", "VO2_I", "HR_I")


def read_csv(
    path: str | Path,
    *,
    runner: str | None = None,
    max_gap_s: float = MAX_GAP_S,
    require_hr: bool = False,
    min_length_s: float = MIN_LENGTH_S,
    units: dict[str, str] | None = None,
    pauses: str = "stop",
) -> Session:
    """A CPET export when the header has `VO2_I`, else a running export (read with `units` and
    `pauses`, as `data.readers.to_session` fills them)."""
    header = decode_text(read_bytes(path), path).split("\n", 1)[0]  # UTF-16 too
    if "VO2_I" not in header:
        return read_running_csv(
            path, runner=runner, max_gap_s=max_gap_s, require_hr=require_hr,
            min_length_s=min_length_s, units=units, pauses=pauses,
        )  # fmt: skip
    return read_cpet_csv(
        path, runner=runner, max_gap_s=max_gap_s, require_hr=require_hr, min_length_s=min_length_s
    )


def read_running_csv(
    path: str | Path,
    *,
    runner: str | None = None,
    max_gap_s: float = MAX_GAP_S,
    require_hr: bool = False,
    units: dict[str, str] | None = None,
    min_length_s: float = MIN_LENGTH_S,
    pauses: str = "stop",
) -> Session:
    """A FIT-to-CSV running export as one `Session` on a 1 Hz grid.

    `runner` defaults to the file's stem; `require_hr` raises when there is no heart rate;
    `pauses` as for `data.readers.to_session`.
    Raises `WearjaxFileError` for an empty file, a missing `timestamp` column, no known column,
    an unreadable value, unknown `units`, rows out of time order, a recording shorter than
    `min_length_s`, negative speeds, or speed in km/h read as m/s.
    """
    path = Path(path)
    header, rows = read_table(path)
    names = ("timestamp", *RUNNING_COLUMNS)  # matched whatever their case (Heart_Rate)
    header = [h.lower() if h.lower() in names else h for h in header]
    twice = next((h for i, h in enumerate(header) if h in names and h in header[:i]), None)
    if twice is not None:
        raise WearjaxFileError(
            path, f"two columns are named {twice!r} (ignoring case)", "rename or drop one"
        )
    _require(header, ("timestamp",), path, "name the time column 'timestamp'")
    known = [c for c in RUNNING_COLUMNS if c in header]
    if not known:
        raise WearjaxFileError(
            path,
            f"no heart rate or running column (found {header})",
            f"name the columns as FIT record fields: {list(RUNNING_COLUMNS)}",
        )
    time = _column(header, rows, "timestamp", path, parse=_seconds)
    fields = {c: _column(header, rows, c, path) for c in known}
    if needs_speed_from_distance(fields):  # no speed column, or an empty one
        fields = {k: v for k, v in fields.items() if k != "enhanced_speed"}
        fields["speed"] = speed_from_distance(time, fields["distance"])
        # metres over seconds: m/s whatever unit --speed-unit declares for speed columns
        units = {k: v for k, v in (units or {}).items() if k != "speed"} or None
    channels = running_channels(fields, path=path, units=units)
    check_speed(
        fields,
        channels.get("speed"),
        path,
        unit=(units or {}).get("speed", "m/s"),
        fix='export speed in m/s, or read the file with units={"speed": "km/h"} (read_running_csv; '
        "--speed-unit km/h on the command line)",
    )
    if "cadence" in channels and (units or {}).get("cadence", "strides/min") == "strides/min":
        fix = 'pass units={"cadence": "steps/min"} (--cadence-unit steps/min on the command line)'
        check_cadence(channels["cadence"], path, fix)
    session = to_session(
        Records(
            time=time,
            channels=channels,
            hr=fields.get("heart_rate", time * np.nan),
            distance=fields.get("distance"),
        ),
        path=path,
        runner=path.stem if runner is None else runner,
        workout=path.stem,
        max_gap_s=max_gap_s,
        min_length_s=min_length_s,
        pauses=pauses,
    )
    return check_hr(session, path) if require_hr else session


def read_cpet_csv(
    path: str | Path,
    *,
    runner: str | None = None,
    max_gap_s: float = MAX_GAP_S,
    require_hr: bool = False,
    min_length_s: float = MIN_LENGTH_S,
) -> Session:
    """A CPET export (pyoxynet layout) as one `Session` with HR and VO2 and no channels.

    `runner` defaults to the file's stem (one subject per test). HR outside 25-250 bpm is
    missing, so a test whose HR is all zero has no HR (and raises with `require_hr`); VO2 under
    `MIN_VO2_ML_MIN` is missing, and the test starts at its first VO2. A test shorter than
    `min_length_s` is refused.
    """
    path = Path(path)
    header, rows = read_table(path)
    _require(header, CPET_COLUMNS, path, "export the test with pyoxynet's column names")
    time = _column(header, rows, "time", path)
    subject = {}
    for field, column in (("age_years", "age"), ("height_m", "height"), ("weight_kg", "weight")):
        if column in header:
            subject[field] = _first_finite(_column(header, rows, column, path))
    if subject.get("height_m") is not None and subject["height_m"] > 3.0:
        subject["height_m"] /= 100.0
    if "gender" in header:
        subject["sex_male"] = _sex(_cell(rows, header.index("gender")), path)
    vo2 = _column(header, rows, "VO2_I", path)
    if (vo2 > 0).any() and np.nanmax(vo2) < MIN_VO2_ML_MIN:  # all of it would read as missing
        raise WearjaxFileError(
            path,
            f"VO2_I reads under {MIN_VO2_ML_MIN:g} throughout (median "
            f"{np.nanmedian(vo2[vo2 > 0]):.3g}): L/min, where pyoxynet's layout is mL/min",
            "multiply VO2_I by 1000, or read the file with read_cpet (which detects L/min)",
        )
    vo2 = np.where(vo2 < MIN_VO2_ML_MIN, np.nan, vo2)  # warm-up zeros: no reading
    measured = np.flatnonzero(np.isfinite(vo2))
    start = measured[0] if measured.size else 0  # the test starts at its first VO2, as `cpet`'s
    session = to_session(
        Records(
            time=time[start:],
            channels={},
            hr=_column(header, rows, "HR_I", path)[start:],
            vo2=vo2[start:],
        ),
        path=path,
        runner=path.stem if runner is None else runner,
        workout=path.stem,
        subject=subject_vector(subject, path=path, ranges=SUBJECT_RANGES),
        max_gap_s=max_gap_s,
        min_length_s=min_length_s,
    )
    return check_hr(session, path) if require_hr else session


def read_table(path: str | Path) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a CSV file (UTF-8, optional BOM, or UTF-16 with its BOM), separated
    by `,`, `;` or tabs (the one the header holds most of; with `;` or tabs, decimal commas
    read as points). A column name given twice is refused: which one holds the data?"""
    text = decode_text(read_bytes(path), path)
    delimiter = delimiter_of(text.split("\n", 1)[0])
    rows = split_rows(text, delimiter, path)
    if not rows:
        raise WearjaxFileError(path, "the file has no lines", "export the recording again")
    header = [cell.strip() for cell in rows[0]]
    if len(rows) < 2:
        raise WearjaxFileError(path, "the CSV has a header but no rows", "export it again")
    named = [h for h in header if h]
    twice = next((h for i, h in enumerate(named) if h in named[:i]), None)
    if twice is not None:
        raise WearjaxFileError(
            path, f"the column {twice!r} appears twice in the header", "rename or drop one of them"
        )
    data = rows.after_header()
    if delimiter != ",":
        data = Rows([[_DECIMAL_COMMA.sub(r"\1.\2", c) for c in r] for r in data], data.lines)
    return header, data


class Rows(list):
    """A CSV's data rows (`read_table`) with `lines`, each row's line number in the file
    (1 = the first line), so an error names the line a user sees after blank lines."""

    def __init__(self, rows, lines):
        super().__init__(rows)
        self.lines = list(lines)

    def after_header(self) -> Rows:
        """The rows after the first, with their lines (a plain slice would drop them)."""
        return Rows(self[1:], self.lines[1:])


def split_rows(text: str, delimiter: str, path) -> Rows:
    """A CSV text's rows, blank lines dropped, each with its line in the file."""
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    rows, lines = [], []
    try:
        for row in reader:
            if any(cell.strip() for cell in row):
                rows.append(row)
                lines.append(reader.line_num)
    except csv.Error as err:
        raise WearjaxFileError(path, f"not a readable CSV file ({err})", "export it again") from err
    return Rows(rows, lines)


def line_of(rows, i: int, first: int = 2) -> int:
    """The file line of row `i`: from `Rows.lines` where known, else `first + i`."""
    lines = getattr(rows, "lines", None)
    return lines[i] if lines is not None and len(lines) == len(rows) else first + i


def decode_text(data: bytes, path: str | Path, fallback: str | None = None) -> str:
    """A text file's content: UTF-8 (with or without a BOM), or UTF-16 with its BOM (Excel's
    "Unicode Text"); otherwise decoded as `fallback` when given, else `WearjaxFileError`."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError:
            text = ""
        # a table's digits, separators and most names are ASCII; binary data after the same
        # two bytes decodes to anything
        if sum(c.isascii() for c in text) > len(text) / 2:
            return text
        raise WearjaxFileError(
            path, "not a text CSV file (neither UTF-8 nor UTF-16)", "export it as UTF-8 CSV"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        if fallback is not None:
            return data.decode(fallback, errors="replace")
        raise WearjaxFileError(
            path, "not a text CSV file (not UTF-8)", "export the recording as UTF-8 CSV"
        ) from err


def read_header(path: str | Path) -> list[str]:
    """The first line of a CSV file split as `read_table` splits it ([] when unreadable)."""
    text = decode_text(read_bytes(path), path, fallback="latin-1")
    line = text.split("\n", 1)[0]
    try:
        return [c.strip() for c in next(csv.reader([line], delimiter=delimiter_of(line)), [])]
    except csv.Error:  # e.g. a lone carriage return: the table reader says what is wrong
        return []


def delimiter_of(line: str) -> str:
    """The separator a CSV's header line uses: the most frequent of `,`, `;` and tab."""
    return max((",", ";", "\t"), key=line.count)


_DECIMAL_COMMA = re.compile(r"^(\s*[-+]?\d+),(\d+\s*)$")


def _require(header: list[str], columns: tuple[str, ...], path: Path, fix: str) -> None:
    missing = [c for c in columns if c not in header]
    if missing:
        raise WearjaxFileError(path, f"missing required columns {missing} (found {header})", fix)


def _column(header, rows, name, path, parse=None) -> np.ndarray:
    """A column as float64; empty cells NaN; an unreadable cell raises, naming its line."""
    j = header.index(name)
    parse = parse or float
    out = np.full(len(rows), np.nan)
    for i, row in enumerate(rows):
        cell = row[j].strip() if j < len(row) else ""
        if not cell:
            continue
        try:
            out[i] = parse(cell)
        except ValueError as err:
            raise WearjaxFileError(
                path,
                f"line {line_of(rows, i)}, column {name!r}: cannot read {cell!r} as a "
                + ("time" if parse is _seconds else "number"),
                "times are ISO 8601 (2021-03-24 21:40:55+00:00) or seconds; values are numbers"
                if parse is _seconds
                else "values must be numbers (empty for missing)",
            ) from err
    return out


def _seconds(cell: str) -> float:
    """Seconds of a cell: a number as is, else POSIX seconds of an ISO 8601 time (UTC default)."""
    try:
        return float(cell)
    except ValueError:
        moment = datetime.fromisoformat(cell)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _cell(rows: list[list[str]], j: int) -> str:
    return next((r[j].strip() for r in rows if j < len(r) and r[j].strip()), "")


def _first_finite(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return float(finite[0]) if finite.size else None


def _sex(cell: str, path: Path) -> float | None:
    code = cell.strip().lower()
    if code in ("", "nan"):
        return None
    if code in ("m", "male") or _maybe_float(code) == -1.0:
        return 1.0
    if code in ("f", "female") or _maybe_float(code) == 1.0:
        return 0.0
    raise WearjaxFileError(
        path, f"unknown gender code {cell!r}", "use -1 (male), 1 (female), M or F"
    )


def _maybe_float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
