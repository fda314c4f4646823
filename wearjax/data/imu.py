"""Labelled windows of inertial (and other) channels for activity recognition.

`LabelledWindows` holds equal-length windows `x [N, T, C]` with a class per window, the subject and
source recording of each, the channel names and the channels of each modality. Readers:

- `basic_motions()`: aeon's BasicMotions (a smartwatch's accelerometer and gyroscope at
  10 Hz, 10 s per recording, 4 classes: standing, walking, running, badminton; four
  participants, the official 40/40 train/test split, kept in `official_train`);
- `watch()`: seglearn's `watch` set (a smartwatch's accelerometer and gyroscope at 50 Hz, 140
  recordings of 7 shoulder exercises by 10 subjects), each recording cut into windows of
  `window_s` seconds every `hop_s` seconds; a recording shorter than one window is skipped
  with a warning.

- `read_windows(path)`: a researcher's own labelled windows, one NPZ file (`read_windows`
  says which arrays it takes).

The first two read the files the packages ship (`pip install wearjax[data]`); nothing is
downloaded.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import numpy as np

from wearjax.errors import WearjaxDataError

logger = logging.getLogger(__name__)

IMU_MODALITIES = {"acc": (0, 1, 2), "gyro": (3, 4, 5)}


class LabelledWindows(NamedTuple):
    x: np.ndarray  # [N, T, C] float32
    y: np.ndarray  # [N] int32 class index
    subject: np.ndarray  # [N] int32, 0..n_subjects-1 (-1: unknown)
    recording: np.ndarray  # [N] int32 source recording of each window
    classes: tuple[str, ...]
    channels: tuple[str, ...]
    modalities: dict[str, tuple[int, ...]]  # modality -> channel indices
    rate: float  # Hz
    official_train: np.ndarray | None = None  # [N] bool, where the set has an official split

    @property
    def n_subjects(self) -> int:
        return int(self.subject.max()) + 1


def check_windows(x: np.ndarray, name: str) -> np.ndarray:
    """`x` as float32, or a clear error if any value is not finite."""
    x = np.asarray(x, np.float32)
    bad = ~np.isfinite(x)
    if bad.any():
        n = int(bad.any(axis=(1, 2)).sum())
        raise WearjaxDataError(
            f"{name}: {n} windows hold NaN or inf values; drop or interpolate them first"
        )
    return x


def windows(series: np.ndarray, length: int, hop: int) -> np.ndarray:
    """Windows `[W, length, C]` of `series [T, C]` every `hop` samples (W may be 0)."""
    if length < 1 or hop < 1:
        raise WearjaxDataError(
            f"windows of {length} samples every {hop}: both must be at least one sample; "
            "give a positive window and hop"
        )
    n = 0 if len(series) < length else 1 + (len(series) - length) // hop
    idx = np.arange(n)[:, None] * hop + np.arange(length)[None]
    return series[idx]


def _require(module: str):
    try:
        return __import__(module, fromlist=["datasets"])
    except ImportError as err:
        raise WearjaxDataError(
            f"this dataset ships with the {module} package: pip install 'wearjax[data]'"
        ) from err


def basic_motions() -> LabelledWindows:
    """aeon's BasicMotions, train then test (`official_train` marks the official 40)."""
    datasets = _require("aeon.datasets")
    parts = [datasets.load_basic_motions(split=s) for s in ("train", "test")]
    x = np.concatenate([p[0] for p in parts]).transpose(0, 2, 1)  # [N, 100, 6]
    labels = np.concatenate([p[1] for p in parts])
    classes = ("standing", "walking", "running", "badminton")
    y = np.asarray([classes.index(str(v).lower()) for v in labels], np.int32)
    n = len(y)
    return LabelledWindows(
        check_windows(x, "BasicMotions"), y, np.full(n, -1, np.int32), np.arange(n, dtype=np.int32),
        classes, ("acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"), dict(IMU_MODALITIES),
        10.0, np.arange(n) < len(parts[0][1]),
    )  # fmt: skip


