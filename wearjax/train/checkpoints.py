"""Checkpoints: a trained model and everything needed to use it on a new recording, one file.

Layout: one line of JSON (the header), then the bytes `eqx.tree_serialise_leaves` writes for
the parameter pytree. The header names the format and its version, says how to rebuild the
pytree's structure (the task, the `models.REGISTRY` kind and the keyword arguments it was
built with),
records what the weights expect as input (raw channels, feature names) and how they were
trained, and carries the SHA-256 of the weights so a damaged file is refused instead of loaded
as wrong numbers.

    save_hr(path, model, normalizer, header)   -> path
    load_hr(path) -> HRCheckpoint(model, normalizer, header)

`save`/`load` are the format itself for any pytree: `load` takes a function that builds a
pytree of the right structure from the header (the weights it holds are replaced).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from wearjax import models
from wearjax.errors import WearjaxFileError
from wearjax.signal.features import Normalizer

FORMAT = "wearjax-checkpoint"
VERSION = 3
"""Bumped whenever the header or the pytree layout changes; older files are refused with a
message naming both versions. Version 2 stores the task, the `models.REGISTRY` kind and the
`init` arguments the model was built with; version 3 holds the HR models with the anchored
target (`log_anchor_time`) and the ODE's level and rate heads."""
HR_FIELDS = ("task", "kind", "init", "window", "features", "channels")
"""Header fields an HR checkpoint must have: the model's constructor and its inputs."""

_REFIT = "train it again with `wearjax fit hr`"
WRITTEN_BY = {
    "hr": "wearjax fit hr",
    "vo2": "wearjax fit vo2",
    "virtual": "wearjax fit virtual",
    "transformer": "wearjax fit pretrain",
}  # a checkpoint's task (or kind) and the command that writes it


def _umask() -> int:
    """The process's umask, from /proc where Linux gives it: reading it through `os.umask`
    means setting it, which for a moment would give files that another thread creates (a
    compile worker's, say) mode 0666."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError, IndexError):
        umask = os.umask(0)
        os.umask(umask)
        return umask


def save(path: str | Path, header: dict, tree: Any) -> Path:
    """Write `header` (JSON-serialisable) and the leaves of `tree` to `path`, atomically."""
    path = Path(path)
    buffer = io.BytesIO()
    eqx.tree_serialise_leaves(buffer, tree)
    payload = buffer.getvalue()
    full = {
        "format": FORMAT,
        "version": VERSION,
        **header,
        "payload": {"bytes": len(payload), "sha256": hashlib.sha256(payload).hexdigest()},
    }
    full["header_sha256"] = _header_digest(full)
    line = json.dumps(full, separators=(",", ":")).encode() + b"\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:  # closed whatever happens next
            os.fchmod(f.fileno(), 0o666 & ~_umask())  # the mode `open` gives (not mkstemp's 0600)
            f.write(line + payload)
            f.flush()
            os.fsync(f.fileno())  # on disk before it replaces the previous file
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def read_header(path: str | Path, refit: str = _REFIT) -> tuple[dict, bytes]:
    """The checked header of a checkpoint and its (checksum-verified) weight bytes.

    Raises `WearjaxFileError` naming the file when it is missing, is not a wearjax checkpoint,
    has another format version, or its weights are truncated or damaged; `refit` is the fix
    offered where the file must be written again.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise WearjaxFileError(
            path, f"cannot read the checkpoint ({err.strerror})", "check the path"
        ) from err
    first, _, payload = data.partition(b"\n")
    try:
        header = json.loads(first.decode())
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise ValueError("no format field")
    except (UnicodeDecodeError, ValueError) as err:
        raise WearjaxFileError(
            path,
            "not a wearjax checkpoint (no checkpoint header)",
            "pass a file `wearjax fit` wrote",
        ) from err
    if header.get("version") != VERSION:
        raise WearjaxFileError(
            path,
            f"checkpoint format version {header.get('version')!r}; this wearjax reads "
            f"version {VERSION}",
            refit,
        )
    if header.get("header_sha256") != _header_digest(header):
        raise WearjaxFileError(
            path,
            "the header does not match its checksum (edited or damaged): its settings cannot be "
            "trusted",
            f"copy the file again or {refit}",
        )
    expected = header.get("payload", {})
    if len(payload) != expected.get("bytes") or (
        hashlib.sha256(payload).hexdigest() != expected.get("sha256")
    ):
        raise WearjaxFileError(
            path,
            f"the weights are damaged ({len(payload)} bytes, checksum does not match the header)",
            f"copy the file again or {refit}",
        )
    return header, payload


