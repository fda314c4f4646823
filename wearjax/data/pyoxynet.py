"""The real cardiopulmonary exercise tests shipped in the `pyoxynet` package (MIT).

`pyoxynet/data_test/ramp_real_test_*.csv`: 88 incremental (ramp) tests at 1 Hz with VO2, HR and
the subject's age, height, weight and sex (columns in `wearjax.data.csv`). The files are read
directly with `read_cpet_csv`, without importing the package (its own `draw_real_test()` adds
noise); they are found through `importlib.util.find_spec`. Each test is one subject. Tests
whose HR is all zero are skipped with a logged reason.

Install with `pip install wearjax[data]` (or `pip install pyoxynet`).
"""

from __future__ import annotations

import importlib.util
import logging
import re
from pathlib import Path

import numpy as np

from wearjax.data.csv import read_cpet_csv
from wearjax.data.folders import Skipped
from wearjax.data.readers import HR_RANGE_BPM, hr_in_range
from wearjax.data.types import Session
from wearjax.errors import WearjaxDataError, WearjaxError

logger = logging.getLogger(__name__)

INSTALL_HINT = "install it with `pip install wearjax[data]` (or `pip install pyoxynet`)"


class PyoxynetMissing(WearjaxError):
    """The `pyoxynet` package (and so its exercise tests) is not installed."""