def watch(window_s: float = 4.0, hop_s: float = 2.0) -> LabelledWindows:
    """seglearn's `watch` set cut into windows (module docstring); subjects renumbered 0..n-1
    over the windows kept (all 10 at the default window)."""
    datasets = _require("seglearn.datasets")
    d = datasets.load_watch()
    rate = 50.0
    length, hop = round(window_s * rate), round(hop_s * rate)
    _, subject_index = np.unique(np.asarray(d["subject"]), return_inverse=True)
    xs, ys, subjects, recordings = [], [], [], []
    for i, (series, label) in enumerate(zip(d["X"], d["y"], strict=True)):
        w = windows(np.asarray(series, np.float32), length, hop)
        if len(w) == 0:
            logger.warning(
                "watch recording %d: %d samples, shorter than one window; skipped", i, len(series)
            )
            continue
        xs.append(w)
        ys += [int(label)] * len(w)
        subjects += [int(subject_index[i])] * len(w)
        recordings += [i] * len(w)
    if not xs:
        raise WearjaxDataError(
            f"watch: no recording holds one {window_s:g} s window (the longest has "
            f"{max(len(r) for r in d['X']) / rate:g} s); give a shorter window_s"
        )
    # numbered over the windows kept: a subject whose recordings are all too short leaves no gap
    _, subjects = np.unique(np.asarray(subjects), return_inverse=True)
    return LabelledWindows(
        check_windows(np.concatenate(xs), "watch"), np.asarray(ys, np.int32),
        subjects.astype(np.int32), np.asarray(recordings, np.int32),
        tuple(str(c).lower() for c in d["y_labels"]),
        ("acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"), dict(IMU_MODALITIES), rate,
    )  # fmt: skip


def _text(values: np.ndarray, name: str, key: str) -> np.ndarray:
    """`values` as str (bytes decoded), or one line naming the file and the array."""
    try:
        return np.asarray(values).astype(str)
    except UnicodeDecodeError as err:
        raise WearjaxDataError(
            f"{name}: {key} holds bytes that are not text; save it as str"
        ) from err


