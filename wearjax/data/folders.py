"""Files and folders of recordings to sessions: reader dispatch, cohorts and a parse cache.

`read_file` picks the reader by suffix (`.fit`, `.tcx`, `.gpx`, `.npz` sampled signals, `.csv`: CPET
when the header has `VO2_I`, sampled signals when it has a time column and a sensor column such
as `ppg` or `acc_x`, else a running export). A sampled recording's reference-HR sidecar
`NAME.hr.csv` is read with it, not on its own. `load_folder` reads every recording under a
folder into `Session`s, naming runners by subfolder (`folder/runner/file`; files directly in
`folder` belong to a runner named after the folder) or by a manifest CSV with columns
`file,runner[,height_m,weight_kg,age_years,sex]` (`file` relative to the folder; `sex` M/F).
Files that cannot be used are listed as `Skipped` with the reason, and the load goes on. Parsed
sessions are cached as `.npz` files keyed by the SHA-256 of the file's bytes (and its sidecar's)
and the reader settings, so a second load does not parse again.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import logging
import os
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np

from wearjax.data.csv import decode_text, delimiter_of, read_csv
from wearjax.data.garmin_fit import read_fit
from wearjax.data.gpx import read_gpx
from wearjax.data.readers import MAX_GAP_S, SUBJECT_RANGES, check_hr, read_bytes
from wearjax.data.sampled import is_sampled_csv, is_sidecar, read_sampled, sidecar
from wearjax.data.tcx import read_tcx
from wearjax.data.types import SUBJECT_FIELDS, Session, Signal
from wearjax.errors import WearjaxDataError, WearjaxFileError

logger = logging.getLogger(__name__)

SUFFIXES = (".fit", ".tcx", ".gpx", ".csv", ".npz")
CACHE_VERSION = 9  # 9: FIT session boundaries and profiles, whole-number sampled times,
# sidecars in other case; 8: speed from a distance over a 10 s span; 7: stops read as stops
"""Bumped whenever a reader's output changes, so stale cache entries are not used."""

MANIFEST_COLUMNS = ("file", "runner")
MANIFEST_SUBJECT = ("height_m", "weight_kg", "age_years", "sex")


class Skipped(NamedTuple):
    """A file `load_folder` could not use, and why."""

    path: Path
    reason: str


def read_file(
    path: str | Path,
    *,
    runner: str | None = None,
    max_gap_s: float = MAX_GAP_S,
    require_hr: bool = False,
    units: dict[str, str] | None = None,
    pauses: str = "stop",
) -> list[Session]:
    """The sessions of one recording, with the reader its suffix names. `units` declares a
    running export's units (`{"speed": "km/h", "cadence": "steps/min"}`; FIT, TCX and GPX
    speed is always m/s, so only their cadence unit applies); `pauses` says how a running
    recording's pauses are filled (`data.readers.PAUSES`: "stop" sets speed and cadence to 0
    where the distance stood still, "hold" holds them)."""
    path = Path(path)
    suffix = path.suffix.lower()
    options = dict(runner=runner, max_gap_s=max_gap_s, require_hr=require_hr, pauses=pauses)
    cadence = (units or {}).get("cadence", "strides/min")
    if suffix == ".fit":
        return read_fit(path, **options, cadence_unit=cadence)
    if suffix == ".tcx":
        return read_tcx(path, **options, cadence_unit=cadence)
    if suffix == ".gpx":
        return read_gpx(path, **options, cadence_unit=cadence)
    if suffix == ".npz" or (suffix == ".csv" and is_sampled_csv(path)):
        return [read_sampled(path, runner=runner, require_hr=require_hr)]
    if suffix == ".csv":
        return [read_csv(path, **options, units=units)]
    raise _unsupported(path)


def _unsupported(path: Path) -> WearjaxFileError:
    return WearjaxFileError(
        path,
        f"unsupported file type {path.suffix or '(no suffix)'!r}",
        f"wearjax reads {', '.join(SUFFIXES)} files",
    )