def _header_digest(header: dict) -> str:
    """SHA-256 of the header's canonical JSON, without its own checksum field."""
    rest = {k: v for k, v in header.items() if k != "header_sha256"}
    return hashlib.sha256(json.dumps(rest, sort_keys=True).encode()).hexdigest()


def load(
    path: str | Path, skeleton: Callable[[dict], Any], refit: str = _REFIT
) -> tuple[dict, Any]:
    """The header and the pytree of a checkpoint; `skeleton(header)` gives its structure (a
    `KeyError` from it: not a file of this kind). Weights of other shapes than the skeleton's,
    or left over after it, are refused; `refit` is the fix offered."""
    header, payload = read_header(path, refit)
    try:
        like = skeleton(header)
    except KeyError as err:  # another kind of file: say what it is, not that it is damaged
        made_by = WRITTEN_BY.get(header.get("task", header.get("kind")))
        problem = str(err.args[0]) + (f" (written by `{made_by}`)" if made_by else "")
        raise WearjaxFileError(path, problem, f"pass a file of this kind; {refit}") from err
    try:
        stream = io.BytesIO(payload)
        tree = eqx.tree_deserialise_leaves(stream, like)
        if extra := len(stream.read()):
            raise ValueError(f"{extra} bytes of weights are left over")
    except (KeyError, TypeError, ValueError, RuntimeError) as err:  # RuntimeError: a shape
        raise WearjaxFileError(
            path, f"the weights do not fit the model its header describes ({err})", refit
        ) from err
    return header, tree


class HRCheckpoint(NamedTuple):
    """A trained HR model, the feature normaliser fitted with it, and the checkpoint header
    (`task`, `kind`, `init`, `window`, `features`, `channels`, training settings)."""

    model: Any
    normalizer: Any
    header: dict


def save_hr(path: str | Path, model, normalizer, header: dict) -> Path:
    """Write an HR model and its normaliser; `header` must hold the `HR_FIELDS`."""
    missing = [f for f in HR_FIELDS if f not in header]
    if missing:
        raise ValueError(f"an HR checkpoint header needs {missing}")
    return save(path, header, (model, normalizer))


def _hr_skeleton(header: dict):
    if header.get("task") != "hr" or any(f not in header for f in HR_FIELDS):
        raise KeyError(f"not an HR model header (needs {list(HR_FIELDS)})")
    kind = header["kind"]
    if kind not in models.REGISTRY or models.REGISTRY[kind].family != "hr":
        hr_kinds = sorted(k for k, v in models.REGISTRY.items() if v.family == "hr")
        raise KeyError(f"model kind {kind!r} is not in this wearjax (it has {hr_kinds})")
    n = len(header["features"])
    model = models.build(kind, **header["init"], key=jax.random.key(0))
    return model, Normalizer(jnp.zeros(n), jnp.ones(n))


def load_hr(path: str | Path) -> HRCheckpoint:
    """An HR checkpoint written by `save_hr`; `WearjaxFileError` naming the file otherwise."""
    header, (model, normalizer) = load(path, _hr_skeleton)
    return HRCheckpoint(model, normalizer, header)


