"""What the XML exports (TCX: `wearjax.data.tcx`; GPX: `wearjax.data.gpx`) share: the root
element, ISO 8601 times and numbers written as text."""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path

import numpy as np

from wearjax.data.readers import read_bytes
from wearjax.errors import WearjaxFileError

logger = logging.getLogger(__name__)


def xml_root(path: Path, tag: str, again: str, export: str) -> ET.Element:
    """The root element of an XML file whose root is `tag` (any namespace). `WearjaxFileError`
    for invalid XML (an unknown declared encoding too), with `again` as the fix, or for
    another root, naming `export` as what to pass."""
    data = read_bytes(path)
    try:
        root = ET.parse(BytesIO(data)).getroot()
    except ValueError:  # expat reads no multi-byte declared encoding (GBK, Shift_JIS): decode
        root = _decoded_root(data, path, again)  # it here (until 2026-12-07 a raw ValueError)
    except (ET.ParseError, LookupError) as err:  # LookupError: an unknown declared encoding
        raise WearjaxFileError(path, f"not valid XML ({err})", again) from err
    if not root.tag.endswith(tag):
        fmt = "TCX" if tag == "TrainingCenterDatabase" else tag.upper()
        raise WearjaxFileError(
            path, f"not a {fmt} file (its root element is {root.tag!r})", f"pass {export}"
        )
    return root


def _decoded_root(data: bytes, path: Path, again: str) -> ET.Element:
    """The root of XML whose declaration names an encoding expat cannot read, decoded by
    Python's codec of that name and parsed without the declaration."""
    declared = re.match(rb"\s*<\?xml[^>]*encoding=[\"']([A-Za-z0-9._-]+)[\"'][^>]*\?>", data)
    try:
        if declared is None:
            raise ValueError("no encoding declared")
        text = data[declared.end() :].decode(declared.group(1).decode("ascii"))
        return ET.fromstring(text)
    except (ValueError, LookupError, ET.ParseError) as err:  # UnicodeDecodeError is a ValueError
        raise WearjaxFileError(path, f"not valid XML ({err})", again) from err


def check_times(
    texts: list[str | None], time: np.ndarray, path: str | Path, fmt: str, again: str
) -> None:
    """Name time texts of an XML format (`fmt`: "TCX", "GPX") that are present but unreadable
    (`time` NaN there): every one refuses the file (`again`: how to get a good one), some are
    said (their points are dropped)."""
    bad = [t for t, v in zip(texts, time, strict=True) if t and t.strip() and np.isnan(v)]
    if not bad:
        return
    if len(bad) == sum(bool(t and t.strip()) for t in texts):
        raise WearjaxFileError(
            path,
            f"no point's time is readable (e.g. {bad[0]!r})",
            f"{again}: {fmt} times are ISO 8601, e.g. 2021-03-24T21:40:55Z",
        )
    logger.warning("%s: %d points dropped: time unreadable (e.g. %r)", path, len(bad), bad[0])


def iso_seconds(text: str | None) -> float:
    """POSIX seconds of an ISO 8601 time (UTC when it names no zone); NaN when unreadable."""
    if not text:
        return np.nan
    try:
        moment = datetime.fromisoformat(text.strip().replace("z", "Z"))  # RFC 3339 allows z
    except ValueError:
        return np.nan
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def number(text: str | None) -> float:
    """A number written as text; NaN when absent or unreadable."""
    try:
        return float(text) if text else np.nan
    except ValueError:
        return np.nan
