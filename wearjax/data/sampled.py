"""Sampled-signal recordings: wrist PPG, accelerometer, gyroscope, ECG at their own rates.

**CSV**: a time column in seconds (`time`, `t` or `time_s`) and one column per channel; every
row is one sample of every channel, on a regular grid (each time within 1% of a step, or the
time column's printed resolution, of `t0 + k / rate`). The rate is `rate_hz` when given (and
checked), else the rate with the fewest decimals that fits the times (e.g. 64 Hz from times
printed to the millisecond). **NPZ**: one array per signal, `[T]` or `[T, C]`, sampled from
t = 0 at the rate of the key `NAME_rate_hz`, else the `rate_hz` argument, else a key `rate_hz`;
a `time` array is ignored.

**Signals** (`Session.signals`): `ppg`, `ecg`, `resp` and any other column or array are one
signal each, named as given; columns `NAME_x`, `NAME_y`, `NAME_z` form signal NAME (`acc_x`,
`acc_y`, `acc_z` -> "acc"); an NPZ array `acc [T, 3]` gets channels acc_x, acc_y, acc_z. NaN
samples are masked. Units are labels by convention (`SIGNAL_UNITS`, or `units`), no conversion.

**Reference HR** (bpm) at any rate becomes `targets["hr"]`: an NPZ array `hr` with `hr_rate_hz`;
a CSV column `hr_ref` (or `hr`), NaN where absent; or a sidecar `NAME.hr.csv` with columns
`time,hr` on the recording's clock (seconds from the start for NPZ). Value k belongs to the
time `k / hr_rate_hz` from the start (the rate inferred from the shortest step between
reference times, rounded where the times allow, unless given: a reference with gaps still has
its own step). NaN and HR outside 25-250 bpm are masked. The 1 Hz `Session.hr` is the
reference per second (`signals.per_second`). The 1 Hz running channels are empty:
`x [T1, 0]` with T1 = ceil(duration in s).
"""

from __future__ import annotations

import io
import math
import re
import zipfile
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from wearjax.data.csv import line_of, read_header, read_table
from wearjax.data.readers import MAX_SESSION_S, check_hr, read_bytes, subject_vector
from wearjax.data.signals import per_second
from wearjax.data.timing import reference_hr, reference_signal, sampling_rate
from wearjax.data.types import BUILTIN_SIGNALS, START_TIME, Session, Signal
from wearjax.data.validate import check_magnitude
from wearjax.errors import WearjaxFileError

TIME_COLUMNS = ("time", "t", "time_s")
REFERENCE_NAMES = ("hr_ref", "hr")
SIGNAL_UNITS: dict[str, str] = {
    "ppg": "a.u.",
    "acc": "g",
    "gyro": "deg/s",
    "ecg": "mV",
    "resp": "a.u.",
}

_AXES = ("x", "y", "z")


def is_sampled_header(header: list[str]) -> bool:
    """True for a CSV header with a time column and a sensor column (ppg, ecg, acc_*, gyro_*)."""
    names = [h.strip().lower() for h in header]
    sensor = any(n in ("ppg", "ecg") or n.startswith(("acc_", "gyro_")) for n in names)
    return sensor and any(n in TIME_COLUMNS for n in names)


def is_sampled_csv(path: str | Path) -> bool:
    """True when the CSV's first line is a sampled-signal header (`is_sampled_header`)."""
    return is_sampled_header(read_header(path))


def sidecar(path: str | Path) -> Path:
    """The reference-HR sidecar of a recording: `NAME.csv` or `NAME.npz` -> `NAME.hr.csv`, or
    the file beside it whose name is that but for its case (`NAME.HR.csv`, which a folder
    listing takes for a sidecar too: `is_sidecar`)."""
    path = Path(path)
    exact = path.with_name(path.stem + ".hr.csv")
    if exact.is_file() or not path.parent.is_dir():
        return exact
    want = exact.name.lower()
    other = sorted(p for p in path.parent.iterdir() if p.name.lower() == want and p.is_file())
    return other[0] if other else exact


