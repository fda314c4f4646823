"""A study's finished parts on disk, so that an interrupted study resumes where it stopped.

A study that trains several models one after another (`cv virtual`: one per information
setting) calls `save` after each: `OUT/partial.json` holds the study's `key` (its settings and
a fingerprint of its data) and the metrics so far, `OUT/partial.npz` the arrays so far, and
`OUT/partial_NAME.eqx` any model a later step needs (`eqx.tree_serialise_leaves`); a study
may keep a model's training state in `OUT/partial_NAME.state` (`train.fit`). Each file is
written to a temporary name and renamed, the JSON last, so a Ctrl-C or a killed process leaves
the last complete step. `load` gives them back when the key is the same and refuses, naming
what differs, when it is not; `clear` removes them once the study has written its outputs.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import equinox as eqx
import numpy as np

from wearjax.errors import WearjaxError

JSON, NPZ = "partial.json", "partial.npz"


def fingerprint(*arrays) -> str:
    """SHA-256 of the arrays' dtypes, shapes and bytes: the same data, or not (bytes alone
    would take `[1, 2], [3]` for `[1], [2, 3]`, or an array for its reshape)."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(np.asarray(a))
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def exists(out: Path) -> bool:
    return (Path(out) / JSON).exists()


def check(out: Path, resume: bool, command: str) -> None:
    """Before any work: `--resume` needs a partial study in `out`; without it one is never
    overwritten by a new study's first step."""
    if resume and not exists(out):
        raise WearjaxError(f"--resume: no interrupted study in {out}; run without --resume")
    if not resume and exists(out):
        raise WearjaxError(
            f"{out} holds an interrupted {command} ({JSON}): pass --resume to continue it, or "
            f"delete its partial* files ({Path(out) / 'partial*'}) to start again"
        )
    if not resume:  # a new study: what a study whose partial.json was deleted left is stale
        clear(out)


def replace_file(path: Path, write: Callable[[Path], None]) -> None:
    """`write(tmp)` then rename `tmp` to `path`: a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def save(out: Path, key: dict, metrics: dict, arrays: Mapping[str, Any], trees: Mapping) -> None:
    """Record the finished steps: `metrics` (JSON), `arrays` and the models in `trees`."""
    out = Path(out)
    for name, tree in trees.items():
        replace_file(out / f"partial_{name}.eqx", lambda p, t=tree: eqx.tree_serialise_leaves(p, t))

    def arrays_to(p: Path) -> None:
        with open(p, "wb") as f:
            np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()})

    replace_file(out / NPZ, arrays_to)
    record = {"key": key, "metrics": metrics, "trees": sorted(trees)}
    replace_file(out / JSON, lambda p: p.write_text(json.dumps(record, indent=2)))


def load(out: Path, key: dict, skeletons: Mapping[str, Callable[[], Any]]):
    """`(metrics, arrays, trees)` of the partial study in `out`, whose key must be `key`; a
    model is rebuilt from `skeletons[name]()` (a pytree of its structure)."""
    out = Path(out)
    try:
        record = json.loads((out / JSON).read_text())
        with np.load(out / NPZ, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, KeyError) as err:
        raise WearjaxError(
            f"--resume: the interrupted study in {out} cannot be read ({err}); delete "
            f"{out / JSON} to start again"
        ) from None
    key = json.loads(json.dumps(key))  # as JSON holds it: tuples are lists
    if record.get("key") != key:
        old = record.get("key") or {}
        differ = sorted(k for k in {*old, *key} if old.get(k) != key.get(k))
        raise WearjaxError(
            f"--resume: the interrupted study in {out} ran with other {', '.join(differ)}; "
            "run it with the same data and options, or without --resume to start again"
        )
    trees = {
        name: eqx.tree_deserialise_leaves(out / f"partial_{name}.eqx", skeletons[name]())
        for name in record["trees"]
    }
    return record["metrics"], arrays, trees


def training_state(out, name: str, resume: bool):
    """`(state_file, resume)` for model `name` of a study kept in `out` (None: no state):
    `out/partial_NAME.state`, resumed when `resume` and an interrupted run left it."""
    if out is None:
        return None, False
    path = Path(out) / f"partial_{name}.state"
    return path, resume and path.exists()


def clear_if_nothing_kept(out: Path, made: bool = False) -> None:
    """`clear`, where the study stopped (on bad data, say) before finishing a step or saving a
    training state: the next run then starts afresh rather than being asked to --resume. With
    `made` (the study created `out`), an `out` left empty is removed too."""
    out = Path(out)
    try:
        finished = json.loads((out / JSON).read_text()).get("metrics")
    except (OSError, ValueError, AttributeError):
        finished = True  # nothing of ours to judge: left as it is
    if not finished and not any(out.glob("partial_*.state")):
        clear(out)
    if made and out.is_dir() and not any(out.iterdir()):
        out.rmdir()


def clear(out: Path) -> None:
    """Remove the partial study once its outputs are written."""
    out = Path(out)
    for path in [out / JSON, out / NPZ, *out.glob("partial_*.eqx"), *out.glob("partial_*.state")]:
        path.unlink(missing_ok=True)