def default_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/wearjax`, or `~/.cache/wearjax`."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "wearjax"


def load_folder(
    path: str | Path,
    *,
    manifest: str | Path | None = None,
    cache_dir: str | Path | None = None,
    require_hr: bool = False,
    max_gap_s: float = MAX_GAP_S,
    units: dict[str, str] | None = None,
    fix: str | None = None,
    pauses: str = "stop",
) -> tuple[list[Session], list[Skipped]]:
    """Every usable session under `path`, and the files skipped with their reasons.

    Runners come from `manifest` when given (only the files it lists are read; manifest
    subject values override those a file carries), else from subfolders. `cache_dir` defaults
    to `default_cache_dir()`. With `require_hr`, files without heart rate are skipped; `units`
    and `pauses` as for `read_file`. Raises
    `WearjaxFileError` naming the folder when no session is usable (with `fix` as its advice:
    the caller knows what recordings it reads), or the manifest when it cannot be read.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise WearjaxFileError(folder, "not a folder", "pass the folder holding the recordings")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    entries = _manifest(Path(manifest), folder) if manifest is not None else None
    skipped: list[Skipped] = []
    sessions: list[Session] = []
    for file in _recordings(folder, exclude=(cache, Path(manifest) if manifest else None)):
        rel = file.relative_to(folder).as_posix()
        if entries is not None:
            if rel not in entries:
                skipped.append(Skipped(file, f"not listed in the manifest {manifest}"))
                continue
            runner, subject = entries.pop(rel)
        else:
            parts = file.relative_to(folder).parts
            runner, subject = (parts[0] if len(parts) > 1 else folder.resolve().name), {}
        try:
            if file.suffix.lower() not in SUFFIXES:
                raise _unsupported(file)
            found = _cached_read(file, cache, max_gap_s=max_gap_s, units=units, pauses=pauses)
            found = [_attach(s, file, runner, subject) for s in found]
            if require_hr:  # parts without HR are left out; a file with none is skipped
                with_hr = [s for s in found if s.mask.any()]
                for s in found:
                    if not s.mask.any():
                        logger.warning(
                            "%s: left out part %s: it has no heart rate", file, s.workout
                        )
                found = with_hr or [check_hr(found[0], file)]
        except WearjaxDataError as err:
            skipped.append(Skipped(file, skip_reason(err, file)))
            continue
        sessions.extend(found)
    for rel in entries or {}:
        skipped.append(Skipped(folder / rel, f"listed in the manifest {manifest} but missing"))
    check_usable(
        folder, sessions, skipped, "recording",
        fix or f"add {', '.join(SUFFIXES)} running recordings, one subfolder per runner",
    )  # fmt: skip
    return sessions, skipped


def skip_reason(err: WearjaxDataError, file: Path | None = None) -> str:
    """The one-line reason `file` is skipped: a file error's problem and fix (naming the file
    at fault when it is another, such as a reference-HR sidecar), or the error."""
    if not isinstance(err, WearjaxFileError):
        return str(err)
    other = file is not None and err.path is not None and Path(err.path) != Path(file)
    return f"{Path(err.path).name + ': ' if other else ''}{err.problem}; {err.fix}"


def check_usable(folder: Path, sessions: list, skipped: list[Skipped], what: str, fix: str):
    """Log each skipped file; raise `WearjaxFileError` naming the folder when none is usable."""
    for s in skipped:
        logger.info("skipped %s: %s", s.path, s.reason)
    if not sessions:
        reasons = "; ".join(f"{s.path.name}: {s.reason}" for s in skipped[:5])
        raise WearjaxFileError(
            folder,
            f"no usable {what} ({len(skipped)} files skipped{': ' if reasons else ''}{reasons})",
            fix,
        )


def _recordings(folder: Path, exclude: tuple[Path | None, ...]) -> list[Path]:
    """Files under `folder`, sorted, without hidden ones or the cache and manifest."""
    excluded = [p.resolve() for p in exclude if p is not None]
    out = []
    for file in sorted(folder.rglob("*")):
        rel = file.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or not file.is_file():
            continue
        if is_sidecar(file):
            continue
        resolved = file.resolve()
        if any(resolved == e or e in resolved.parents for e in excluded):
            continue
        out.append(file)
    return out


def _manifest(manifest: Path, folder: Path) -> dict[str, tuple[str, dict]]:
    """Manifest rows: relative file path -> (runner, subject values)."""
    # as Excel writes it: UTF-8 or UTF-16, else the locale's 8-bit code page; `;` or tabs, and
    # with them decimal commas
    text = decode_text(read_bytes(manifest), manifest, fallback="cp1252")
    delimiter = delimiter_of(text.split("\n", 1)[0])
    rows = list(csv.DictReader(io.StringIO(text), delimiter=delimiter))
    header = [h.strip() for h in (rows[0].keys() if rows else [])]
    missing = [c for c in MANIFEST_COLUMNS if c not in header]
    if not rows or missing:
        raise WearjaxFileError(
            manifest,
            f"manifest has no rows or lacks columns {missing or list(MANIFEST_COLUMNS)}",
            f"write a CSV with columns file,runner[,{','.join(MANIFEST_SUBJECT)}]",
        )
    entries = {}
    for line, row in enumerate(rows, start=2):
        row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
        subject = {}
        try:
            for field in MANIFEST_SUBJECT[:3]:
                if row.get(field):
                    value = row[field] if delimiter == "," else row[field].replace(",", ".")
                    subject[field] = float(value)
        except ValueError as err:
            raise WearjaxFileError(
                manifest, f"line {line}: {err}", "subject values must be numbers"
            ) from err
        for field, value in subject.items():
            low, high = SUBJECT_RANGES[field]
            if not low <= value <= high:  # NaN and inf fail too
                unit = field.rsplit("_", 1)[1]
                raise WearjaxFileError(
                    manifest,
                    f"line {line}: {field} is {row[field]}, outside {low:g}-{high:g} {unit}",
                    f"give {field} in {unit} (height 1.8, not 180), or leave it empty",
                )
        sex = row.get("sex", "").lower()
        if sex:
            if sex not in ("m", "male", "f", "female"):
                raise WearjaxFileError(
                    manifest, f"line {line}: unknown sex {row['sex']!r}", "use M or F"
                )
            subject["sex_male"] = 1.0 if sex.startswith("m") else 0.0
        file = Path(row["file"])
        if file.is_absolute():
            if folder.resolve() not in file.resolve().parents:
                raise WearjaxFileError(
                    manifest, f"line {line}: {file} is outside {folder}", "list files in it"
                )
            file = file.resolve().relative_to(folder.resolve())
        entries[file.as_posix()] = (row["runner"], subject)
    return entries


def _attach(session: Session, file: Path, runner: str, subject: dict) -> Session:
    """The session with its runner, source, workout name and manifest subject values."""
    values = np.array(session.subject, np.float32)
    for i, field in enumerate(SUBJECT_FIELDS):
        if field in subject:
            values[i] = subject[field]
    return dataclasses.replace(
        session,
        subject=values,
        runner=runner,
        source=str(file),
        workout=file.stem + session.workout,
    )


def _cached_read(
    file: Path,
    cache: Path,
    *,
    max_gap_s: float,
    units: dict[str, str] | None = None,
    pauses: str = "stop",
) -> list[Session]:
    """Sessions of `file` from the cache, or parsed and stored there.

    Cached sessions carry only the file's content: `workout` holds the suffix after the file's
    stem (`""` or `"#2"`) and `runner`/`source` are filled in by the caller. A file's reading
    error is cached too, and raised again naming the file, unless a missing package caused it.
    """
    content = read_bytes(file)
    side = sidecar(file)
    if file.suffix.lower() in (".csv", ".npz") and side.is_file():
        try:  # a sampled recording reads it (and names it when it is unusable); others do not
            content += b"\0sidecar\0" + read_bytes(side)
        except WearjaxFileError:
            content += b"\0sidecar unreadable\0"
    digest = hashlib.sha256(content).hexdigest()
    settings = f"v{CACHE_VERSION}-gap{max_gap_s:g}-{file.suffix.lower().lstrip('.')}"
    if units:  # read with other units: another entry ("/" cannot be in a file name)
        declared = "-".join(f"{k}={v}" for k, v in sorted(units.items()))
        settings += "-" + declared.replace("/", "per")
    if pauses != "stop":
        settings += f"-{pauses}"
    entry = cache / f"{digest}-{settings}.npz"
    if entry.exists():
        try:
            stored = _load_entry(entry)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as err:
            logger.warning("ignoring unreadable cache entry %s (%s)", entry, err)
        else:
            if isinstance(stored, tuple):
                raise WearjaxFileError(file, *stored)
            return stored
    try:
        sessions = read_file(file, max_gap_s=max_gap_s, units=units, pauses=pauses)
    except WearjaxFileError as err:
        # the file's own problem is cached; a missing package (the FIT SDK) is not the file's:
        # once installed, the next read must parse the file
        if err.path == file and not isinstance(err.__cause__, ImportError):
            _store_entry(entry, (err.problem, err.fix))
        raise
    parts = [
        dataclasses.replace(s, runner="", source="", workout=s.workout.removeprefix(file.stem))
        for s in sessions
    ]
    _store_entry(entry, parts)
    return parts


def _store_entry(entry: Path, content: list[Session] | tuple[str, str]) -> None:
    """Write sessions, or an error's (problem, fix), to `entry` atomically; warn on failure."""
    if isinstance(content, tuple):
        arrays = {"error": np.array(content, dtype=np.str_)}
    else:
        arrays = {"n_sessions": np.array(len(content))}
        for i, s in enumerate(content):
            for name in ("x", "hr", "vo2", "mask", "vo2_mask", "subject"):
                arrays[f"{i}/{name}"] = np.asarray(getattr(s, name))
            arrays[f"{i}/channels"] = np.array(s.channels, dtype=np.str_)
            arrays[f"{i}/workout"] = np.array(s.workout, dtype=np.str_)
            arrays[f"{i}/metadata"] = np.array(s.metadata, dtype=np.str_).reshape(-1, 2)
            for kind in ("signals", "targets"):
                named = getattr(s, kind)
                arrays[f"{i}/{kind}"] = np.array(list(named), dtype=np.str_)
                for j, signal in enumerate(named.values()):
                    key = f"{i}/{kind}/{j}"
                    arrays[f"{key}/values"] = np.asarray(signal.values)
                    arrays[f"{key}/mask"] = np.asarray(signal.mask)
                    arrays[f"{key}/rate_hz"] = np.array(signal.rate_hz)
                    arrays[f"{key}/channels"] = np.array(signal.channels, dtype=np.str_)
                    arrays[f"{key}/units"] = np.array(signal.units, dtype=np.str_)
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=entry.parent, suffix=".tmp")
    except OSError as err:
        logger.warning("cannot write cache entry %s (%s)", entry, err)
        return
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)
        os.replace(tmp, entry)
    except OSError as err:
        logger.warning("cannot write cache entry %s (%s)", entry, err)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _load_entry(entry: Path) -> list[Session] | tuple[str, str]:
    # from bytes: np.load of a path leaves the file open when the archive is damaged
    with np.load(io.BytesIO(entry.read_bytes()), allow_pickle=False) as z:
        if "error" in z:
            problem, fix = (str(v) for v in z["error"])
            return problem, fix
        return [
            Session(
                x=z[f"{i}/x"],
                hr=z[f"{i}/hr"],
                vo2=z[f"{i}/vo2"],
                mask=z[f"{i}/mask"],
                vo2_mask=z[f"{i}/vo2_mask"],
                subject=z[f"{i}/subject"],
                runner="",
                channels=tuple(str(c) for c in z[f"{i}/channels"]),
                workout=str(z[f"{i}/workout"]),
                signals=_load_signals(z, f"{i}/signals"),
                targets=_load_signals(z, f"{i}/targets"),
                metadata=tuple((str(k), str(v)) for k, v in z[f"{i}/metadata"]),
            )
            for i in range(int(z["n_sessions"]))
        ]


def _load_signals(z, prefix: str) -> dict[str, Signal]:
    return {
        str(name): Signal(
            values=z[f"{prefix}/{j}/values"],
            rate_hz=float(z[f"{prefix}/{j}/rate_hz"]),
            mask=z[f"{prefix}/{j}/mask"],
            channels=tuple(str(c) for c in z[f"{prefix}/{j}/channels"]),
            units=tuple(str(u) for u in z[f"{prefix}/{j}/units"]),
        )
        for j, name in enumerate(z[prefix])
    }