def is_sidecar(path: str | Path) -> bool:
    """True for `NAME.hr.csv` beside a recording `NAME.csv` or `NAME.npz`."""
    path = Path(path)
    if not path.name.lower().endswith(".hr.csv"):
        return False
    stem = path.name[: -len(".hr.csv")]
    return any(path.with_name(stem + s).is_file() for s in (".csv", ".npz"))


def read_sampled(
    path: str | Path,
    *,
    rate_hz: float | None = None,
    hr_rate_hz: float | None = None,
    runner: str | None = None,
    units: Mapping[str, str] | None = None,
    require_hr: bool = False,
) -> Session:
    """A sampled-signal CSV or NPZ as a `Session` with `signals` (module docstring).

    `runner` defaults to the file's stem; `units` maps signal names to unit labels. Raises
    `WearjaxFileError` naming the file, the problem and the fix.
    """
    path = Path(path)
    if path.suffix.lower() == ".npz":
        signals, reference = _read_npz(path, rate_hz, hr_rate_hz, dict(units or {}))
        t0 = 0.0
    else:
        signals, reference, t0 = _read_csv(path, rate_hz, hr_rate_hz, dict(units or {}))
    side = sidecar(path)
    if side.is_file():
        if reference is not None:
            raise WearjaxFileError(
                path,
                f"reference HR given twice (in the file and in {side.name})",
                "keep one of them",
            )
        header, rows = read_table(side)
        times = _numbers(header, rows, _find(header, TIME_COLUMNS, side, "time"), side)
        hr = _numbers(header, rows, _find(header, REFERENCE_NAMES, side, "reference HR"), side)
        reference = reference_hr(times - t0, hr, hr_rate_hz, side)
    if not signals:
        raise WearjaxFileError(
            path, "no signal (only time or reference columns)", "add ppg, acc_x/y/z, ... columns"
        )
    name, longest = max(signals.items(), key=lambda item: item[1].duration_s)
    duration = longest.duration_s
    if duration > MAX_SESSION_S:  # a rate of 1e-8 Hz would ask for years of 1 Hz grid
        raise WearjaxFileError(
            path,
            f"signal {name!r} spans {duration / 3600:.3g} h ({longest.length} samples at "
            f"{longest.rate_hz:g} Hz), longer than {MAX_SESSION_S // 3600} h",
            "check its sampling rate (NAME_rate_hz, rate_hz or the time column), or split it",
        )
    length = max(1, math.ceil(duration - 1e-9))
    hr = np.full(length, np.nan, np.float32)
    if reference is not None:
        held, seen = per_second(reference, length)
        hr = np.where(seen, held[:, 0], np.nan).astype(np.float32)
    session = Session(
        x=np.zeros((length, 0), np.float32),
        hr=hr,
        vo2=np.full(length, np.nan, np.float32),
        mask=np.isfinite(hr),
        vo2_mask=np.zeros(length, bool),
        subject=subject_vector(),
        runner=path.stem if runner is None else runner,
        channels=(),
        source=str(path),
        workout=path.stem,
        signals=signals,
        targets={} if reference is None else {"hr": reference},
        metadata=((START_TIME, repr(float(t0))),),  # NPZ: 0, its signals start at t = 0
    )
    return check_hr(session, path) if require_hr else session


def _read_csv(path, rate_hz, hr_rate_hz, units):
    """Signals, the reference HR (or None) and the first time of a sampled CSV."""
    header, rows = read_table(path)
    time_column = _find(header, TIME_COLUMNS, path, "time (s)")
    times = [h for h in header if h.lower() in TIME_COLUMNS]
    if len(times) > 1:
        raise WearjaxFileError(path, f"two time columns {times}", "keep one of them")
    time = _numbers(header, rows, time_column, path)
    rate = sampling_rate(time, _decimals(rows, header.index(time_column)), rate_hz, path)
    reference = None
    refs = [h for h in header if h.lower() in REFERENCE_NAMES]
    if len(refs) > 1:
        raise WearjaxFileError(path, f"two reference HR columns {refs}", "keep one of them")
    if refs:  # its rows lie on the samples' grid (checked): their printed times may not
        grid = np.arange(time.size) / rate
        reference = reference_hr(grid, _numbers(header, rows, refs[0], path), hr_rate_hz, path)
    skip = {time_column, *refs, "", "Unnamed: 0"}
    arrays = {h: _numbers(header, rows, h, path) for h in header if h not in skip}
    return _signals(arrays, lambda name, keys: rate, units, path), reference, float(time[0])