def _ids(values: np.ndarray, name: str, key: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Integer codes `0..K-1` of `values [N]` (numbers or text) and the sorted names; a
    missing value (NaN, a negative number for `subject`, `MISSING_TEXT`) is refused, naming
    the file `name` and the array `key`. Numbers sort as numbers: labels 0..11 keep their
    codes (sorted as text, 10 would come before 2)."""
    values = np.asarray(values)
    if np.issubdtype(values.dtype, np.number):
        if not np.isfinite(values).all():
            raise WearjaxDataError(
                f"{name}: {key} holds NaN or inf; give every window a {key} (or drop the window)"
            )
        if key == "subject" and (values < 0).any():  # -1 is "unknown" in LabelledWindows
            raise WearjaxDataError(
                f"{name}: subject holds {values[values < 0][0]:g} at window "
                f"{int(np.argmax(values < 0))}, an unknown subject; give every window its "
                "subject (0 or more), or drop the subject array and give a train split"
            )
        numbers, codes = np.unique(values, return_inverse=True)
        return codes.astype(np.int32), tuple(str(v) for v in numbers.tolist())
    text = _text(values, name, key)
    blank = np.char.strip(np.char.lower(text))
    missing = np.isin(blank, MISSING_TEXT if key == "subject" else MISSING_LABEL)
    if missing.any():  # NaN or None stored in a text array become the strings "nan", "None"
        raise WearjaxDataError(
            f"{name}: {key} holds {str(text[np.argmax(missing)])!r} at window "
            f"{int(np.argmax(missing))}, a missing value; give every window a {key} (or drop "
            f"the window)"
        )
    names, codes = np.unique(text, return_inverse=True)
    return codes.astype(np.int32), tuple(str(v) for v in names)


MISSING_TEXT = ("", "nan", "none", "null", "na", "n/a")
"""Subject names read as missing values."""
MISSING_LABEL = ("", "nan", "none")
"""Class labels read as missing values: what NaN and None become as text ("null", the
background class of many activity sets, is a class)."""


NPZ_ARRAYS = (
    "an NPZ of labelled windows holds x [N, T, C], y [N] and rate (Hz), optionally subject [N], "
    "train [N], recording [N] and channels [C]"
)


def _npz_arrays(path) -> dict[str, np.ndarray]:
    """Every array of the NPZ file `path`, each problem one line naming the file (and array)."""
    import zipfile

    name = path.name
    try:
        f = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise WearjaxDataError(f"{name}: not a readable NPZ file ({err}); {NPZ_ARRAYS}") from err
    if not isinstance(f, np.lib.npyio.NpzFile):
        raise WearjaxDataError(f"{name}: one array (np.save), not an NPZ (np.savez); {NPZ_ARRAYS}")
    arrays = {}
    with f:
        for key in f.files:
            try:
                arrays[key] = f[key]
            except ValueError as err:  # an object array, which would need pickle
                raise WearjaxDataError(
                    f"{name}: {key} is an array of Python objects; save it with .astype(str) "
                    "(text) or as numbers"
                ) from err
    return arrays


def read_windows(path) -> LabelledWindows:
    """Labelled windows from an NPZ file: `x [N, T, C]` (the windows), `y [N]` (class per
    window: integers or names), `rate` (Hz, a number); optional `subject [N]` (integers or
    names), `train [N]` (bool: an official split, which a probe then uses instead of folds by
    subject), `recording [N]` and `channels [C]` (names). Every problem is one error naming
    the file, the array and the fix."""
    from pathlib import Path

    path = Path(path)
    name = path.name
    arrays = _npz_arrays(path)
    for key in ("x", "y", "rate"):
        if key not in arrays:
            raise WearjaxDataError(f"{name}: no `{key}` array; {NPZ_ARRAYS}")
    x = arrays["x"]
    if x.ndim != 3 or min(x.shape) < 1:
        raise WearjaxDataError(f"{name}: x has shape {x.shape}; give windows as [N, T, C]")
    if x.dtype.kind not in "iuf":  # not complex, not bool, not timedelta64
        raise WearjaxDataError(f"{name}: x holds {x.dtype} values; give real numbers")
    if x.shape[2] > x.shape[1]:
        logger.warning(
            "%s: x has %d channels of %d samples each: if it is [N, C, T] (aeon's layout), "
            "give x.transpose(0, 2, 1)", name, x.shape[2], x.shape[1],
        )  # fmt: skip
    big = np.abs(x[np.isfinite(x)]).max(initial=0.0)
    if big > np.finfo(np.float32).max:
        raise WearjaxDataError(
            f"{name}: x holds values up to {big:.3g}, beyond float32's range; rescale them"
        )
    x = check_windows(x, f"{name}: x")
    n = len(x)
    rate = arrays["rate"]
    hz = float(rate.reshape(-1)[0]) if rate.size == 1 and rate.dtype.kind in "iuf" else 0
    if not (np.isfinite(hz) and hz > 0):
        raise WearjaxDataError(f"{name}: rate must be one positive number of Hz, got {rate!r}")
    for key in ("y", "subject", "train", "recording"):
        if key in arrays and arrays[key].shape != (n,):
            raise WearjaxDataError(
                f"{name}: {key} has shape {arrays[key].shape}; give one value per window ({n},)"
            )
    y, classes = _ids(arrays["y"], name, "y")
    if len(classes) < 2:
        raise WearjaxDataError(
            f"{name}: every window's y is {classes[0]!r}; a probe needs two classes or more"
        )
    unknown_subject = np.full(n, -1, np.int32)
    subject = (
        _ids(arrays["subject"], name, "subject")[0] if "subject" in arrays else unknown_subject
    )
    recording, recordings = (
        _ids(arrays["recording"], name, "recording") if "recording" in arrays else (None, ())
    )
    channels = tuple(f"ch{i}" for i in range(x.shape[2]))
    if "channels" in arrays:
        channels = tuple(str(c) for c in _text(arrays["channels"].reshape(-1), name, "channels"))
        if len(channels) != x.shape[2]:
            raise WearjaxDataError(
                f"{name}: channels names {len(channels)} channels, x has {x.shape[2]}; give one "
                "name per channel of x"
            )
    train = None
    if "train" in arrays:
        if arrays["train"].dtype != bool:
            raise WearjaxDataError(f"{name}: train must be a bool array (True: a training window)")
        train = arrays["train"]
        if train.all() or not train.any():
            raise WearjaxDataError(f"{name}: train marks every window or none; mark the split")
        if recording is None:
            logger.warning(
                "%s: a train split without a recording array, so whether one recording's "
                "(overlapping) windows lie on both sides cannot be checked; give `recording`",
                name,
            )  # fmt: skip
        else:  # overlapping windows of one recording on both sides
            both = np.intersect1d(recording[train], recording[~train])
            if both.size:
                raise WearjaxDataError(
                    f"{name}: {both.size} recording(s) have windows on both sides of train "
                    f"(e.g. {recordings[int(both[0])]!r}): a probe scored on windows of "
                    "recordings it trained on overstates itself; split by recording"
                )
        shared = np.intersect1d(subject[train], subject[~train])
        shared = shared[shared >= 0]
        if shared.size:  # allowed (an official split may be by session), but said
            logger.warning(
                "%s: %d subject(s) have windows on both sides of train: the probe is scored on "
                "subjects it was fitted on, which overstates it for new people; split by "
                "subject (or drop train and give subject for subject-wise folds)",
                name, shared.size,
            )  # fmt: skip
    return LabelledWindows(
        x, y, subject, np.arange(n, dtype=np.int32) if recording is None else recording,
        classes, channels, {"all": tuple(range(x.shape[2]))}, hz, train,
    )  # fmt: skip
