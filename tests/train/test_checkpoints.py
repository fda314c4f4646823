"""Checkpoint files: weights that do not fit the model their header names are refused in one
`WearjaxFileError` naming the file and the command that writes the right one; files are as
readable as any other file the user writes."""

import json
import os

import jax
import jax.numpy as jnp
import pytest

from wearjax.errors import WearjaxFileError
from wearjax.models import build as build_model
from wearjax.signal.features import Normalizer
from wearjax.train import checkpoints
from wearjax.train.checkpoints import _header_digest


def _hr(tmp_path, hidden=8):
    model = build_model("hr_kalman", n_features=3, hidden=hidden, n_layers=1, window=6,
                        key=jax.random.key(0))  # fmt: skip
    norm = Normalizer(jnp.zeros(3), jnp.ones(3))
    init = dict(n_features=3, hidden=hidden, n_layers=1, window=6)
    header = dict(task="hr", kind="hr_kalman", init=init, window=6, channels=["speed"],
                  features=["a", "b", "c"])  # fmt: skip
    return checkpoints.save_hr(tmp_path / f"m{hidden}.wjx", model, norm, header)


def _rewrite(path, out, change=None, extra=b""):
    """The file with its header changed (and its checksum made valid again) or bytes added to
    its weights (their checksum updated): a file another wearjax could have written."""
    import hashlib

    first, _, payload = path.read_bytes().partition(b"\n")
    header = json.loads(first)
    header.update(change or {})
    payload += extra
    header["payload"] = {"bytes": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}
    header["header_sha256"] = _header_digest(header)
    out.write_bytes(json.dumps(header).encode() + b"\n" + payload)
    return out


def test_weights_of_another_shape_or_left_over_are_refused_naming_the_file(tmp_path):
    path = _hr(tmp_path)
    header = json.loads(path.read_bytes().partition(b"\n")[0])
    wider = _rewrite(path, tmp_path / "wider.wjx", {"init": {**header["init"], "hidden": 16}})
    with pytest.raises(WearjaxFileError, match="do not fit the model") as err:
        checkpoints.load_hr(wider)
    assert err.value.path == wider and "wearjax fit hr" in str(err.value)
    longer = _rewrite(path, tmp_path / "longer.wjx", extra=b"\0" * 64)
    with pytest.raises(WearjaxFileError, match="64 bytes of weights are left over"):
        checkpoints.load_hr(longer)


def test_an_hr_checkpoint_given_as_an_encoder_names_the_pretraining_command(tmp_path):
    from wearjax.tasks.pretrain import load_encoder

    path = _hr(tmp_path)
    with pytest.raises(WearjaxFileError, match="not an encoder: a 'hr' model") as err:
        load_encoder(path)
    # what the file is (an HR model, from `fit hr`), and a fix naming the pretraining command
    assert "(written by `wearjax fit hr`)" in str(err.value)
    assert str(err.value).endswith("pretrain it again with `wearjax fit pretrain`")


def test_checkpoints_get_the_mode_the_umask_gives(tmp_path):
    old = os.umask(0o022)
    try:
        path = _hr(tmp_path)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644