def _read_npz(path, rate_hz, hr_rate_hz, units):
    """Signals and the reference HR (or None) of an NPZ archive."""
    try:
        with np.load(io.BytesIO(read_bytes(path)), allow_pickle=False) as z:
            arrays = {k: np.asarray(z[k]) for k in z.files}
    except (
        ValueError, OSError, EOFError, zipfile.BadZipFile, AttributeError, TypeError, zlib.error
    ) as err:  # fmt: skip
        raise WearjaxFileError(
            path, f"not a readable NPZ archive ({err})", "save it with numpy.savez"
        ) from err
    rates: dict[str, float] = {}
    for key in [k for k in arrays if k == "rate_hz" or k.endswith("_rate_hz")]:
        value = arrays.pop(key)
        if value.size != 1 or value.dtype.kind not in "iuf":
            raise WearjaxFileError(
                path, f"{key!r} is {value.dtype}{list(value.shape)}", "store the rate as a number"
            )
        rates[key] = float(value.reshape(()))
        if not (np.isfinite(rates[key]) and rates[key] > 0):
            raise WearjaxFileError(
                path, f"{key!r} is {rates[key]:g}", "store the rate as a positive number of Hz"
            )
    for key in [k for k in arrays if k.lower() in TIME_COLUMNS]:
        arrays.pop(key)  # NPZ samples are regular from t = 0 (documented), so time is ignored

    def rate_of(name: str, keys: list[str]) -> float:
        for key in (name, *keys):
            if f"{key}_rate_hz" in rates:
                return rates[f"{key}_rate_hz"]
        if rate_hz is not None:
            return rate_hz
        if "rate_hz" in rates:
            return rates["rate_hz"]
        raise WearjaxFileError(
            path,
            f"no sampling rate for {name!r}",
            f"store {name}_rate_hz in the file or pass rate_hz",
        )

    reference = None
    refs = [k for k in arrays if k.lower() in REFERENCE_NAMES]
    if len(refs) > 1:
        raise WearjaxFileError(path, f"two reference HR arrays {refs}", "keep one of them")
    if refs:
        hr = _numeric(arrays.pop(refs[0]), refs[0], path).astype(np.float64)
        rate = rates.get(f"{refs[0]}_rate_hz", rates.get("hr_rate_hz", hr_rate_hz))
        if hr.ndim != 1 or rate is None:
            raise WearjaxFileError(
                path,
                f"reference HR {refs[0]!r} of shape {list(hr.shape)} without a rate"
                if rate is None
                else f"reference HR {refs[0]!r} has shape {list(hr.shape)}, expected [time]",
                "store hr as [time] with hr_rate_hz, or pass hr_rate_hz",
            )
        reference = reference_signal(hr, rate, path)
    arrays = {k: _numeric(a, k, path) for k, a in arrays.items()}
    return _signals(arrays, rate_of, units, path), reference


def _numeric(a: np.ndarray, key: str, path: Path) -> np.ndarray:
    # real numbers only: complex would drop its imaginary part, timedelta64 is not a signal
    if a.dtype.kind not in "biuf" or a.ndim not in (1, 2):
        raise WearjaxFileError(
            path,
            f"array {key!r} is {a.dtype}{list(a.shape)}",
            "store each signal as numbers of shape [time] or [time, channels]",
        )
    return a


