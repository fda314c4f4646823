"""Fuzzing the readers: a valid file of every format, corrupted at random, fed to every reader.

Each format starts from a valid file that reads: a running CSV (ISO and numeric timestamps), a
pyoxynet CPET CSV, a lab's CPET export (semicolons, units, decimal commas, m:ss times), FIT
written with fit-tool, TCX, GPX, a sampled-signal CSV, a reference-HR sidecar, and NPZ stored and
compressed. Its mutants are (a) its bytes flipped, truncated, inserted, deleted or repeated and
(b) its content changed: for CSV a cell replaced by text, nothing, NaN, inf, a huge or negative
number, rows duplicated, shuffled or deleted, a header renamed; for TCX and GPX their element texts
and points; for NPZ its arrays, dtypes, shapes, keys and rates; for FIT its records' values and
timestamps. Every reader entry point gets every mutant (numpy RandomState seeds: deterministic).

A reader may read a mutant, or refuse it with a `WearjaxFileError` naming the file (or its
sidecar) in one line. Any other exception is a bug (warnings are errors here), and so is a read
whose result breaks what the readers document: a True mask over a non-finite value (or an HR
outside 25-250 bpm), an infinite channel or subject value, a 1 Hz session shorter than the 60 s
minimum. `WEARJAX_FUZZ_SCALE=20` runs 20 times the mutants (the same seeds and more). The bugs
it found are pinned at the end (`REGRESSIONS`), each with the error it now raises.
"""

import csv
import io
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("garmin_fit_sdk", reason="FIT reading needs the `data` extra")
pytest.importorskip("fit_tool", reason="writing test FIT files needs fit-tool (`test` extra)")

from fit_tool.profile.profile_type import Gender  # noqa: E402

from tests.data.test_garmin_fit import RUN, write_fit  # noqa: E402
from tests.data.test_gpx import gpx_text, meridian  # noqa: E402
from tests.data.test_readers import POINT, TCX  # noqa: E402
from wearjax.data.cpet import load_cpet_folder, read_cpet  # noqa: E402
from wearjax.data.csv import read_cpet_csv, read_csv, read_running_csv  # noqa: E402
from wearjax.data.folders import load_folder, read_file  # noqa: E402
from wearjax.data.garmin_fit import decode_fit, read_fit  # noqa: E402
from wearjax.data.gpx import read_gpx  # noqa: E402
from wearjax.data.readers import HR_RANGE_BPM  # noqa: E402
from wearjax.data.sampled import read_sampled, sidecar  # noqa: E402
from wearjax.data.tcx import read_tcx  # noqa: E402
from wearjax.data.types import Session  # noqa: E402
from wearjax.data.validate import MIN_LENGTH_S  # noqa: E402
from wearjax.errors import WearjaxError, WearjaxFileError  # noqa: E402

READERS = {
    "read_file": read_file,
    "read_fit": read_fit,
    "decode_fit": decode_fit,
    "read_tcx": read_tcx,
    "read_gpx": read_gpx,
    "read_csv": read_csv,
    "read_running_csv": read_running_csv,
    "read_cpet_csv": read_cpet_csv,
    "read_cpet": read_cpet,
    "read_sampled": read_sampled,
}
ONE_HZ = {
    "read_fit",
    "read_tcx",
    "read_gpx",
    "read_csv",
    "read_running_csv",
    "read_cpet_csv",
    "read_cpet",
}

T0 = datetime(2021, 3, 24, 21, 40, 55, tzinfo=UTC)
N = 90  # seconds of the 1 Hz recordings: above the 60 s minimum

# What a fuzzed cell becomes: text, nothing, non-finite, huge, odd numerals and separators.
CELLS = (
    "abc", "", " ", "nan", "NaN", "inf", "-inf", "1e308", "-1e308", "1e39", "1e20", "-1e20",
    "0", "-1", "12:34:56:78", "1:-5", "1,5", "\u0661\u0662", "0x1F", "1_000", "\x00", "\u2603",
    '"', "2021-13-45 25:61:00", "9999-12-31T23:59:59-23:59", "0001-01-01", "1e-320", "+",
)  # fmt: skip


# -- valid files ------------------------------------------------------------------------------


def _write_rows(path, rows, delimiter=","):
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f, delimiter=delimiter).writerows(rows)
    return path


def _run_csv(path):
    header = ["timestamp", "heart_rate", "enhanced_speed", "cadence", "fractional_cadence",
              "enhanced_altitude", "distance", "stance_time", "vertical_oscillation"]  # fmt: skip
    rows = [
        [
            (T0 + timedelta(seconds=k)).isoformat(sep=" "),
            120 + k % 30,
            3.0 + 0.01 * k,
            85,
            0.5,
            round(100 + 0.1 * k, 1),
            3 * k,
            250,
            85.3,
        ]  # fmt: skip
        for k in range(N)
    ]
    return _write_rows(path, [header, *rows])


