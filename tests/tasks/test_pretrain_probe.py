"""Masked pretraining through the one trainer: the masks hide what they say, the loss falls in a
small CPU run, and the encoder checkpoint feeds `wearjax cv probe`."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wearjax.cli import main
from wearjax.tasks.pretrain import Corpus, PretrainConfig, patch_mask, pretrain


@pytest.mark.parametrize("kind", ["random", "time", "scale"])
def test_masks_hide_the_stated_share_in_their_shape(kind):
    rows, cols = 13, 10
    m = np.asarray(patch_mask(jax.random.key(1), rows, cols, 0.8, kind)).reshape(rows, cols)
    if kind == "random":
        assert m.sum() == round(0.8 * rows * cols)
    if kind == "time":  # whole columns
        assert np.all(m.all(0) | ~m.any(0)) and m.any(0).sum() == 8
    if kind == "scale":  # whole rows
        assert np.all(m.all(1) | ~m.any(1)) and m.any(1).sum() == round(0.8 * rows)


def _corpus(n=96, c=3, t=60, seed=0):
    """Sums of slow sines (periods 10-40 s) at random levels: structure a decoder can learn."""
    rng = np.random.default_rng(seed)
    time = np.arange(t)[None, None]
    period = rng.uniform(10, 40, (n, c, 1))
    x = 100 * rng.random((n, c, 1)) + np.sin(
        2 * np.pi * time / period + rng.uniform(0, 6, (n, c, 1))
    )
    return Corpus(jnp.asarray(x, jnp.float32), jnp.ones((n, c), bool))


def test_masked_pretraining_loss_falls():
    config = PretrainConfig(size="tiny", batch_size=8)
    config = config._replace(
        train=config.train._replace(epochs=6, steps_per_epoch=10, learning_rate=2e-3)
    )
    result = pretrain(_corpus(), config, n_validation=16)
    val = np.asarray(result.history["val_loss"])
    assert np.all(np.isfinite(val))
    assert val.min() < 0.8 * val[0], val


@pytest.mark.slow
def test_fit_pretrain_then_cv_probe_from_the_cli(tmp_path):
    pytest.importorskip("aeon")
    pytest.importorskip("sklearn")
    enc = tmp_path / "enc.wjx"
    assert main(["fit", "pretrain", "--quick", "--epochs", "1", "--out", str(enc)]) == 0
    out = tmp_path / "probe"
    assert (
        main(["cv", "probe", "--encoder", str(enc), "--data", "basic_motions", "--out", str(out)])
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())["basic_motions"]
    assert (
        metrics["encoder"]["accuracy"] > 0.5 and metrics["statistical features"]["accuracy"] > 0.9
    )