def _signals(
    arrays: dict[str, np.ndarray],
    rate_of: Callable[[str, list[str]], float],
    units: dict[str, str],
    path: Path,
) -> dict[str, Signal]:
    """Columns `[T]` grouped by name (`NAME_x/y/z` -> NAME) and arrays `[T, C]` as Signals."""
    groups: dict[str, list[tuple[str, str, np.ndarray]]] = {}
    for key, a in arrays.items():
        lower = key.lower()
        axis = _is_axis(lower)
        if a.ndim == 2 and a.shape[0] < a.shape[1]:
            raise WearjaxFileError(
                path, f"array {key!r} is {list(a.shape)}: fewer rows than columns, as if "
                "stored [channels, time]", f"save {key}.T, one row per sample [time, channels]",
            )  # fmt: skip
        if a.ndim == 2:
            name = lower if lower in SIGNAL_UNITS else key
            if a.shape[1] == 1:
                channels = [name]
            elif a.shape[1] == 3 and name in ("acc", "gyro"):
                channels = [f"{name}_{ax}" for ax in _AXES]
            else:
                channels = [f"{name}_{j}" for j in range(a.shape[1])]
            cols = [(key, c, a[:, j]) for j, c in enumerate(channels)]
        elif axis:
            name, cols = lower[:-2], [(key, lower, a)]
        else:
            name = lower if lower in SIGNAL_UNITS else key
            cols = [(key, name, a)]
        groups.setdefault(name, []).extend(cols)
    out = {}
    for name, cols in groups.items():
        if name in BUILTIN_SIGNALS:
            raise WearjaxFileError(
                path, f"signal name {name!r} is reserved", f"rename it (not {BUILTIN_SIGNALS})"
            )
        cols.sort(key=lambda col: _AXES.index(col[1][-1]) if _is_axis(col[1]) else -1)
        channels = [c for _, c, _ in cols]
        if len(set(channels)) < len(channels):
            raise WearjaxFileError(
                path, f"signal {name!r} has channels {channels} twice", "store each channel once"
            )
        lengths = sorted({len(a) for _, _, a in cols})
        if len(lengths) > 1:
            raise WearjaxFileError(
                path,
                f"signal {name!r}: channels {channels} have {lengths} samples",
                "store a signal's channels with the same number of samples",
            )
        for key, _, a in cols:
            check_magnitude(a, f"signal {name!r} ({key})", path)
        values = np.stack([a for _, _, a in cols], axis=1).astype(np.float32)
        unit = units.get(name, SIGNAL_UNITS.get(name, ""))
        out[name] = Signal(
            values=values,
            rate_hz=rate_of(name, sorted({k for k, _, _ in cols})),
            mask=np.all(np.isfinite(values), axis=1),
            channels=tuple(channels),
            units=(unit,) * len(cols),
        )
    return out


def _is_axis(name: str) -> bool:
    return re.fullmatch(r".+_[xyz]", name) is not None


def _find(header: list[str], names: tuple[str, ...], path, label: str) -> str:
    found = next((h for h in header if h.lower() in names), None)
    if found is None:
        raise WearjaxFileError(
            path, f"no {label} column (found {header})", f"name it one of {list(names)}"
        )
    return found


def _numbers(header: list[str], rows: list[list[str]], name: str, path) -> np.ndarray:
    """A column as float64, empty cells NaN; an unreadable cell raises, naming its line."""
    j = header.index(name)
    cells = [(row[j].strip() if j < len(row) else "") or "nan" for row in rows]
    try:
        return np.array(cells, dtype=np.float64)
    except ValueError:
        for i, cell in enumerate(cells):
            try:
                float(cell)
            except ValueError as err:
                raise WearjaxFileError(
                    path,
                    f"line {line_of(rows, i)}, column {name!r}: cannot read {cell!r} as a number",
                    "values must be numbers (empty for missing)",
                ) from err
        raise


def _decimals(rows: list[list[str]], j: int) -> int | None:
    """Most decimal places printed in column j (None when some cell uses an exponent)."""
    most = 0
    for row in rows:
        cell = row[j].strip().lower() if j < len(row) else ""
        if "e" in cell:
            return None
        if "." in cell:
            most = max(most, len(cell) - cell.index(".") - 1)
    return most
