"""The rows and cells of a CPET export (`data.cpet`): any delimiter, decimal commas, clock
times; every unreadable cell one error naming its line and column."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wearjax.data.csv import decode_text, delimiter_of, line_of, split_rows
from wearjax.data.readers import read_bytes
from wearjax.errors import WearjaxFileError


def read_rows(path: Path) -> tuple[list[str], list[list[str]], bool]:
    """Header, rows and whether a decimal comma is used; any delimiter of `,`, `;`, tab."""
    text = decode_text(read_bytes(path), path, fallback="cp1252")
    first = text.split("\n", 1)[0]
    delimiter = delimiter_of(first)
    rows = split_rows(text, delimiter, path)
    if len(rows) < 2:
        raise WearjaxFileError(path, "the CSV has no rows under a header", "export the test again")
    return [cell.strip() for cell in rows[0]], rows.after_header(), delimiter != ","


def at(row: list[str], j: int) -> str:
    return row[j].strip() if j < len(row) else ""


def is_number(cell: str, comma: bool) -> bool:
    try:
        float(cell.replace(",", ".") if comma else cell)
    except ValueError:
        return not cell  # an empty cell is a missing number
    return True


def cells(rows, j, name, path, comma, first_line, parse) -> np.ndarray:
    """Column j as float64; empty cells NaN; an unreadable cell raises, naming its line."""
    out = np.full(len(rows), np.nan)
    for i, row in enumerate(rows):
        cell = at(row, j)
        if not cell:
            continue
        try:
            out[i] = parse(cell.replace(",", ".") if comma else cell)
        except ValueError as err:
            raise WearjaxFileError(
                path,
                f"line {line_of(rows, i, first_line)}, column {name!r}: cannot read {cell!r}",
                "times are seconds or m:ss; values are numbers (empty for missing)",
            ) from err
    return out


def clock(cell: str) -> float:
    """Seconds of `"83.5"`, `"1:23.5"` (m:ss), `"0:01:23"` (h:mm:ss); `"-1:30"` is -90 s."""
    sign = -1.0 if cell.strip().startswith("-") else 1.0  # a rest phase before the test's 0:00
    parts = cell.strip().lstrip("+-").split(":")
    if len(parts) > 3 or any(p.strip()[:1] in ("-", "+") for p in parts):
        raise ValueError(cell)
    seconds = 0.0
    for part in parts:
        seconds = seconds * 60.0 + float(part)
    return sign * seconds