# -- the whole training state, for resuming ---------------------------------------------------


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def fingerprint(*trees) -> str:
    """SHA-256 of the structure and bytes of the arrays of `trees` (the data a run trains on).
    The structure is read without the memory addresses Python prints for functions and
    objects held as static fields (a Flax NNX model's graph holds some): another process, as
    a resume after an interruption always is, gets the same fingerprint."""
    digest = hashlib.sha256()
    for tree in trees:
        leaves, treedef = jax.tree_util.tree_flatten(tree)
        digest.update(_ADDRESS.sub("", str(treedef)).encode())
        for leaf in leaves:
            if isinstance(leaf, jax.Array | np.ndarray):
                a = np.asarray(leaf)
                digest.update(f"{a.dtype}{a.shape}".encode())
                digest.update(np.ascontiguousarray(a).tobytes())
    return digest.hexdigest()


def _storable(state):
    return state._replace(key=jax.random.key_data(state.key))


def save_training_state(path: str | Path, state, history: dict, header: dict) -> Path:
    """Write a `train.loop.TrainState` and the history so far, atomically; `header` says what
    run it belongs to (checked on resume) and is covered by the file's checksum."""
    record = {k: np.asarray(v).tolist() for k, v in history.items()}
    return save(path, {**header, "state": "training", "history": record}, _storable(state))


def run_settings(config) -> dict:
    """A settings `NamedTuple` (nested ones too) as the JSON a training header's `run` holds,
    without its epoch count: a resumed run may train for longer (`training_header`)."""

    def plain(value):
        if hasattr(value, "_asdict"):
            return {k: plain(v) for k, v in value._asdict().items() if k != "epochs"}
        return [plain(v) for v in value] if isinstance(value, tuple | list) else value

    return plain(config)


def training_header(run: dict | None, recipe, fingerprint: str) -> dict:
    """The header of a training-state file: `run` (what the caller names: task, settings),
    the `train.loop.Recipe`'s steps, patience and constant learning rate, and the data's and
    initial parameters' `fingerprint`. A resume with any of them changed is refused; the
    epoch count is left out, so a resumed run may train for longer."""
    rate = recipe.learning_rate
    steps = {
        "steps_per_epoch": recipe.steps_per_epoch,
        "early_stopping_patience": recipe.early_stopping_patience,
        "learning_rate": float(rate) if isinstance(rate, int | float) else "schedule",
    }
    return {**(run or {}), "recipe": steps, "fingerprint": fingerprint}


def load_training_state(
    path: str | Path, like, header: dict, epochs: int | None = None
) -> tuple[Any, dict]:
    """The `TrainState` and history saved by `save_training_state`; `like` is a state of the
    same structure (a fresh `init_state`). Every field of `header` must match the file's:
    a mismatch is one `WearjaxFileError` naming the field; so must a state of more epochs
    than `epochs` (the run asked for)."""
    refit = f"delete {path}, or run without --resume"
    saved, payload = read_header(path, refit)
    if saved.get("state") != "training":
        raise WearjaxFileError(path, "not a training state", "pass the .state file training wrote")
    for field, value in header.items():
        if saved.get(field) != json.loads(json.dumps(value)):
            raise WearjaxFileError(
                path,
                f"field {field!r} differs from this run's ({saved.get(field)!r} there)",
                "resume with the same data and settings, or start again without --resume",
            )
    try:
        stored = eqx.tree_deserialise_leaves(io.BytesIO(payload), _storable(like))
    except (KeyError, TypeError, ValueError, RuntimeError) as err:  # RuntimeError: a shape
        raise WearjaxFileError(path, f"the state does not fit this model ({err})", refit) from err
    state = stored._replace(key=jax.random.wrap_key_data(stored.key))
    # placed as `like` is (e.g. over a mesh's fold axis), so the resumed epoch reuses the
    # program compiled for it instead of compiling another for single-device arrays
    state = jax.tree_util.tree_map(
        lambda a, b: jax.device_put(a, b.sharding) if isinstance(b, jax.Array) else a, state, like
    )
    history = {k: [np.asarray(v, np.float32 if k != "stopped" else bool) for v in values]
               for k, values in saved["history"].items()}  # fmt: skip
    done = len(history.get("train_loss", ()))
    if epochs is not None and done > epochs:
        raise WearjaxFileError(
            path, f"it holds {done} epochs, more than the {epochs} asked",
            "ask for at least as many epochs, or start again without --resume",
        )  # fmt: skip
    return state, history
