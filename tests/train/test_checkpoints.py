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


@pytest.mark.slow  # a second process: ~9 s of imports and building
def test_a_transformers_fingerprint_is_the_same_in_another_process():
    """A resume after an interruption is another process: the fingerprint of the pretraining
    encoder's initial weights (whose Flax NNX graph holds functions, printed with their
    memory addresses) must be the same there. Until 2026-12-07 it was not, so `wearjax fit
    pretrain --resume` refused every real interruption's state file."""
    import subprocess
    import sys

    from equinox import is_inexact_array, partition

    from wearjax.models.transformer import build_transformer

    script = (
        "import equinox as eqx, jax\n"
        "from wearjax.models.transformer import build_transformer\n"
        "from wearjax.train.checkpoints import fingerprint\n"
        "m = build_transformer('tiny', key=jax.random.key(0))\n"
        "print(fingerprint(eqx.partition(m, eqx.is_inexact_array)[0]))\n"
    )
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    here = build_transformer("tiny", key=jax.random.key(0))
    assert checkpoints.fingerprint(partition(here, is_inexact_array)[0]) == run.stdout.strip()
    # the structure still counts: another encoder layout is another fingerprint
    other = build_transformer("tiny", key=jax.random.key(0), fuse_every=2)
    assert checkpoints.fingerprint(partition(other, is_inexact_array)[0]) != run.stdout.strip()


def test_a_resume_may_ask_for_more_epochs_but_no_other_setting():
    """`run_settings` (what `fit hr`, `fit pretrain`, `fit vo2` and `fit virtual` record in a
    training state's header): every setting, nested ones too, but the epoch count, which a
    resumed run may raise (`training_header`). Until 2026-12-07 `fit hr` and `fit pretrain`
    recorded it (a longer resume was refused) and `fit vo2` and `fit virtual` recorded none of
    their settings (a resume with another weight decay or loss weight was accepted)."""
    from wearjax.tasks.virtual import VirtualConfig
    from wearjax.train.loop import TrainConfig

    settings = checkpoints.run_settings(VirtualConfig(stretch=(0.5, 1.5), train=TrainConfig(
        epochs=5)))  # fmt: skip
    assert "epochs" not in settings["train"] and settings["stretch"] == [0.5, 1.5]
    assert json.loads(json.dumps(settings)) == settings
    longer = VirtualConfig(stretch=(0.5, 1.5), train=TrainConfig(epochs=50))
    assert checkpoints.run_settings(longer) == settings
    for other in (
        VirtualConfig(stretch=(0.5, 1.5), train=TrainConfig(epochs=5, weight_decay=0.1)),
        VirtualConfig(stretch=(0.5, 1.5), recon_weight=2.0, train=TrainConfig(epochs=5)),
    ):
        assert checkpoints.run_settings(other) != settings
