"""Cardiopulmonary exercise tests (CPET) with any column names: a lab's own exports.

**Columns** are named by `columns` (field -> the file's header, e.g. `{"vo2": "VO2 (ml/min)",
"hr": "HR"}`), else found by the header convention: ignoring case, a unit in parentheses or
brackets and every character but letters and digits, a header matches an alias of
`CPET_ALIASES` (`VO2`, `VO2_I`, `V'O2`, `vo2 [L/min]` are all vo2; `HR_I`, `heart_rate` are hr;
`power`, `watts`, `load` are work_rate). Fields: time (s, or m:ss / h:mm:ss; required), vo2
(required), hr (bpm), vco2, ve, work_rate (W), speed, age (years), height (m; above 3 taken as
cm), weight (kg), sex (M/F, or pyoxynet's -1 = male, 1 = female). Other columns are ignored. A
units row under the header (text where VO2 numbers should be) gives the columns' units.

**Units.** VO2 and VCO2 in mL/min: `vo2_unit` ("mL/min" or "L/min"; for VCO2 too where its
header names no unit; a header unit contradicting it is refused) when given, else the column's
unit, else by magnitude (median below 5: L/min). VO2 under `MIN_VO2_ML_MIN` is missing. VE in
L/min (a unit of mL/min, or a median above 500, is converted). Speed in m/s: `units={"speed":
...}`, else the column's unit, else km/h (treadmills). VO2 per body mass (mL/kg/min) is
refused: by its unit, or with none by a median of 5-150. `metadata` records `vo2_unit`,
`vo2_unit_basis` ("declared", "column header", "detected (median ...)"), `speed_unit` and
`columns` (field=header pairs used).

A test starts at its first VO2 reading (the VO2 model is given that second): seconds before it,
HR recorded while the gas analyser warmed up, are dropped and counted in `metadata`
(`seconds_before_first_vo2_dropped`).

Values are separated by `,`, `;` or tab (whichever the header line has most of); with `;` or tab
a decimal comma is read as a point. Grid conventions are those of `wearjax.data.readers`;
input channels go to `Session.x` under the names of `SESSION_CHANNEL_UNITS`.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from wearjax.data.channels import UNIT_FACTORS
from wearjax.data.cpet_table import at, cells, clock, is_number, read_rows
from wearjax.data.csv import _first_finite, _sex
from wearjax.data.folders import Skipped, check_usable, skip_reason
from wearjax.data.readers import (
    MAX_GAP_S,
    SUBJECT_RANGES,
    Records,
    check_hr,
    subject_vector,
    to_session,
)
from wearjax.data.types import START_TIME, Session
from wearjax.data.validate import MIN_LENGTH_S, MIN_VO2_ML_MIN, check_magnitude, check_speed
from wearjax.errors import WearjaxDataError, WearjaxFileError

logger = logging.getLogger(__name__)

CPET_ALIASES: dict[str, tuple[str, ...]] = {
    "time": ("time", "t", "times", "timesec", "seconds", "sec"),
    "vo2": ("vo2", "vo2i", "vo2abs", "vo2absolute"),
    "hr": ("hr", "hri", "heartrate", "hrbpm", "pulse"),
    "vco2": ("vco2", "vco2i"),
    "ve": ("ve", "vei", "vebtps"),
    "work_rate": ("workrate", "power", "watts", "load", "wr", "poweri"),
    "speed": ("speed", "speedi", "velocity"),
    "age": ("age", "ageyears"),
    "height": ("height", "heightm", "heightcm"),
    "weight": ("weight", "weightkg", "mass", "bodymass"),
    "sex": ("sex", "gender"),
}
CPET_SUFFIXES = (".csv", ".tsv", ".txt")
# MIN_LENGTH_S (60 s, shared with the running readers): the shortest span of VO2 a test must have.

_VOLUME = {"mlmin": 1.0, "lmin": 1000.0}  # to mL/min
_SPEED = {"ms": "m/s", "kmh": "km/h", "mph": "mph"}


def read_cpet(
    path: str | Path,
    *,
    columns: Mapping[str, str] | None = None,
    vo2_unit: str | None = None,
    units: Mapping[str, str] | None = None,
    runner: str | None = None,
    max_gap_s: float = MAX_GAP_S,
    min_length_s: float = MIN_LENGTH_S,
    require_hr: bool = False,
) -> Session:
    """A CPET export with any column names as one `Session` (module docstring).

    `x` holds the input channels found (speed, work_rate, vco2, ve); `hr` and `vo2` the
    targets. `runner` defaults to the file's stem. Raises `WearjaxFileError` for a file
    without time or VO2, an unreadable value, an unknown unit, or under `min_length_s` s of VO2.
    """
    path = Path(path)
    declared = _check_options(columns, vo2_unit, units)
    header, rows, comma = read_rows(path)
    found = _match(header, columns or {}, path)
    for field, example in (("time", "time"), ("vo2", "VO2")):
        if field not in found:
            raise WearjaxFileError(
                path,
                f"no {field.upper() if field == 'vo2' else field} column (found {header})",
                f"name it {example}, or pass --columns {field}=NAME (columns={{{field!r}: NAME}})",
            )
    unit_of = {field: _split(header[j])[1] for field, j in found.items()}
    first_line = 2
    first_vo2 = at(rows[0], found["vo2"])
    # a units row under the header; a missing-value marker there is data, refused by its line
    # (until 2026-12-07 `NA` was read as VO2's unit, and the line it dropped was not named)
    if not is_number(first_vo2, comma) and first_vo2.strip().lower() not in MISSING_MARKERS:
        for field, j in found.items():
            unit_of[field] = unit_of[field] or at(rows[0], j)
        rows, first_line = rows.after_header(), 3
        if not rows:
            raise WearjaxFileError(path, "the CSV has a header but no rows", "export it again")

    def column(field: str, parse=float) -> np.ndarray:
        name = header[found[field]]
        values = cells(rows, found[field], name, path, comma, first_line, parse)
        check_magnitude(values, f"column {name!r}", path)  # before unit factors overflow it
        return values

    vo2_column = header[found["vo2"]]
    vo2, vo2_source, basis = _volume(column("vo2"), declared, unit_of["vo2"], vo2_column, path)
    if basis.startswith("detected") and vo2_source == "L/min" and "hr" in found:
        _check_rest_per_kg(vo2, column("hr"), vo2_column, path)
    channels: dict[str, np.ndarray] = {}
    metadata = [("vo2_unit", vo2_source), ("vo2_unit_basis", basis)]
    low = np.isfinite(vo2) & (vo2 < MIN_VO2_ML_MIN)  # an analyser's warm-up rows, exported as 0
    if low.any() and low.sum() == np.isfinite(vo2).sum():
        raise WearjaxFileError(
            path,
            f"VO2 reads under {MIN_VO2_ML_MIN:g} mL/min throughout (median "
            f"{np.median(vo2[low]):.3g} mL/min as {vo2_source}), no body's uptake",
            "check its unit: pass vo2_unit (--vo2-unit) if the column is in L/min",
        )
    if low.any():
        vo2 = np.where(low, np.nan, vo2)
        metadata.append(("vo2_below_floor_masked", str(int(low.sum()))))
    if "speed" in found:
        unit = (units or {}).get("speed") or _SPEED.get(_norm_unit(unit_of["speed"]), "")
        if unit_of["speed"] and not unit:
            raise WearjaxFileError(
                path,
                f"unknown speed unit {unit_of['speed']!r}",
                f"use one of {sorted(UNIT_FACTORS['speed'])}",
            )
        unit = unit or "km/h"
        raw = column("speed")
        channels["speed"] = raw * UNIT_FACTORS["speed"][unit]
        fix = f'declare the speed unit with units={{"speed": ...}} (read as {unit})'
        check_speed({"speed": raw}, channels["speed"], path, unit=unit, fix=fix)
        metadata.append(("speed_unit", unit))
    if "work_rate" in found:
        channels["work_rate"] = column("work_rate")
    if "vco2" in found:  # its own header's unit wins over the one declared for VO2
        name, own = header[found["vco2"]], unit_of["vco2"]
        channels["vco2"] = _volume(column("vco2"), None if own else declared, own, name, path)[0]
    if "ve" in found:
        ve = column("ve")
        factor = _VOLUME.get(_norm_unit(unit_of["ve"]))
        if factor is None:
            positive = ve[np.isfinite(ve) & (ve > 0)]
            factor = 1.0 if positive.size and np.median(positive) > 500 else 1000.0
        channels["ve"] = ve * factor / 1000.0
    subject = {}
    for field, name in (("age_years", "age"), ("height_m", "height"), ("weight_kg", "weight")):
        if name in found:
            subject[field] = _first_finite(column(name))
    if subject.get("height_m") is not None and subject["height_m"] > 3.0:
        subject["height_m"] /= 100.0
    if "sex" in found:
        j = found["sex"]
        subject["sex_male"] = _sex(next((c for r in rows if (c := at(r, j))), ""), path)
    session = to_session(
        Records(
            time=column("time", clock),
            channels=channels,
            hr=column("hr") if "hr" in found else np.full(len(rows), np.nan),
            vo2=vo2,
        ),
        path=path,
        runner=path.stem if runner is None else runner,
        workout=path.stem,
        subject=subject_vector(subject, path=path, ranges=SUBJECT_RANGES),
        max_gap_s=max_gap_s,
        min_length_s=0,  # the span of VO2 is checked below, against min_length_s
    )
    seen = np.flatnonzero(session.vo2_mask)
    if seen.size == 0:
        raise WearjaxFileError(path, "no VO2 values", "check the VO2 column of the export")
    span = int(seen[-1] - seen[0] + 1)
    if span < min_length_s:
        raise WearjaxFileError(
            path,
            f"only {span} s of VO2, shorter than {min_length_s:g} s",
            "use complete tests, or lower min_length_s",
        )
    if seen[0] > 0:  # a test starts at its first VO2, the second the VO2 model is given
        k = int(seen[0])
        cut = {
            f: np.asarray(getattr(session, f))[k:] for f in ("x", "hr", "vo2", "mask", "vo2_mask")
        }
        start = dict(session.metadata).get(START_TIME)  # second 0 moves to the first VO2
        kept = tuple(m for m in session.metadata if m[0] != START_TIME)
        if start is not None:
            kept += ((START_TIME, repr(float(start) + k)),)
        session = dataclasses.replace(session, **cut, metadata=kept)
        metadata.append(("seconds_before_first_vo2_dropped", str(k)))
    seen_hr = int(np.sum(session.mask))
    if "hr" in found and 0 < seen_hr < MIN_HR_SHARE * session.length:  # a strap that failed
        raise WearjaxFileError(
            path,
            f"HR in only {seen_hr} of its {session.length} s (from the first VO2): the model "
            "would read one held value for the rest",
            "check the HR recording, or leave out the HR column to use the test without HR",
        )
    late = int(np.argmax(session.mask)) if session.mask.any() else 0
    if late > LATE_HR_S:  # the VO2 model is given the first HR where the test starts
        logger.warning("%s: HR starts %d s after the first VO2; its first reading stands for "
                       "the seconds before it", path, late)  # fmt: skip
        metadata.append(("hr_starts_s", str(late)))
    used = ", ".join(f"{field}={header[j]}" for field, j in found.items())
    session = dataclasses.replace(
        session, metadata=(*session.metadata, *metadata, ("columns", used))
    )
    return check_hr(session, path) if require_hr else session


def load_cpet_folder(
    path: str | Path,
    columns: Mapping[str, str] | None = None,
    vo2_unit: str | None = None,
    *,
    units: Mapping[str, str] | None = None,
    max_gap_s: float = MAX_GAP_S,
    min_length_s: float = MIN_LENGTH_S,
    require_hr: bool = False,
    harmonise: bool = True,
) -> tuple[list[Session], list[Skipped]]:
    """Every usable CPET test under `path` (`read_cpet`), and the files skipped with reasons.

    Runners are subfolder names (`folder/subject/test.csv`), else file stems (one subject per
    test). With `harmonise` (for a cohort), where some tests have HR, a test without it is
    skipped (HR is then an input, which it would give as 0 bpm), and sessions keep the input
    channels every remaining test has, in `SESSION_CHANNEL_UNITS` order; without it each test
    is as read (a model's predictions compare each with the model). Raises `WearjaxFileError`
    naming the folder when no test is usable.
    """
    _check_options(columns, vo2_unit, units)
    folder = Path(path)
    if not folder.is_dir():
        raise WearjaxFileError(folder, "not a folder", "pass the folder holding the CPET exports")
    sessions: list[Session] = []
    skipped: list[Skipped] = []
    for file in sorted(folder.rglob("*")):
        rel = file.relative_to(folder)
        if any(p.startswith(".") for p in rel.parts) or not file.is_file():
            continue
        if file.suffix.lower() not in CPET_SUFFIXES:
            skipped.append(Skipped(file, f"unsupported file type {file.suffix or '(none)'!r}"))
            continue
        runner = rel.parts[0] if len(rel.parts) > 1 else file.stem
        try:
            sessions.append(
                read_cpet(
                    file,
                    columns=columns,
                    vo2_unit=vo2_unit,
                    units=units,
                    runner=runner,
                    max_gap_s=max_gap_s,
                    min_length_s=min_length_s,
                    require_hr=require_hr,
                )
            )
        except WearjaxDataError as err:
            skipped.append(Skipped(file, skip_reason(err, file)))
    check_usable(
        folder, sessions, skipped, "CPET test",
        "add CSV exports with a time and a VO2 column, or name them with --columns (columns=)",
    )  # fmt: skip
    if not harmonise:
        return sessions, skipped
    with_hr = [bool(np.any(s.mask)) for s in sessions]
    if any(with_hr) and not all(with_hr):  # HR is an input: a test without it would read 0 bpm
        reason = "no heart rate, which the other tests have and the model reads; record HR in "
        skipped += [Skipped(Path(s.source), reason + "every test or drop its column")
                    for s, ok in zip(sessions, with_hr, strict=True) if not ok]  # fmt: skip
        sessions = [s for s, ok in zip(sessions, with_hr, strict=True) if ok]
    common = tuple(c for c in sessions[0].channels if all(c in s.channels for s in sessions))
    for s in sessions:
        if s.channels != common:
            logger.info("%s: dropping channels %s that other tests lack", s.source,
                        [c for c in s.channels if c not in common])  # fmt: skip
    sessions = [
        dataclasses.replace(s, x=s.x[:, [s.channels.index(c) for c in common]], channels=common)
        for s in sessions
    ]
    return sessions, skipped


def _check_options(columns, vo2_unit, units) -> str | None:
    """The declared VO2 unit, canonical ("mL/min", "L/min") or None; raises on bad options."""
    unknown = sorted(set(columns or {}) - set(CPET_ALIASES))
    if unknown:
        raise WearjaxDataError(
            f"columns names unknown fields {unknown}; use fields of {sorted(CPET_ALIASES)}"
        )
    for channel, unit in (units or {}).items():
        if channel != "speed" or unit not in UNIT_FACTORS["speed"]:
            raise WearjaxDataError(
                f"units={{{channel!r}: {unit!r}}} is not a speed unit; "
                f"pass units={{'speed': one of {sorted(UNIT_FACTORS['speed'])}}}"
            )
    if vo2_unit is None:
        return None
    unit = {"mlmin": "mL/min", "lmin": "L/min"}.get(_norm_unit(vo2_unit))
    if unit is None:
        raise WearjaxDataError(
            f"vo2_unit={vo2_unit!r} is not a unit of VO2; use 'mL/min' or 'L/min'"
        )
    return unit


MAX_VO2_ML_MIN = 10_000.0
"""A test's median gas volume rate (mL/min) above this is in another unit: the highest VO2
recorded in athletes is about 7,000 mL/min."""


def _volume(values, declared, unit, column, path) -> tuple[np.ndarray, str, str]:
    """A gas volume rate (VO2, VCO2) in mL/min, the file's unit and how it was chosen."""
    key = _norm_unit(unit) if unit else ""
    if declared and key in _VOLUME and _VOLUME[key] != _VOLUME[_norm_unit(declared)]:
        why = f"column {column!r} is in {unit} by its header, not {declared} (--vo2-unit)"
        raise WearjaxFileError(path, why, "leave out --vo2-unit, or correct the header")
    if declared and "kg" not in key:
        name, basis = declared, "declared"
    elif unit:
        if "kg" in key:
            why = f"column {column!r} is in {unit} (relative to body mass)"
            raise WearjaxFileError(path, why, "export absolute VO2 in mL/min or L/min")
        if key not in _VOLUME:
            raise WearjaxFileError(
                path,
                f"unknown unit {unit!r} of column {column!r}",
                "pass --vo2-unit mL/min (vo2_unit='mL/min')",
            )
        name, basis = ("L/min" if key == "lmin" else "mL/min"), "column header"
    else:
        positive = values[np.isfinite(values) & (values > 0)]
        median = float(np.median(positive)) if positive.size else float("nan")
        # mL/kg/min: neither a test's mL/min (hundreds up) nor its L/min (a median over 5 L/min
        # is beyond almost any runner, where 5-10 mL/kg/min is a rest or a walk)
        if MAX_MEDIAN_L_MIN <= median < 150:
            raise WearjaxFileError(
                path,
                f"column {column!r} has no unit and a median of {median:.3g}: neither L/min nor "
                "mL/min, but what VO2 per kg of body mass (mL/kg/min) reads",
                "export absolute VO2, or pass --vo2-unit (vo2_unit) if it is one",
            )
        name = "L/min" if median < MAX_MEDIAN_L_MIN else "mL/min"
        relation = "<" if name == "L/min" else ">="
        basis = f"detected (median {median:.3g} {relation} {MAX_MEDIAN_L_MIN:g})"
    out = values * _VOLUME[_norm_unit(name)]
    positive = out[np.isfinite(out) & (out > 0)]
    if positive.size and np.median(positive) > MAX_VO2_ML_MIN:
        raise WearjaxFileError(
            path,
            f"column {column!r} read as {name} ({basis}) has a median of "
            f"{np.median(positive):.0f} mL/min, beyond any body's uptake: mL/min read as L/min",
            "leave out --vo2-unit, or give the unit the file is in",
        )
    return out, name, basis


def _check_rest_per_kg(vo2: np.ndarray, hr: np.ndarray, column: str, path) -> None:
    """A unitless VO2 read as L/min whose median is over 2 L/min at a median HR under 100
    bpm: a body at that HR takes up 0.3-1.5 L/min, and a resting test in mL/kg/min (3-5)
    reads so. Refused as ambiguous (until 2026-12-07 read as litres, 10x its uptake)."""
    v, h = vo2[np.isfinite(vo2) & (vo2 > 0)], hr[np.isfinite(hr) & (hr > 0)]
    if v.size and h.size and np.median(v) > REST_MAX_ML_MIN and np.median(h) < REST_HR_BPM:
        raise WearjaxFileError(
            path,
            f"column {column!r} has no unit; read as L/min it is a median "
            f"{np.median(v) / 1000:.2f} L/min at a median HR of {np.median(h):.0f} bpm, more "
            "than a body takes up at that HR: it looks like mL/kg/min at rest",
            "export absolute VO2, or pass --vo2-unit (vo2_unit) with the unit it is in",
        )


REST_MAX_ML_MIN, REST_HR_BPM = 2000.0, 100.0  # `_check_rest_per_kg`'s bounds


MAX_MEDIAN_L_MIN = 5.0
"""A unitless VO2 or VCO2 column with a median under this is read as L/min; from it to 150, as
mL/kg/min, refused (until 2026-12-07 the bound was 10, which read a rest or a walk in mL/kg/min
as litres)."""

MISSING_MARKERS = ("na", "n/a", "nan", "-", "--", "null", "none")  # no value: never a unit

MIN_HR_SHARE = 0.5
"""A test with an HR column needs HR in this share of its seconds (as `data.pyoxynet`'s reader
asks of its files); until 2026-12-07 any HR at all was kept."""

LATE_HR_S = 30
"""An HR column that starts this many seconds after the first VO2 is said per file."""


def _split(cell: str) -> tuple[str, str]:
    """A header cell as (normalised name, unit): `"V'O2 (L/min)"` -> `("vo2", "L/min")`."""
    match = re.fullmatch(r"(.*?)\s*[\(\[]([^\)\]]*)[\)\]]\s*", cell)
    name, unit = (match.group(1), match.group(2).strip()) if match else (cell, "")
    return re.sub(r"[^a-z0-9]", "", name.lower()), unit


def _norm_unit(unit: str) -> str:
    """`"ml/min"`, `"mL·min-1"`, `"ml min^-1"` -> `"mlmin"`; `"km/h"` -> `"kmh"`."""
    u = unit.lower().replace("min-1", "min").replace("min^-1", "min").replace("h-1", "h")
    return re.sub(r"[^a-z]", "", u)


def _match(header: list[str], columns: Mapping[str, str], path: Path) -> dict[str, int]:
    """Field -> column index, from `columns` first, then the aliases."""
    found: dict[str, int] = {}
    for field, name in columns.items():
        exact = [j for j, h in enumerate(header) if h == name.strip()]
        loose = [j for j, h in enumerate(header) if h.lower() == name.strip().lower()]
        if not (exact or loose):
            raise WearjaxFileError(
                path,
                f"no column {name!r} (columns maps {field} to it; found {header})",
                "correct the name in --columns (columns=)",
            )
        found[field] = (exact or loose)[0]
    taken = set(found.values())
    for field, aliases in CPET_ALIASES.items():
        if field in found:
            continue
        hits = [j for j, h in enumerate(header) if j not in taken and _split(h)[0] in aliases]
        if len(hits) > 1:
            raise WearjaxFileError(
                path,
                f"columns {[header[j] for j in hits]} all look like {field}",
                f"pass --columns {field}=NAME (columns={{{field!r}: NAME}})",
            )
        if hits:
            found[field] = hits[0]
    return found