def pyoxynet_data_folder() -> Path:
    """The folder of pyoxynet's test files; `PyoxynetMissing` when the package is absent."""
    spec = importlib.util.find_spec("pyoxynet")
    if spec is None or not spec.submodule_search_locations:
        raise PyoxynetMissing(
            f"the pyoxynet exercise tests need the pyoxynet package: {INSTALL_HINT}"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "data_test"
    if not folder.is_dir():
        raise PyoxynetMissing(
            f"pyoxynet is installed at {folder.parent} but has no data_test folder: reinstall it"
        )
    return folder


def _test_number(path: Path) -> int:
    match = re.search(r"(\d+)$", path.stem)
    return int(match.group(1)) if match else -1


def load_ramp_tests(limit: int | None = None) -> tuple[list[Session], list[Skipped]]:
    """The ramp tests as sessions (HR and VO2, no channels), in test-number order, and the
    skipped files with their reasons. `limit` keeps the first `limit` usable tests."""
    files = sorted(pyoxynet_data_folder().glob("ramp_real_test_*.csv"), key=_test_number)
    if not files:
        raise PyoxynetMissing(f"no ramp_real_test_*.csv in pyoxynet's data: {INSTALL_HINT}")
    sessions, skipped = [], []
    for path in files:
        if limit is not None and len(sessions) >= limit:
            break
        try:
            sessions.append(read_cpet_csv(path, require_hr=True))
        except WearjaxDataError as err:
            logger.warning("skipping %s: %s", path.name, err)
            skipped.append(Skipped(path, str(err)))
    return sessions, skipped


DOMAINS = ("moderate", "heavy", "severe")  # the files' `domain` column: -1, 0, 1
DOMAIN_CHANNELS = ("HR_I", "VO2_I", "VCO2_I", "VE_I")


def _read_test(path: Path, window_s: int, skipped: list[Skipped]) -> dict | None:
    """The columns of one test by name, or None (its reason logged and appended to `skipped`)
    when it lacks a column of `DOMAIN_CHANNELS` or `domain`, is shorter than `window_s`, has
    heart rate in `HR_RANGE_BPM` in under half its seconds, or a domain label outside -1, 0,
    1. HR outside that range (a chest strap's dropout reads 0) is NaN, so the windows over it
    are left out as every window with a missing value is."""
    with path.open() as f:
        names = [n.strip() for n in f.readline().split(",")]
    values = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    table = {n: values[:, i] for i, n in enumerate(names) if i < values.shape[1]}
    missing = [c for c in (*DOMAIN_CHANNELS, "domain") if c not in table]
    reason = None
    if missing:
        reason = f"no column {missing[0]}"
    elif len(values) < window_s:
        reason = f"{len(values)} s, shorter than one {window_s} s window"
    elif not np.any(table["HR_I"] > HR_RANGE_BPM[0]):
        reason = "no heart rate (all zero)"
    elif (seen := int(np.sum(hr_in_range(table["HR_I"])))) < 0.5 * len(values):
        reason = f"heart rate in {HR_RANGE_BPM[0]:g}-{HR_RANGE_BPM[1]:g} bpm in only {seen} of "
        reason += f"{len(values)} s"
    elif not np.all(np.isin(table["domain"], (-1, 0, 1))):
        reason = "a domain label outside -1, 0, 1"
    if reason:
        logger.warning("skipping %s: %s", path.name, reason)
        skipped.append(Skipped(path, reason))
        return None
    table["HR_I"] = np.where(hr_in_range(table["HR_I"]), table["HR_I"], np.nan)
    return table


def resting_series(window_s: int = 60) -> tuple[list[np.ndarray], list[Skipped]]:
    """HR, VO2, VCO2 and VE `[T, 4]` (1 Hz, `DOMAIN_CHANNELS` order) of pyoxynet's 50
    `resting_real_test_*.csv` files, unlabelled use only (a pretraining corpus): tests from
    rest into exercise of other subjects than the ramp tests (no age, height, weight and sex in
    common with any of them). Unusable files are skipped as `domain_windows` skips them."""
    files = sorted(pyoxynet_data_folder().glob("resting_real_test_*.csv"), key=_test_number)
    series, skipped = [], []
    for path in files:
        table = _read_test(path, window_s, skipped)
        if table is not None:
            series.append(np.stack([table[c] for c in DOMAIN_CHANNELS], axis=-1))
    if not series:
        raise PyoxynetMissing(
            f"no usable resting_real_test_*.csv in pyoxynet's data: {INSTALL_HINT}"
        )
    return series, skipped


def domain_windows(window_s: int = 60, hop_s: int = 15):
    """Windows `[N, window_s, 4]` of HR, VO2, VCO2 and VE (1 Hz) from every ramp test with HR,
    labelled with the metabolic intensity domain (moderate / heavy / severe, set by experts in
    the files' `domain` column) at the window's last second, one subject per test. A test
    without HR, without the columns, or shorter than one window is skipped with its reason.
    Returns a `data.imu.LabelledWindows` and the skipped files."""
    from wearjax.data.imu import LabelledWindows, check_windows, windows

    files = sorted(pyoxynet_data_folder().glob("ramp_real_test_*.csv"), key=_test_number)
    xs, ys, subjects, skipped = [], [], [], []
    for path in files:
        table = _read_test(path, window_s, skipped)
        if table is None:
            continue
        series = np.stack([table[c] for c in DOMAIN_CHANNELS], axis=-1)
        w = windows(series, window_s, hop_s)
        end = np.arange(len(w)) * hop_s + window_s - 1
        keep = np.all(np.isfinite(w), axis=(1, 2))
        if not keep.any():  # else it takes a subject id and leaves the numbering a hole
            skipped.append(Skipped(path, f"no {window_s} s window without a missing value"))
            continue
        xs.append(w[keep])
        ys.append(table["domain"][end][keep].astype(np.int32) + 1)
        subjects += [len(xs) - 1] * int(keep.sum())
    if not xs:
        raise WearjaxDataError("no usable pyoxynet test for domain windows: " + skipped[0].reason)
    x = check_windows(np.concatenate(xs), "pyoxynet domain windows")
    windows_set = LabelledWindows(
        x, np.concatenate(ys), np.asarray(subjects, np.int32), np.asarray(subjects, np.int32),
        DOMAINS, ("hr", "vo2", "vco2", "ve"), {"cardiac": (0,), "metabolic": (1, 2, 3)}, 1.0,
    )  # fmt: skip
    return windows_set, skipped
