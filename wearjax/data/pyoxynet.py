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

from wearjax.data.csv import read_cpet_csv
from wearjax.data.folders import Skipped
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