def _run_seconds_csv(path):
    header = ["", "timestamp", "heart_rate", "speed", "altitude", "step_length", "power"]
    rows = [[k, 1_600_000_000 + k, 140 + k % 5, 3.2, 50.0, 1100, 250] for k in range(N)]
    return _write_rows(path, [header, *rows])


def _cpet_csv(path):
    header = ["", "time", "VO2_I", "VCO2_I", "HR_I", "age", "height", "weight", "gender"]
    rows = [
        [k, float(k), 1000 + 10 * k, 900 + 9 * k, 100 + k // 2, 32, 174, 88, -1] for k in range(N)
    ]
    return _write_rows(path, [header, *rows])


def _cpet_lab_csv(path):
    header = ["t", "V'O2", "HR", "Power (W)", "Speed (km/h)", "VE", "Weight", "Sex"]
    rows = [["s", "L/min", "1/min", "", "", "L/min", "kg", ""]]  # a units row
    rows += [
        [
            f"{k // 60}:{k % 60:02d}",
            f"{1 + 0.02 * k:.2f}".replace(".", ","),
            90 + k // 2,
            5 * k,
            "7,2",
            f"{20 + 0.5 * k:.1f}".replace(".", ","),
            70,
            "F",
        ]  # fmt: skip
        for k in range(N)
    ]
    return _write_rows(path, [header, *rows], delimiter=";")


def _fit_records():
    return [
        dict(
            t=k,
            heart_rate=120 + k % 20,
            enhanced_speed=3.0 + 0.01 * k,
            cadence=85,
            fractional_cadence=0.5,
            enhanced_altitude=100.0 + k,
        )  # fmt: skip
        for k in range(N)
    ]


FIT_PROFILE = dict(height=1.8, weight=70.5, age=33, gender=Gender.MALE)


def _fit(path):
    return write_fit(path, _fit_records(), RUN, FIT_PROFILE)


def _gpx(path):
    points = [p | dict(hr=130 + k % 10, cad=84 + k % 3, ele=275.2 + k)
              for k, p in enumerate(meridian(range(N)))]  # fmt: skip
    path.write_text(gpx_text([("running", points)]), encoding="utf-8")
    return path


def _tcx(path):
    points = "".join(
        POINT.format(
            time=(T0 + timedelta(seconds=k)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            alt=275.2 + k,
            dist=3.0 * k,
            hr=130 + k % 10,
            speed=f"<ns3:Speed>{3.0 + 0.01 * k:.2f}</ns3:Speed>",
            cad=84 + k % 3,
        )
        for k in range(N)
    )
    path.write_text(TCX.format(points=points), encoding="utf-8")
    return path


def _wrist_csv(path, rate=16, seconds=8):
    rows = [["time", "ppg", "acc_x", "acc_y", "acc_z", "hr_ref"]]
    for k in range(rate * seconds):
        t = k / rate
        ref = 100 + k // rate if k % (2 * rate) == 0 else ""
        rows.append([f"{100 + t:.4f}", round(np.sin(t), 4), 0.1, -1.0, round(0.01 * k, 2), ref])
    return _write_rows(path, rows)


def _sidecar(path):
    """A reference-HR sidecar `path` (`ppg.hr.csv`) and its recording `ppg.csv` at 8 Hz."""
    recording = path.with_name("ppg.csv")
    _write_rows(
        recording, [["time", "ppg"], *([k / 8, round(np.cos(k / 8), 3)] for k in range(64))]
    )
    return _write_rows(path, [["time", "hr"], *([k, 90 + k] for k in range(8))])


def _npz_arrays():
    return {
        "ppg": np.sin(np.arange(256) / 32.0),
        "ppg_rate_hz": np.array(32.0),
        "acc": np.arange(384.0).reshape(128, 3) / 100,
        "acc_rate_hz": np.array(16),
        "hr": np.array([90.0, 91, np.nan, 93, 94, 95, 96, 97]),
        "hr_rate_hz": np.array(1.0),
    }


def _npz(path, arrays=None, compressed=False):
    with open(path, "wb") as f:
        (np.savez_compressed if compressed else np.savez)(f, **(arrays or _npz_arrays()))
    return path


FORMATS = {
    "run.csv": _run_csv,
    "run_seconds.csv": _run_seconds_csv,
    "cpet.csv": _cpet_csv,
    "lab.csv": _cpet_lab_csv,
    "run.fit": _fit,
    "run.tcx": _tcx,
    "run.gpx": _gpx,
    "wrist.csv": _wrist_csv,
    "ppg.hr.csv": _sidecar,
    "sub.npz": _npz,
    "subz.npz": lambda p: _npz(p, compressed=True),
}
# The reader that must read each valid file.
MAIN_READER = {
    "run.csv": read_running_csv,
    "run_seconds.csv": read_running_csv,
    "cpet.csv": read_cpet_csv,
    "lab.csv": read_cpet,
    "run.fit": read_fit,
    "run.tcx": read_tcx,
    "run.gpx": read_gpx,
    "wrist.csv": read_sampled,
    "ppg.hr.csv": read_sampled,
    "sub.npz": read_sampled,
    "subz.npz": read_sampled,
}


# -- mutations --------------------------------------------------------------------------------


def mutate_bytes(data: bytes, rng) -> tuple[bytes, str]:
    """One to three byte-level corruptions: flips, truncation, insertion, deletion, repetition."""
    b = bytearray(data)
    kinds = []
    for _ in range(rng.randint(1, 4)):
        kind = ("flip", "truncate", "insert", "delete", "repeat")[rng.randint(5)]
        at = rng.randint(0, len(b) + 1)
        size = rng.randint(1, 9)
        if kind == "flip" and b:
            at = min(at, len(b) - 1)
            b[at] ^= rng.randint(1, 256)
        elif kind == "truncate":
            del b[at:]
        elif kind == "insert":
            b[at:at] = rng.randint(0, 256, size=size).astype(np.uint8).tobytes()
        elif kind == "delete":
            del b[at : at + size]
        elif kind == "repeat":
            b[at:at] = b[at : at + size]
        kinds.append(f"{kind}@{at}")
    return bytes(b), "bytes " + " ".join(kinds)


def _cell(rng, old: str) -> str:
    if rng.rand() < 0.2 and old:
        return old[1:] if old.startswith("-") else "-" + old
    return CELLS[rng.randint(len(CELLS))]


def mutate_rows(rows: list[list[str]], rng) -> tuple[list[list[str]], str]:
    """One to three row-level mutations of a CSV's rows (the header first)."""
    rows = [list(r) for r in rows]
    kinds = []
    for _ in range(rng.randint(1, 4)):
        body = len(rows) - 1
        kind = ("cell", "cell", "cell", "column", "dup", "shuffle", "swap", "delete", "keep",
                "header", "header_dup", "short", "long", "blank")[rng.randint(14)]  # fmt: skip
        if kind == "cell" and body:
            i, j = rng.randint(1, len(rows)), rng.randint(len(rows[0]))
            if j < len(rows[i]):
                rows[i][j] = _cell(rng, rows[i][j])
                kind = f"cell[{i},{rows[0][j]}]={rows[i][j]!r}"
        elif kind == "column" and body:  # one value in many rows of a column
            j = rng.randint(len(rows[0]))
            value = CELLS[rng.randint(len(CELLS))]
            for i in rng.randint(1, len(rows), size=rng.randint(1, body + 1)):
                if j < len(rows[i]):
                    rows[i][j] = value
            kind = f"column[{rows[0][j]}]={value!r}"
        elif kind == "dup" and body:
            i = rng.randint(1, len(rows))
            rows[i:i] = [list(rows[i])] * rng.randint(1, 4)
        elif kind == "shuffle" and body:
            order = rng.permutation(body)
            rows = [rows[0]] + [rows[1 + k] for k in order]
        elif kind == "swap" and body > 1:
            i, j = rng.randint(1, len(rows), size=2)
            rows[i], rows[j] = rows[j], rows[i]
        elif kind == "delete" and body:
            i = rng.randint(1, len(rows))
            del rows[i : i + rng.randint(1, 5)]
        elif kind == "keep" and body:  # a file cut short, or its start lost
            k = rng.randint(0, body + 1)
            rows = rows[: 1 + k] if rng.rand() < 0.5 else [rows[0], *rows[1 + k :]]
        elif kind == "header":
            j = rng.randint(len(rows[0]))
            old = rows[0][j]
            rows[0][j] = _cell(rng, old) if rng.rand() < 0.5 else old.upper() + "x"
            kind = f"header[{old}]={rows[0][j]!r}"
        elif kind == "header_dup" and len(rows[0]) > 1:
            i, j = rng.randint(len(rows[0]), size=2)
            rows[0][i] = rows[0][j]
        elif kind == "short" and body:
            i = rng.randint(1, len(rows))
            rows[i] = rows[i][: rng.randint(len(rows[i]) + 1)]
        elif kind == "long":
            i = rng.randint(len(rows))
            rows[i] = rows[i] + [_cell(rng, "1")]
        elif kind == "blank":
            rows.insert(rng.randint(1, len(rows) + 1), [])  # read_table skips blank lines
        kinds.append(kind)
    return rows, "rows " + " ".join(kinds)


_TEXT = re.compile(r">([^<>]+)<")
_ATTRIBUTE = re.compile(r' (?:lat|lon)="([^"]*)"')
_POINT = re.compile(r"<(Trackpoint|trkpt)\b.*?</(Trackpoint|trkpt)>", re.S)


def mutate_xml(text: str, rng) -> tuple[str, str]:
    """One to three TCX or GPX mutations: an element's text replaced, points dropped,
    duplicated or swapped, the sport (the track's type) renamed, a position (GPX) replaced."""
    kinds = []
    for _ in range(rng.randint(1, 4)):
        kind = ("text", "text", "text", "drop", "dup", "swap", "sport", "attr")[rng.randint(8)]
        points = [m.span() for m in _POINT.finditer(text)]
        if kind == "text":
            spans = [m.span(1) for m in _TEXT.finditer(text) if m.group(1).strip()]
            a, b = spans[rng.randint(len(spans))]
            new = _cell(rng, text[a:b]).replace("<", "").replace(">", "")
            text = text[:a] + new + text[b:]
            kind = f"text[{text[a - 30 : a]}]={new!r}"
        elif kind in ("drop", "dup") and points:
            a, b = points[rng.randint(len(points))]
            text = text[:a] + (text[a:b] * 2 if kind == "dup" else "") + text[b:]
        elif kind == "swap" and len(points) > 1:
            i, j = sorted(rng.choice(len(points), 2, replace=False))
            (a, b), (c, d) = points[i], points[j]
            text = text[:a] + text[c:d] + text[b:c] + text[a:b] + text[d:]
        elif kind == "attr" and (spans := [m.span(1) for m in _ATTRIBUTE.finditer(text)]):
            a, b = spans[rng.randint(len(spans))]  # a GPX point's position
            new = _cell(rng, text[a:b]).replace('"', "")
            text = text[:a] + new + text[b:]
            kind = f"attr={new!r}"
        elif kind == "sport":
            text = text.replace('Sport="Running"', f'Sport="{_cell(rng, "Running")}"', 1)
            text = text.replace("<type>running<", f"<type>{_cell(rng, 'running')}<", 1)
        kinds.append(kind)
    return text, "xml " + " ".join(kinds)


def mutate_arrays(arrays: dict[str, np.ndarray], rng) -> tuple[dict[str, np.ndarray], str]:
    """One to three NPZ mutations: values, dtypes, shapes, keys and rates."""
    arrays = dict(arrays)
    kinds = []
    odd = (np.nan, np.inf, -np.inf, 1e308, -1e308, 1e39, -5.0, 0.0, 1e-300)
    for _ in range(rng.randint(1, 4)):
        keys = sorted(arrays)
        if not keys:
            break
        key = keys[rng.randint(len(keys))]
        a = np.asarray(arrays[key])
        kind = ("values", "values", "dtype", "shape", "empty", "drop", "rename", "rate")[
            rng.randint(8)
        ]
        if kind == "values" and a.size and a.dtype.kind in "biuf":
            a = a.astype(np.float64)
            flat = a.reshape(-1)
            flat[rng.randint(0, a.size, size=rng.randint(1, a.size + 1))] = odd[rng.randint(9)]
        elif kind == "dtype":
            dtype = (np.int8, np.uint16, np.float16, np.complex64, np.bool_, "U3", "M8[s]",
                     "m8[s]", np.int64)[rng.randint(9)]  # fmt: skip
            with np.errstate(all="ignore"):
                a = (a.real if a.dtype.kind == "c" else a).astype(dtype)
        elif kind == "shape":
            a = a.reshape(-1)[:, None, None] if rng.rand() < 0.5 else np.asarray(a.reshape(-1)[:1])
            if rng.rand() < 0.5:
                a = a.reshape(()) if a.size == 1 else a
        elif kind == "empty":
            a = np.zeros((0,) + a.shape[1:], a.dtype)
        elif kind == "drop":
            del arrays[key]
            kinds.append(f"drop {key}")
            continue
        elif kind == "rename":
            new = ("hr_ref", "time", "vo2", "acc_x", "ppg_rate_hz", "rate_hz", "HR", "x_z", "t")
            arrays[new[rng.randint(len(new))]] = arrays.pop(key)
            kinds.append(f"rename {key}")
            continue
        elif kind == "rate":
            key = ("ppg_rate_hz", "acc_rate_hz", "hr_rate_hz", "rate_hz")[rng.randint(4)]
            values = (0.0, -1.0, np.nan, np.inf, 1e-300, 1e300, 1e-3, np.array([1.0, 2.0]), "64")
            a = np.asarray(values[rng.randint(len(values))])
        arrays[key] = a
        kinds.append(f"{kind} {key}")
    return arrays, "arrays " + " ".join(kinds)


def mutate_fit_records(rng) -> tuple[list[dict], str]:
    """Records of a FIT run with odd but encodable values, timestamps out of order, gaps."""
    records = _fit_records()
    kinds = []
    for _ in range(rng.randint(1, 4)):
        kind = ("value", "value", "none", "time", "shuffle", "dup", "cut")[rng.randint(7)]
        i = rng.randint(len(records)) if records else 0
        if kind == "value" and records:
            field, values = (
                ("heart_rate", (0, 24, 251, 255, 254)),
                ("enhanced_speed", (0.0, 65.5, 200.0, 1000.0)),
                ("cadence", (0, 254, 200)),
                ("enhanced_altitude", (-500.0, 9000.0)),
            )[rng.randint(4)]
            for j in rng.randint(0, len(records), size=rng.randint(1, len(records) + 1)):
                records[j][field] = values[rng.randint(len(values))]
        elif kind == "none" and records:
            field = ("heart_rate", "enhanced_speed", "cadence")[rng.randint(3)]
            for r in records:
                r.pop(field, None)
        elif kind == "time" and records:
            records[i]["t"] = float(rng.choice([-1e5, 1e6, 3e5, records[i]["t"] + 0.4, 0]))
        elif kind == "shuffle":
            records = [records[j] for j in rng.permutation(len(records))]
        elif kind == "dup" and records:
            records[i:i] = [dict(records[i])] * 3
        elif kind == "cut":
            records = records[: rng.randint(len(records) + 1)]
        kinds.append(kind)
    return records, "records " + " ".join(kinds)


# -- checks -----------------------------------------------------------------------------------


def _session_problems(s: Session, one_hz: bool) -> list[str]:
    """What breaks the readers' documented invariants in a session they returned."""
    out = []
    hr, vo2, x = np.asarray(s.hr), np.asarray(s.vo2), np.asarray(s.x)
    low, high = HR_RANGE_BPM
    if s.mask.dtype != np.bool_ or s.vo2_mask.dtype != np.bool_:
        out.append("masks are not bool")
    observed = hr[np.asarray(s.mask)]
    wrong = observed[~(np.isfinite(observed) & (observed >= low) & (observed <= high))]
    if wrong.size:
        out.append(f"HR under mask True is {wrong[:3]}, not finite in {low:g}-{high:g} bpm")
    if not np.all(np.isfinite(vo2[s.vo2_mask])):
        out.append("VO2 under vo2_mask True is not finite")
    if np.any(np.isinf(x)):
        bad = [c for c, b in zip(s.channels, np.isinf(x).any(0), strict=True) if b]
        out.append(f"x holds inf in channels {bad}")
    if np.any(np.isinf(np.asarray(s.subject))):
        out.append(f"subject holds inf: {s.subject}")
    if one_hz and s.length < MIN_LENGTH_S:
        out.append(f"session of {s.length} s, under the {MIN_LENGTH_S:g} s minimum")
    for kind in ("signals", "targets"):
        for name, sig in getattr(s, kind).items():
            values = np.asarray(sig.values)
            if not np.all(np.isfinite(values[np.asarray(sig.mask)])):
                out.append(f"{kind}[{name!r}] has non-finite values under mask True")
    return out


def _outcome(name: str, path: Path) -> str | None:
    """None when `READERS[name]` reads `path` cleanly or refuses it properly, else the bug."""
    try:
        result = READERS[name](path)
    except WearjaxFileError as err:
        text = str(err)
        if Path(err.path) not in (path, sidecar(path)):
            return f"WearjaxFileError names {err.path}, not the file: {text}"
        if "\n" in text or not err.problem or not err.fix:
            return f"WearjaxFileError is not one line of path, problem and fix: {text!r}"
        return None
    except WearjaxError as err:
        return f"{type(err).__name__} does not name the file: {err}"
    except Exception as err:  # anything else is the bug this test looks for
        return f"{type(err).__name__}: {str(err)[:200]}"
    if name == "decode_fit":
        return None
    sessions = result if isinstance(result, list) else [result]
    problems = [p for s in sessions for p in _session_problems(s, name in ONE_HZ)]
    return "; ".join(problems) or None


def _mutants(fmt: str, valid: Path, n_bytes: int, n_content: int):
    """(content bytes, description) of `n_bytes` byte mutants and `n_content` content ones."""
    data = valid.read_bytes()
    for seed in range(n_bytes):
        yield mutate_bytes(data, np.random.RandomState(seed))
    for seed in range(n_content):
        rng = np.random.RandomState(1000 + seed)
        if fmt.endswith(".csv"):
            delimiter = ";" if fmt == "lab.csv" else ","
            rows = list(csv.reader(io.StringIO(data.decode("utf-8")), delimiter=delimiter))
            rows, what = mutate_rows(rows, rng)
            out = io.StringIO()
            csv.writer(out, delimiter=delimiter).writerows(rows)
            yield out.getvalue().encode("utf-8"), what
        elif fmt.endswith((".tcx", ".gpx")):
            text, what = mutate_xml(data.decode("utf-8"), rng)
            yield text.encode("utf-8"), what
        elif fmt.endswith(".npz"):
            arrays, what = mutate_arrays(_npz_arrays(), rng)
            buffer = io.BytesIO()
            (np.savez_compressed if fmt == "subz.npz" else np.savez)(buffer, **arrays)
            yield buffer.getvalue(), what
        elif fmt.endswith(".fit"):
            records, what = mutate_fit_records(rng)
            path = write_fit(valid.with_name("records.fit"), records, RUN, FIT_PROFILE)
            yield path.read_bytes(), what


SCALE = int(os.environ.get("WEARJAX_FUZZ_SCALE", "1"))
"""Multiplies the mutants per format: WEARJAX_FUZZ_SCALE=20 fuzzes deeper (same seeds and more)."""
COUNTS = {  # (byte mutants, content mutants) per format
    "run.csv": (30, 50),
    "run_seconds.csv": (20, 40),
    "cpet.csv": (30, 50),
    "lab.csv": (30, 50),
    "run.fit": (50, 25),
    "run.tcx": (30, 50),
    "run.gpx": (30, 50),
    "wrist.csv": (30, 50),
    "ppg.hr.csv": (20, 40),
    "sub.npz": (50, 50),
    "subz.npz": (40, 30),
}


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_every_reader_reads_or_refuses_every_mutant_cleanly(tmp_path, fmt):
    folder = tmp_path / "valid"
    folder.mkdir()
    valid = FORMATS[fmt](folder / fmt)
    recording = folder / "ppg.csv" if fmt == "ppg.hr.csv" else valid
    read = MAIN_READER[fmt](recording)
    for s in read if isinstance(read, list) else [read]:
        assert not _session_problems(s, MAIN_READER[fmt] is not read_sampled)
    work = tmp_path / "mutants"
    work.mkdir()
    if fmt == "ppg.hr.csv":  # the recording stays valid, its sidecar is fuzzed
        (work / "ppg.csv").write_bytes(recording.read_bytes())
        target, inputs = work / "ppg.hr.csv", work / "ppg.csv"
    else:
        target = inputs = work / fmt
    bugs = []
    n_bytes, n_content = COUNTS[fmt]
    for content, what in _mutants(fmt, valid, SCALE * n_bytes, SCALE * n_content):
        target.write_bytes(content)
        for name in READERS:
            for path in dict.fromkeys([inputs, target]):
                bug = _outcome(name, path)
                if bug:
                    bugs.append(f"{fmt} [{what}] {name}({path.name}): {bug}")
    assert not bugs, f"{len(bugs)} bugs:\n" + "\n".join(bugs[:40])


def test_folder_loads_skip_mutants_with_reasons(tmp_path):
    """`load_folder` and `load_cpet_folder` over folders of mutants of every format: each file
    is read or skipped with a reason, the cache gives the same answer, and nothing else raises."""
    runs, tests = tmp_path / "runs" / "ann", tmp_path / "cpet" / "lab"
    runs.mkdir(parents=True)
    tests.mkdir(parents=True)
    for fmt, build in FORMATS.items():
        valid = build(tmp_path / fmt)
        for k, (content, _) in enumerate(_mutants(fmt, valid, 6, 6)):
            folder = tests if fmt in ("cpet.csv", "lab.csv") else runs
            name = f"{k}_{fmt}" if fmt != "ppg.hr.csv" else f"{k}_ppg.hr.csv"
            (folder / name).write_bytes(content)
            if fmt == "ppg.hr.csv":
                (folder / f"{k}_ppg.csv").write_bytes((tmp_path / "ppg.csv").read_bytes())
    cache = tmp_path / "cache"
    for load, folder in ((load_folder, runs.parent), (load_cpet_folder, tests.parent)):
        first = _load(load, folder, cache)
        assert _load(load, folder, cache) == first  # from the cache


def _load(load, folder, cache):
    kwargs = {"cache_dir": cache} if load is load_folder else {}
    try:
        sessions, skipped = load(folder, **kwargs)
    except WearjaxFileError as err:
        assert Path(err.path) == folder and "\n" not in str(err)
        return str(err)
    for s in sessions:
        assert not _session_problems(s, load is load_cpet_folder), s.source
    assert all(reason and "\n" not in reason for _, reason in skipped)
    return [(s.source, s.length) for s in sessions], [(p.name, r) for p, r in skipped]


def test_mutations_are_deterministic():
    data = b"timestamp,heart_rate\n0,120\n1,121\n"
    assert mutate_bytes(data, np.random.RandomState(3)) == mutate_bytes(
        data, np.random.RandomState(3)
    )
    rows = [["a", "b"], ["1", "2"], ["3", "4"]]
    assert mutate_rows(rows, np.random.RandomState(5)) == mutate_rows(
        rows, np.random.RandomState(5)
    )


# -- what the fuzzing found, pinned: one mutant per bug, and the one-line error it now gives ---


def _edit_csv(build, edits, delimiter=","):
    """A file of `build` with cells replaced: `edits` maps (row, column name) to the text."""

    def write(path):
        build(path)
        rows = list(csv.reader(io.StringIO(path.read_text("utf-8")), delimiter=delimiter))
        for (i, name), text in edits.items():
            rows[i][rows[0].index(name)] = text
        return _write_rows(path, rows, delimiter)

    return write


def _edit_npz(compressed=False, **changes):
    def write(path):
        arrays = _npz_arrays()
        arrays.update({k: np.asarray(v) for k, v in changes.items()})
        return _npz(path, {k: v for k, v in arrays.items() if v.size or v.ndim}, compressed)

    return write


def _corrupt_deflate(path):
    data = bytearray(_npz(path, compressed=True).read_bytes())
    data[28] ^= 0x01  # inside the first deflate stream: zlib's "invalid code lengths set"
    path.write_bytes(bytes(data))
    return path


def _tcx_cadence_1e39(path):
    path.write_text(_tcx(path).read_text().replace("RunCadence>84<", "RunCadence>1e39<"))
    return path


def _sidecar_times(*times):
    def write(path):
        _sidecar(path.with_name("ppg.hr.csv"))
        rows = [["time", "hr"], *([t, 90] for t in times)]
        _write_rows(path.with_name("ppg.hr.csv"), rows)
        return path.with_name("ppg.csv")

    return write


def _header_with_carriage_return(path):
    _run_csv(path)
    path.write_bytes(path.read_bytes().replace(b"heart_rate", b"heart\rrate", 1))
    return path


REGRESSIONS = {  # name: (write the file, reader, the error it must raise; None: it reads)
    # one record dated 1e20 s is out of time order: dropped (it overflowed the 1 Hz grid's
    # int64 once, then refused the file as spanning 2.78e16 h)
    "timestamp 1e20 s overflowed the 1 Hz grid's int64": (
        _edit_csv(_run_csv, {(76, "timestamp"): "1e20"}),
        read_running_csv,
        None,
    ),
    "timestamps -1e308 and 1e308 s overflowed the span": (
        _edit_csv(_run_seconds_csv, {(1, "timestamp"): "-1e308", (N, "timestamp"): "1e308"}),
        read_running_csv,
        r"run\.csv: records span inf h, longer than 48 h",
    ),
    "adjacent timestamps -1e308 and 1e308 s overflowed the time-order check": (
        _edit_csv(_run_seconds_csv, {(1, "timestamp"): "-1e308", (2, "timestamp"): "1e308"}),
        read_running_csv,
        r"run\.csv: records span 2\.78e\+304 h, longer than 48 h",  # 1e308 dropped
    ),
    "cadence 1e39 became inf in the float32 session": (
        _edit_csv(_run_csv, {(24, "cadence"): "1e39"}),
        read_running_csv,
        r"run\.csv: field 'cadence' holds 1e\+39, beyond the range of a float32 session",
    ),
    "fractional cadence -inf became cadence -1.8e308, overflowing stance time x cadence": (
        _edit_csv(_run_csv, {(9, "fractional_cadence"): "-inf"}),
        read_running_csv,
        None,  # reads: that record's cadence is missing (interpolated), as for any inf cell
    ),
    "VCO2 1e39 became inf": (
        _edit_csv(_cpet_csv, {(24, "VCO2_I"): "1e39"}),
        read_cpet,
        r"cpet\.csv: column 'VCO2_I' holds 1e\+39",
    ),
    "VO2 1e308 L/min overflowed float64 when converted to mL/min": (
        _edit_csv(_cpet_lab_csv, {(30, "V'O2"): "1e308"}, delimiter=";"),
        read_cpet,
        r"lab\.csv: column \"V'O2\" holds 1e\+308",
    ),
    "age 1e308 became inf in the subject": (
        _edit_csv(_cpet_csv, {(1, "age"): "1e308"}),
        read_cpet_csv,
        r"cpet\.csv: subject age_years holds 1e\+308",
    ),
    "TCX cadence 1e39 became inf": (
        _tcx_cadence_1e39,
        read_tcx,
        r"run\.tcx: field 'cadence' holds 1e\+39",
    ),
    "a sampled value -1e308 became inf": (
        _edit_csv(_wrist_csv, {(3, "acc_z"): "-1e308"}),
        read_sampled,
        r"wrist\.csv: signal 'acc' \(acc_z\) holds -1e\+308",
    ),
    "sampled times 1e308 apart overflowed": (
        lambda p: _write_rows(p, [["time", "ppg"], ["-1e308", 1], ["1e308", 2]]),
        read_sampled,
        r"wrist\.csv: the times span inf h, longer than 48 h",
    ),
    "a rate of 1e-8 Hz asked for 47 GiB": (
        _edit_npz(ppg_rate_hz=1e-8),
        read_sampled,
        r"sub\.npz: signal 'ppg' spans 7\.11e\+06 h \(256 samples at 1e-08 Hz\), longer than 48 h",
    ),
    "a rate of -1 Hz raised a WearjaxDataError without the file": (
        _edit_npz(acc_rate_hz=-1.0),
        read_sampled,
        r"sub\.npz: 'acc_rate_hz' is -1; store the rate as a positive number of Hz",
    ),
    "a NaN rate": (_edit_npz(rate_hz=np.nan), read_sampled, r"'rate_hz' is nan"),
    "a complex signal raised ComplexWarning": (
        _edit_npz(acc=np.ones((128, 3), np.complex64)),
        read_sampled,
        r"sub\.npz: array 'acc' is complex64\[128, 3\]; store each signal as numbers",
    ),
    "a corrupt deflate stream raised zlib.error": (
        _corrupt_deflate,
        read_sampled,
        r"sub\.npz: not a readable NPZ archive \(Error -3 while decompressing",
    ),
    "a reference HR at -1e20 s overflowed its grid's int64": (
        _sidecar_times(0, 1, -1e20),
        read_sampled,
        r"ppg\.hr\.csv: reference HR at -1e\+20 s is more than 48 h before the recording's start",
    ),
    "reference times 1e-320 s apart overflowed the rate": (
        _sidecar_times(0, 1e-320, 2),
        read_sampled,
        r"ppg\.hr\.csv: cannot tell the reference HR's rate from its times; pass hr_rate_hz",
    ),
    "reference times 1e-9 s apart asked for a grid of 1e11 values": (
        _sidecar_times(0, 1e-9, 100),
        read_sampled,
        r"ppg\.hr\.csv: reference HR at 100 s lies 1e\+11 values into a grid of 1e\+09 Hz",
    ),
    "a carriage return in the header raised csv.Error": (
        _header_with_carriage_return,
        read_file,
        r"run\.csv: ",
    ),
}


@pytest.mark.parametrize("name", list(REGRESSIONS))
def test_what_fuzzing_found_is_refused_in_one_line(tmp_path, name):
    write, reader, message = REGRESSIONS[name]
    suffix = ".npz" if "_npz" in getattr(write, "__qualname__", "") else None
    names = {read_running_csv: "run.csv", read_cpet_csv: "cpet.csv", read_tcx: "run.tcx",
             read_file: "run.csv"}  # fmt: skip
    file = "sub.npz" if suffix or write is _corrupt_deflate else names.get(reader)
    if reader is read_cpet:
        file = "lab.csv" if "L/min" in name else "cpet.csv"
    if reader is read_sampled and file is None:
        file = "ppg.csv" if "reference" in name else "wrist.csv"
    path = write(tmp_path / file)
    if message is None:
        session = reader(path)
        assert not _session_problems(session, one_hz=True)
        assert np.nanmax(np.abs(session.x)) < 1e4
        return
    with pytest.raises(WearjaxFileError, match=message) as err:
        reader(path)
    assert "\n" not in str(err.value)
