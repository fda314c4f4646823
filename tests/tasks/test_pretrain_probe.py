"""Masked pretraining through the one trainer: the masks hide what they say, the loss falls in a
small CPU run, and the encoder checkpoint feeds `wearjax cv probe`."""

import importlib.util
import json
import warnings

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
    for ratio in (0.0, 0.999, 1.5, float("nan")):  # nothing hidden, or nothing left to see
        with pytest.raises(ValueError, match=f"mask_ratio={ratio} hides"):
            patch_mask(jax.random.key(1), rows, cols, ratio, kind)


def test_a_mask_ratio_is_judged_on_what_its_masking_hides():
    """On the wrist encoder's grid (5 scale rows), 95% of the patches can be hidden at random
    but not 95% of the rows; until 2026-12-07 every kind was refused for the rows' sake, and
    `fit pretrain` said so in a traceback after building the corpus."""
    from wearjax.tasks.pretrain import WRIST, check_grid

    rows, cols = 5, 22
    kept = np.asarray(patch_mask(jax.random.key(0), rows, cols, 0.95, "random"))
    assert kept.sum() == round(0.95 * rows * cols)
    for kind in ("scale", "mixed"):
        with pytest.raises(ValueError, match=r"hides 5 of 5 scale rows .* below 0\.9\b"):
            patch_mask(jax.random.key(0), rows, cols, 0.95, kind)
    assert len(WRIST.freqs) // 5 == rows  # the wrist grid (`models.transformer.PATCH`)
    check_grid(WRIST._replace(mask_ratio=0.95, masking="random"), 200)  # 8 s at 25 Hz
    with pytest.raises(ValueError, match="scale masking on a 5 x 22 grid"):
        check_grid(WRIST._replace(mask_ratio=0.95, masking="scale"), 200)


def _corpus(n=96, c=3, t=60, seed=0):
    """Slow sines (periods 10-40 s) at random levels: structure a decoder can learn. Windows
    come in recordings of 8 that share each channel's level and period (not its phase), so a
    window's partner can be told from the other recordings' windows."""
    rng = np.random.default_rng(seed)
    time = np.arange(t)[None, None]
    recording = np.arange(n) // 8
    per_recording = lambda a: a[recording]  # noqa: E731
    period = per_recording(rng.uniform(10, 40, (n // 8 + 1, c, 1)))
    level = per_recording(100 * rng.random((n // 8 + 1, c, 1)))
    x = level + np.sin(2 * np.pi * time / period + rng.uniform(0, 6, (n, c, 1)))
    return Corpus(jnp.asarray(x, jnp.float32), jnp.ones((n, c), bool), jnp.asarray(recording))


def test_contrast_loss_equals_a_float64_infonce(x64):
    """The symmetric InfoNCE against NumPy: channel-mean [CLS] over real channels, unit length,
    anchors (first half) against partners (second half)."""
    from wearjax.tasks.pretrain import contrast_loss

    rng = np.random.default_rng(0)
    cls = rng.normal(size=(6, 3, 5))
    ok = rng.random((6, 3)) > 0.3
    ok[:, 0] = True
    z = np.stack([cls[b, ok[b]].mean(0) for b in range(6)])
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    logits = z[:3] @ z[3:].T / 0.2

    def ce(lg):  # mean over rows of -log softmax at the diagonal
        lg = lg - lg.max(1, keepdims=True)
        return np.mean(np.log(np.exp(lg).sum(1)) - np.diag(lg))

    want = 0.5 * (ce(logits) + ce(logits.T))
    got = contrast_loss(jnp.asarray(cls), jnp.asarray(ok), 0.2)
    np.testing.assert_allclose(float(got), want, rtol=1e-10)
    # with negatives restricted: a left-out candidate is dropped from that row's softmax
    allowed = np.eye(3, dtype=bool)
    allowed[0, 1] = allowed[1, 0] = True

    def ce_masked(lg):
        rows = [np.log(np.exp(lg[a, allowed[a]]).sum()) - lg[a, a] for a in range(3)]
        return np.mean(rows)

    want = 0.5 * (ce_masked(logits) + ce_masked(logits.T))
    got = contrast_loss(jnp.asarray(cls), jnp.asarray(ok), 0.2, jnp.asarray(allowed))
    np.testing.assert_allclose(float(got), want, rtol=1e-10)


def test_contrast_mask_keeps_other_times_of_the_same_recording():
    from wearjax.tasks.pretrain import contrast_mask

    recording = jnp.asarray([0] * 10 + [1] * 10)
    i = jnp.asarray([0, 5, 6, 12, 0])  # anchors
    j = jnp.asarray([1, 4, 8, 13, 2])  # their partners
    got = np.asarray(contrast_mask(i, j, recording, 2))
    want = np.eye(5, dtype=bool)
    # 0 and 5: |0 - 4| = 4 and |1 - 5| = 4 hops apart, one recording
    # 0 and 6: |0 - 8|, |1 - 6| > 2; 5 and 6: |5 - 8| = 3 but |4 - 6| = 2, too close
    # 12 is another recording; the repeated anchor 0 is never its own negative
    for a, b in [(0, 1), (0, 2), (1, 4), (2, 4)]:
        want[a, b] = want[b, a] = True
    np.testing.assert_array_equal(got, want)


@pytest.mark.slow  # 6-16 s cold on 2 cores: the slow step (2026-12-07)
def test_negatives_within_a_recording_come_in_groups_of_one_recording():
    """`contrast_negatives="recording"`: anchors in groups of `contrast_group` training windows
    of one recording (distinct where the recording has enough), each with a training partner
    within reach; the batch carries the mask of its negatives."""
    from wearjax.tasks.pretrain import contrast_mask, corpus_fold, make_task

    corpus = _corpus()
    corpus = corpus._replace(x=corpus.x.at[:, 0, 0].set(jnp.arange(96.0)))  # window ids
    fold = corpus_fold(corpus.recording, 16)
    val = set(np.flatnonzero(np.asarray(fold.train_p) == 0).tolist())  # held-out recordings
    config = PretrainConfig(
        size="tiny", batch_size=16, contrast_weight=1.0, contrast_negatives="recording"
    )
    rec = np.asarray(corpus.recording)
    for seed in range(20):
        x, _, allowed = make_task(config).sample(corpus, fold, jax.random.key(seed))
        ids = np.asarray(x[:, 0, 0]).astype(int)
        anchors, partners = ids[:8], ids[8:]
        assert not (set(ids.tolist()) & val)
        groups = rec[anchors].reshape(2, 4)
        assert np.all(groups == groups[:, :1])
        assert all(len(set(g)) == 4 for g in anchors.reshape(2, 4))  # 8 windows per recording
        assert np.all(rec[anchors] == rec[partners]) and np.all(np.abs(anchors - partners) <= 2)
        want = contrast_mask(jnp.asarray(anchors), jnp.asarray(partners), corpus.recording, 2)
        np.testing.assert_array_equal(np.asarray(allowed), np.asarray(want))
    with pytest.raises(ValueError, match="contrast_group"):
        from wearjax.tasks.pretrain import check_config

        check_config(config._replace(contrast_group=3))


def test_early_stopping_holds_out_whole_recordings():
    """`corpus_fold`: a tenth of the recordings (more while they hold too few windows) held out
    whole, validated on evenly spread windows, none of them trained on; the window split of
    earlier rounds is NumPy's draw of `n_validation` windows; one recording is refused."""
    from wearjax.tasks.pretrain import corpus_fold

    recording = np.repeat(np.arange(30), 8)  # 30 recordings of 8 windows
    seen = set()
    for seed in range(5):
        fold = corpus_fold(recording, 16, seed)
        train_p, val = np.asarray(fold.train_p), np.asarray(fold.val_idx)
        held = np.unique(recording[train_p == 0])
        assert len(held) == 3  # a tenth of 30, holding 24 >= 16 windows
        np.testing.assert_array_equal(train_p == 0, np.isin(recording, held))
        np.testing.assert_array_equal(np.asarray(fold.val_pool), train_p == 0)
        np.testing.assert_allclose(train_p[train_p > 0], 1 / 216, rtol=1e-6)
        assert len(set(val.tolist())) == 16 and set(recording[val]) == set(held)
        seen.add(tuple(held))
    assert len(seen) == 5  # the recordings held out depend on the seed
    # more recordings while they hold fewer than n_validation windows; never all of them
    assert (np.asarray(corpus_fold(recording, 40).train_p) == 0).sum() == 40
    assert (np.asarray(corpus_fold(np.repeat([0, 1], 8), 40).train_p) == 0).sum() == 8
    old = corpus_fold(recording, 16, 3, by="windows")
    want = np.sort(np.random.default_rng(3).choice(240, 16, replace=False))
    np.testing.assert_array_equal(np.asarray(old.val_idx), want)
    assert np.asarray(old.val_pool).all() and (np.asarray(old.train_p) == 0).sum() == 16
    with pytest.raises(ValueError, match="validation='windows'"):
        corpus_fold(np.zeros(20, int), 4)


def test_partners_stay_in_the_recording_within_reach_and_allowed():
    from wearjax.tasks.pretrain import partners

    recording = jnp.asarray([0, 0, 0, 0, 0, 1, 1, 2, 3, 3, 3])
    allowed = jnp.ones(11, bool).at[3].set(False)
    i = jnp.tile(jnp.arange(11), 50)
    j = np.asarray(partners(jax.random.key(0), i, recording, allowed, 2))
    i, rec = np.asarray(i), np.asarray(recording)
    alone = i == 7  # recording 2 has one window: its own partner
    assert np.all(j[alone] == 7)
    assert np.all(rec[j] == rec[i]) and np.all(np.abs(j - i) <= 2)
    assert np.all(j[~alone] != i[~alone]) and not np.any(j == 3)
    # every allowed neighbour is drawn for window 2 of recording 0 (indices 0, 1, 4)
    assert set(j[i == 2]) == {0, 1, 4}


# ~14 s cold on 2 cores: slow step only (the partners and negatives are drawn in fast tests)
@pytest.mark.slow
def test_a_contrastive_batch_is_anchors_then_their_training_partners():
    """`sample` with the contrastive term: training anchors first, then for each its partner,
    a training window (never a validation one) of the same recording within reach; an odd
    batch is refused."""
    from wearjax.tasks.pretrain import check_config, corpus_fold, make_task

    corpus = _corpus()
    corpus = corpus._replace(x=corpus.x.at[:, 0, 0].set(jnp.arange(96.0)))  # window ids
    fold = corpus_fold(corpus.recording, 16)
    val = set(np.flatnonzero(np.asarray(fold.train_p) == 0).tolist())  # held-out recordings
    config = PretrainConfig(size="tiny", batch_size=8, contrast_weight=1.0)
    rec = np.asarray(corpus.recording)
    for seed in range(20):
        x, *_ = make_task(config).sample(corpus, fold, jax.random.key(seed))
        ids = np.asarray(x[:, 0, 0]).astype(int)
        anchors, partners = ids[:4], ids[4:]
        assert not (set(anchors.tolist()) | set(partners.tolist())) & val
        assert np.all(rec[anchors] == rec[partners]) and np.all(np.abs(anchors - partners) <= 2)
    with pytest.raises(ValueError, match="even batch_size"):
        check_config(config._replace(batch_size=7))
    # fewer validation windows than a batch's anchors: one group, a finite loss
    from wearjax.models.transformer import build_transformer

    model = build_transformer("tiny", key=jax.random.key(0))
    few = corpus_fold(corpus.recording, 3)
    big = config._replace(batch_size=16)
    assert np.isfinite(float(make_task(big).validate(model, corpus, few)))


def test_joined_corpora_keep_their_recordings_apart():
    from wearjax.tasks.pretrain import join_corpora

    a, b = _corpus(16), _corpus(24)
    joined = join_corpora(a, b)
    rec = np.asarray(joined.recording)
    assert joined.x.shape[0] == 40
    np.testing.assert_array_equal(rec[:16], np.asarray(a.recording))
    np.testing.assert_array_equal(rec[16:], np.asarray(b.recording) + 2)


@pytest.mark.slow
def test_contrastive_pretraining_learns_to_pair_windows_of_a_recording():
    """With the temporal contrastive term the loss falls, and after 80 steps the term itself
    sits under its chance level (log of the pairs in a batch) on a batch of training windows.
    Early stopping on random windows of the trained recordings: in this corpus a recording's
    level and period are all that pair its windows, so held-out recordings (the default) stop
    it at an earlier model that pairs the training windows no better than chance."""
    from wearjax.tasks.pretrain import corpus_fold, make_task, masked_loss

    corpus = _corpus(n=192)
    config = PretrainConfig(size="tiny", batch_size=16, contrast_weight=1.0, validation="windows")
    config = config._replace(
        train=config.train._replace(epochs=8, steps_per_epoch=10, learning_rate=2e-3)
    )
    result = pretrain(corpus, config, n_validation=32)
    val = np.asarray(result.history["val_loss"])
    assert np.all(np.isfinite(val)) and val.min() < 0.85 * val[0], val
    fold = corpus_fold(corpus.recording, 32, by="windows")
    x, ok, _ = make_task(config).sample(corpus, fold, jax.random.key(5))
    both = masked_loss(result.model, x, ok, jax.random.key(1), config)
    alone = masked_loss(result.model, x, ok, jax.random.key(1), config._replace(contrast_weight=0))
    assert float(both - alone) < 0.9 * np.log(8), float(both - alone)


@pytest.mark.slow
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
def test_interrupted_pretraining_resumes_to_the_same_encoder(tmp_path):
    """Ctrl-C during pretraining with a state file (the first one lets the running epoch
    finish and saves it), then `resume`: the same weights as an uninterrupted run, bit for bit;
    resuming with other settings is refused naming them."""
    import os
    import signal
    import threading
    import time

    from wearjax.errors import TrainingInterrupted, WearjaxFileError

    corpus = _corpus()
    config = PretrainConfig(size="tiny", batch_size=8)
    config = config._replace(train=config.train._replace(
        epochs=30, steps_per_epoch=3, early_stopping_patience=30))  # fmt: skip
    whole = pretrain(corpus, config, n_validation=16)
    state = tmp_path / "enc.wjx.state"

    def interrupt():
        while not state.exists():
            time.sleep(0.002)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    with pytest.raises(TrainingInterrupted, match="interrupted after epoch"):
        pretrain(corpus, config, n_validation=16, state_file=state)
    other = config._replace(masking="time")
    with pytest.raises(WearjaxFileError, match="masking"):
        pretrain(corpus, other, n_validation=16, state_file=state, resume=True)
    resumed = pretrain(corpus, config, n_validation=16, state_file=state, resume=True)
    assert len(resumed.history["val_loss"]) == 30
    for a, b in zip(jax.tree.leaves(whole.model), jax.tree.leaves(resumed.model), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


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
    assert 0.0 <= metrics["channel levels"]["accuracy"] <= 1.0
    assert metrics["MiniRocket"]["accuracy"] >= 0.95  # BasicMotions' MiniRocket, as published
    if importlib.util.find_spec("pyoxynet") is None:
        return
    scarce = tmp_path / "scarce"
    argv = ["cv", "probe", "--encoder", str(enc), "--data", "pyoxynet_domain", "--out", str(scarce)]
    assert main([*argv, "--labelled", "4", "--draws", "2", "--no-minirocket"]) == 0
    record = json.loads((scarce / "metrics.json").read_text())
    assert record["labelled"] == {"subjects_per_fold": 4, "draws": 2}
    for name in ("encoder", "statistical features", "channel levels"):  # 3 classes
        assert 0.4 < record["pyoxynet_domain"][name]["accuracy"] <= 1.0
    assert "MiniRocket" not in record["pyoxynet_domain"]  # --no-minirocket


def test_channel_levels_are_each_channels_asinh_mean_and_sd():
    """The CLI's level baseline against a float64 NumPy computation, channel-major."""
    from wearjax.tasks.probe import channel_levels

    rng = np.random.default_rng(0)
    x = rng.normal(50.0, 20.0, (5, 120, 3)).astype(np.float32)
    x64 = x.astype(np.float64)
    want = np.stack([np.arcsinh(x64.mean(1)), np.arcsinh(x64.std(1))], -1).reshape(5, -1)
    np.testing.assert_allclose(channel_levels(x), want, rtol=1e-5)


@pytest.mark.slow  # ~10 s cold on 2 cores (compiling the wrist simulator): slow step only
def test_wrist_corpus_and_hr_windows_line_up_with_the_simulator():
    from wearjax.data.wrist_synthetic import hr_windows, simulate_wrist
    from wearjax.tasks.pretrain import WRIST, wrist_corpus

    corpus = wrist_corpus(2, 1, minutes=1.0, seed=3)
    assert corpus.x.shape[1:] == (4, 200) and bool(jnp.all(jnp.isfinite(corpus.x)))
    w, hr = hr_windows(2, 1, minutes=1.0, seed=3)
    sim = simulate_wrist(2, 1, minutes=1.0, seed=3)
    assert w.rate == WRIST.nominal_rate and w.x.shape[1:] == (200, 4)
    # window j of session s: samples [200 j, 200 j + 200) and seconds [8 j, 8 j + 8)
    for i in range(len(hr)):
        s, j = int(w.recording[i]), 0
        while not np.allclose(sim.ppg[s, 200 * j : 200 * j + 200], w.x[i, :, 0]):
            j += 1
        np.testing.assert_allclose(hr[i], sim.hr[s, 8 * j : 8 * j + 8].mean(), rtol=1e-5)
        np.testing.assert_allclose(w.x[i, :, 1:], sim.acc[s, 200 * j : 200 * j + 200])
        assert sim.ppg_ok[s, 200 * j : 200 * j + 200].all()


@pytest.mark.slow
def test_wrist_rate_masked_loss_is_finite_and_differentiable():
    from wearjax.models.transformer import build_transformer
    from wearjax.tasks.pretrain import WRIST, masked_loss, wrist_corpus

    corpus = wrist_corpus(2, 1, minutes=0.5, seed=0)
    config = WRIST._replace(size="tiny")
    model = build_transformer("tiny", key=jax.random.key(0))
    x, ok = corpus.x[:2], corpus.ok[:2]
    loss, grads = jax.value_and_grad(lambda m: masked_loss(m, x, ok, jax.random.key(1), config))(
        model
    )
    assert np.isfinite(float(loss))
    leaves = [g for g in jax.tree_util.tree_leaves(grads) if hasattr(g, "dtype")]
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)


def test_ridge_probe_recovers_a_linear_target_and_not_noise():
    from wearjax.cv import Split
    from wearjax.tasks.probe_ridge import ridge_scores

    rng = np.random.default_rng(0)
    n = 300
    subject = np.repeat(np.arange(6), n // 6)
    features = rng.normal(size=(n, 5))
    target = 120 + features @ np.asarray([5.0, -3.0, 0.0, 2.0, 1.0]) + rng.normal(0, 0.5, n)
    split = Split.by_subject(subject, 6, 2)
    good = ridge_scores(features, target, split)
    noise = ridge_scores(rng.normal(size=(n, 5)), target, split)
    assert np.all(good < 0.6) and np.all(noise > 3.0)


def test_ridge_penalty_chosen_by_whole_subjects_resists_their_fingerprints():
    """Each subject's windows share a fingerprint in the features and an offset of the target:
    leave-one-window-out keeps a subject's twin windows on both sides and picks too weak a
    penalty, which then fits the fingerprints; folds of whole subjects pick a stronger one."""
    from wearjax.cv import Split
    from wearjax.tasks.probe_ridge import ridge_scores

    rng = np.random.default_rng(0)
    subject = np.repeat(np.arange(16), 30)
    print_ = rng.normal(size=(16, 16))[subject]  # the fingerprint: 16 features per subject
    signal = rng.normal(size=(len(subject), 1))
    target = 100 + 5 * signal[:, 0] + 10 * rng.normal(size=16)[subject]
    features = np.hstack([signal, print_ + 0.05 * rng.normal(size=print_.shape)])
    split = Split.by_subject(subject, 16, 4, seed=0)
    by_window = ridge_scores(features, target, split).mean()
    by_subject = ridge_scores(features, target, split, groups=subject).mean()
    assert by_subject < 0.75 * by_window, (by_subject, by_window)  # 11.6 against 18.7


def test_class_scores_stay_finite_for_a_window_far_past_the_boundary():
    """`predict_log_proba` is log(predict_proba): -inf for a window ~37 decision units out,
    which made its fold's AUROC NaN (and the CLI's mean silently skip the fold)."""
    from sklearn.linear_model import LogisticRegression

    from wearjax.tasks.har_baselines import log_probabilities

    x = np.r_[np.linspace(-2, 2, 40), 400.0][:, None]
    y = (x[:, 0] > 0).astype(int)
    model = LogisticRegression().fit(x[:-1], y[:-1])
    got = log_probabilities(model, x)
    with np.errstate(divide="ignore"):  # log(0): what the fold's AUROC used to read
        assert np.all(np.isfinite(got)) and not np.all(np.isfinite(model.predict_log_proba(x)))
    np.testing.assert_allclose(got[:-1], model.predict_log_proba(x[:-1]), rtol=1e-9, atol=1e-12)


def test_inner_cv_scores_the_log_loss_where_an_inner_fold_misses_a_class():
    from wearjax.tasks.probe import _inner_scoring

    y, groups = np.array([0, 1, 0, 0, 1, 1]), np.array([0, 0, 1, 1, 2, 2])
    whole = [(np.array([0, 1, 2, 3]), np.array([4, 5])), (np.array([0, 1, 4, 5]), np.array([2, 3]))]
    assert _inner_scoring(y, groups, True, whole) is None  # every class in every inner fit
    short = [(np.array([2, 3]), np.array([0, 1, 4, 5]))]  # trains on subject 1: class 0 only
    assert _inner_scoring(y, groups, True, short) == "neg_log_loss"


def test_logistic_probe_chooses_its_penalty_on_the_training_subjects():
    """300 weakly informative dimensions: too strong a penalty underfits, too weak a one
    overfits, and the penalty chosen by the inner subject-wise CV beats both ends and comes
    within 0.02 of the best fixed one in hindsight (which looked at the test subjects)."""
    from tests.windows import two_class_set
    from wearjax.cv import Split
    from wearjax.tasks.probe import PROBE_CS, probe_scores

    n_subjects = 16
    features, w, subject = two_class_set(np.random.default_rng(1), n_subjects, 12, 300, 0.1)
    split = Split.by_subject(subject, n_subjects, 4, seed=0)
    fixed = {c: probe_scores(features, w, split, cs=[c])[0].mean() for c in PROBE_CS}
    chosen = probe_scores(features, w, split)[0].mean()
    assert chosen > max(fixed[PROBE_CS[0]], fixed[PROBE_CS[-1]]) + 0.02
    assert chosen > max(fixed.values()) - 0.02


def test_probe_auroc_is_scikit_learns_per_fold_and_a_class_never_fitted_scores_one_half():
    """Each fold's AUROC against scikit-learn's `roc_auc_score` of the same pipeline fitted by
    hand: with two classes the binary AUROC of the second class's probability; with a third
    class whose only subject is held out by a fold, that fold's probe never saw it, so its
    scores are all 0 (ties: 0.5) and the mean is over the test set's classes, that one's 0.5."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from tests.windows import two_class_set
    from wearjax.cv import Split
    from wearjax.tasks.probe import probe_scores

    rng = np.random.default_rng(5)
    features, w, subject = two_class_set(rng, 9, 12, 4, 0.4)
    split = Split.by_subject(subject, 9, 3, seed=0)

    def by_hand(k, y):
        fit_on = split.train[k] | split.validation[k]
        model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000))
        model.fit(features[fit_on], y[fit_on])
        return model, model.predict_proba(features[split.test[k]]), y[split.test[k]]

    got = probe_scores(features, w, split, cs=[1.0]).auroc
    for k in range(split.n_folds):
        _, proba, y_test = by_hand(k, w.y)
        np.testing.assert_allclose(got[k], roc_auc_score(y_test, proba[:, 1]), rtol=1e-5)

    # subject 8's windows: a class of their own, between the others (index 1)
    y3 = np.where(subject == 8, 1, 2 * w.y).astype(np.int32)
    w3 = w._replace(y=y3, classes=("a", "b", "c"))
    got = probe_scores(features, w3, split, cs=[1.0]).auroc
    for k in range(split.n_folds):
        model, proba, y_test = by_hand(k, y3)
        fitted = list(model.classes_)  # the classes in the fold's test set count
        aucs = [
            roc_auc_score(y_test == c, proba[:, fitted.index(c)]) if c in fitted else 0.5
            for c in np.unique(y_test)
        ]
        np.testing.assert_allclose(got[k], np.mean(aucs), rtol=1e-5)
    assert any(8 in subject[split.test[k]] for k in range(split.n_folds))  # the case arises


@pytest.mark.slow  # 6-16 s cold on 2 cores: the slow step (2026-12-07)
def test_a_label_scarce_probe_fits_on_n_whole_subjects_of_each_folds_pool():
    """Which windows every fit saw (recorded by a `prepare` step): exactly `n` subjects' windows
    from the fold's training and validation subjects, never a test subject; the same draws for
    any features, the 2 of a draw among its 4; scores `[draws, K]`."""
    from tests.windows import RowRecorder, label_only_windows, two_class_set
    from wearjax.cv import Split
    from wearjax.errors import WearjaxDataError
    from wearjax.tasks.probe import scarce_probe_scores

    n_subjects = 12
    features, w, subject = two_class_set(np.random.default_rng(3), n_subjects, 8, 3, 1.0)
    split = Split.by_subject(subject, n_subjects, 3, seed=0)
    with_ids = np.hstack([np.arange(len(subject))[:, None], features])
    seen = {}
    for n in (2, 4):
        recorder, fitted = RowRecorder.start(f"n{n}")
        acc, f1, auc = scarce_probe_scores(with_ids, w, split, n, draws=3, seed=1, prepare=recorder)
        assert acc.shape == f1.shape == auc.shape == (3, split.n_folds) and np.all(acc > 0.8)
        assert np.all(auc > 0.9)  # two well separated classes
        seen[n] = [set(subject[sorted(rows)]) for rows in fitted]  # draw-major, fold-minor
        for i, subjects in enumerate(seen[n]):
            k = i % split.n_folds
            assert len(subjects) == n
            assert subjects <= set(subject[split.train[k] | split.validation[k]])
            rows = np.asarray(sorted(fitted[i]))
            np.testing.assert_array_equal(rows, np.flatnonzero(np.isin(subject, list(subjects))))
    assert all(a <= b for a, b in zip(seen[2], seen[4], strict=True))  # nested
    for d in range(3):  # the seeds the experiment's committed run used: seed + 1000 d
        sub = split.subsample(subject, n_subjects, 2, seed=1 + 1000 * d)
        for k in range(split.n_folds):
            assert seen[2][d * split.n_folds + k] == set(subject[sub.train[k] | sub.validation[k]])
    drawn_validation = [
        bool(seen[4][i] & set(subject[split.validation[i % split.n_folds]]))
        for i in range(len(seen[4]))
    ]
    assert any(drawn_validation)  # drawn from training and validation subjects alike
    assert len({frozenset(s) for s in seen[2]}) > split.n_folds  # draws differ
    recorder, again = RowRecorder.start("again")
    other = np.hstack([with_ids[:, :1], np.random.default_rng(4).normal(size=features.shape)])
    scarce_probe_scores(other, w, split, 2, draws=3, seed=1, prepare=recorder)  # other features
    assert [set(subject[sorted(r)]) for r in again] == seen[2]
    no_ids = label_only_windows(w.y, np.full(len(subject), -1, np.int32))
    with pytest.raises(WearjaxDataError, match="fewer than 2 subject ids"):
        scarce_probe_scores(features, no_ids, split, 2)


def _own_windows(path, subjects: bool = True, train: bool = False):
    """40 windows of 60 s at 1 Hz, 2 channels, 5 subjects; class 1 sits 3 units higher."""
    rng = np.random.default_rng(5)
    y = np.tile([0, 1], 20)
    x = rng.normal(size=(40, 60, 2)) + 3.0 * y[:, None, None]
    arrays = {"x": x.astype(np.float32), "y": np.where(y == 1, "hard", "easy"), "rate": 1.0}
    if subjects:
        arrays["subject"] = np.repeat(np.arange(5), 8)
    if train:
        arrays["train"] = np.arange(40) < 24
    np.savez(path, **arrays)
    return path


@pytest.mark.slow  # the whole CLI with MiniRocket and 2 draws: about 27 s
def test_cv_probe_runs_on_a_researchers_own_npz_windows(tmp_path, capsys):
    from wearjax.models.transformer import build_transformer
    from wearjax.tasks.pretrain import save_encoder

    enc = tmp_path / "enc.wjx"
    save_encoder(enc, build_transformer("tiny", key=jax.random.key(0)), PretrainConfig("tiny"))
    data = _own_windows(tmp_path / "mine.npz")
    out = tmp_path / "probe"
    argv = ["cv", "probe", "--encoder", str(enc), "--data", str(data), "--out", str(out)]
    assert main([*argv, "--labelled", "2", "--draws", "2"]) == 0
    record = json.loads((out / "metrics.json").read_text())
    assert record["labelled"] == {"subjects_per_fold": 2, "draws": 2}
    assert set(record[str(data)]) == {"encoder", "statistical features", "channel levels",
                                      "MiniRocket"}  # fmt: skip
    levels = record[str(data)]["channel levels"]
    assert levels["accuracy"] > 0.95 and levels["auroc"] > 0.95  # the classes' levels differ
    assert set(levels) == {f + sd for f in ("accuracy", "macro_f1", "auroc") for sd in ("", "_sd")
                           } | {"auroc_fits"}  # fmt: skip
    assert levels["auroc_fits"] == 10  # 5 folds x 2 draws: the mean is over all of them
    printed = capsys.readouterr().out
    assert "fitted on 2 subjects, 2 draws; mean over the 5 folds x 2 draws" in printed
    assert f"{data} channel levels: accuracy 1.000, macro-F1 1.000, AUROC 1.000" in printed


def test_cv_probe_refuses_windows_too_short_for_minirocket_before_any_probe(tmp_path, capsys):
    """aeon's MiniRocket needs 9 samples: its ValueError came after every other probe, as a
    traceback, with nothing written."""
    data = tmp_path / "short.npz"
    rng = np.random.default_rng(0)
    np.savez(data, x=rng.normal(size=(60, 5, 3)), y=np.arange(60) % 2, rate=5.0,
             subject=np.arange(60) // 6)  # fmt: skip
    argv = ["cv", "probe", "--encoder", str(tmp_path / "none.wjx"), "--data", str(data)]
    (tmp_path / "none.wjx").write_bytes(b"")  # never read: the check comes first
    assert main([*argv, "--out", str(tmp_path / "o")]) == 2
    assert "windows of 5 samples; MiniRocket needs 9 or more: pass --no-minirocket" in (
        capsys.readouterr().err
    )


@pytest.mark.slow  # ~18 s on 2 cores: keeps the fast suite under 10 minutes
def test_cv_probe_writes_no_auroc_where_every_test_set_holds_one_class(tmp_path, capsys):
    """One class per subject and one subject per test set: accuracy is defined, AUROC is not
    (null in metrics.json, '-' on stdout), rather than a NaN in the JSON. The levels separate
    the classes; choosing the penalty by inner accuracy on single-class subjects ties the
    majority-class answer with the right one and predicted the majority (0.6)."""
    from wearjax.models.transformer import build_transformer
    from wearjax.tasks.pretrain import save_encoder

    enc = tmp_path / "enc.wjx"
    save_encoder(enc, build_transformer("tiny", key=jax.random.key(0)), PretrainConfig("tiny"))
    subject = np.repeat(np.arange(5), 8)
    x = np.random.default_rng(0).normal(size=(40, 60, 2)) + 3.0 * (subject % 2)[:, None, None]
    data = tmp_path / "one_class_each.npz"
    np.savez(data, x=x.astype(np.float32), y=subject % 2, rate=1.0, subject=subject)
    argv = ["cv", "probe", "--encoder", str(enc), "--data", str(data), "--no-minirocket"]
    assert main([*argv, "--out", str(tmp_path / "o")]) == 0
    text = (tmp_path / "o" / "metrics.json").read_text()
    assert "NaN" not in text
    levels = json.loads(text)[str(data)]["channel levels"]
    assert levels["auroc"] is None and levels["auroc_sd"] is None
    assert levels["accuracy"] == 1.0  # the penalty chosen by log-loss (`_inner_scoring`)
    assert "AUROC -" in capsys.readouterr().out


@pytest.mark.slow  # ~25 s on 2 cores: keeps the fast suite under 10 minutes
def test_cv_probe_runs_on_two_data_sets_into_one_folder_sit_side_by_side(tmp_path, capsys):
    """A second data set probed into the same --out with the same encoder joins the first in
    metrics.json; with another encoder (another file, or the same file retrained: the encoder
    is known by its checksum since 2026-12-07) it replaces them, saying so; another study's
    metrics.json is refused before any work, not replaced."""
    from wearjax.models.transformer import build_transformer
    from wearjax.tasks.pretrain import save_encoder

    encoders = [tmp_path / "a.wjx", tmp_path / "b.wjx"]
    for i, enc in enumerate(encoders):
        save_encoder(enc, build_transformer("tiny", key=jax.random.key(i)), PretrainConfig("tiny"))
    first, second = _own_windows(tmp_path / "first.npz"), _own_windows(tmp_path / "second.npz")
    out = tmp_path / "o"

    def probe(enc, data):
        argv = ["cv", "probe", "--encoder", str(enc), "--data", str(data), "--no-minirocket"]
        assert main([*argv, "--out", str(out)]) == 0
        return json.loads((out / "metrics.json").read_text())

    probe(encoders[0], first)
    record = probe(encoders[0], second)
    assert {str(first), str(second)} <= set(record) and record["encoder"] == str(encoders[0])
    record = probe(encoders[1], first)
    assert str(second) not in record and record["encoder"] == str(encoders[1])
    assert "its probes had another encoder, --labelled or --seed" in capsys.readouterr().err
    probe(encoders[1], second)
    save_encoder(encoders[1], build_transformer("tiny", key=jax.random.key(7)),
                 PretrainConfig("tiny"))  # fmt: skip
    record = probe(encoders[1], first)  # retrained at the same path: not the same encoder
    assert str(second) not in record
    assert "its probes had another encoder" in capsys.readouterr().err
    (out / "metrics.json").write_text(json.dumps({"hr_kalman": {"mae": 3.0}}))
    argv = ["cv", "probe", "--encoder", str(encoders[0]), "--data", str(first), "--out", str(out)]
    assert main([*argv, "--no-minirocket"]) == 2
    assert "metrics.json that `cv probe` did not write" in capsys.readouterr().err
    assert json.loads((out / "metrics.json").read_text()) == {"hr_kalman": {"mae": 3.0}}


def test_the_clis_probe_sets_are_the_ones_the_probe_loads():
    from wearjax.tasks.arguments import BUILT_IN_DATA
    from wearjax.tasks.commands import PROBE_DATA
    from wearjax.tasks.probe import BUILT_IN

    assert PROBE_DATA == BUILT_IN == BUILT_IN_DATA["probe"]


def test_the_clis_pretraining_choices_are_the_ones_pretraining_knows():
    import argparse

    from wearjax.tasks.commands import _pretrain_arguments
    from wearjax.tasks.pretrain import CORPORA, MASKINGS

    p = argparse.ArgumentParser()
    _pretrain_arguments(p)
    choices = {a.dest: a.choices for a in p._actions if a.choices}
    assert tuple(choices["corpus"]) == CORPORA and tuple(choices["masking"]) == MASKINGS
    assert p.get_default("masking") == PretrainConfig().masking
    assert p.get_default("mask_ratio") == PretrainConfig().mask_ratio


@pytest.mark.slow
def test_fit_pretrain_on_the_wrist_corpus_writes_a_25_hz_encoder(tmp_path):
    from wearjax.tasks.pretrain import WRIST, load_encoder

    enc = tmp_path / "wrist.wjx"
    argv = ["fit", "pretrain", "--quick", "--epochs", "1", "--corpus", "wrist"]
    assert main([*argv, "--masking", "time", "--out", str(enc)]) == 0
    model, header = load_encoder(enc)
    want = WRIST._replace(size="tiny").header()
    assert {k: header[k] for k in want} == want and header["nominal_rate"] == 25.0


def test_cv_probe_refuses_what_it_cannot_fold_before_any_work(tmp_path, capsys):
    enc = tmp_path / "enc.wjx"
    enc.write_text("not read: the refusals come first")

    def refused(data, *extra) -> str:
        argv = ["cv", "probe", "--encoder", str(enc), "--data", str(data), "--out", "o"]
        assert main([*argv, *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, err
        return err[0]

    assert "no train array" in refused(_own_windows(tmp_path / "a.npz", subjects=False))
    official = _own_windows(tmp_path / "b.npz", subjects=False, train=True)
    assert "fewer than 2 subject ids, so --labelled" in refused(official, "--labelled", "2")
    assert "basic_motions has fewer than 2" in refused("basic_motions", "--labelled", "2")
    mine = _own_windows(tmp_path / "c.npz")  # 5 subjects: folds fit on 4
    assert "choose fewer than 4" in refused(mine, "--labelled", "4")
    assert "give --labelled too" in refused(mine, "--draws", "3")
    assert "no such file" in refused(tmp_path / "none.npz")
    assert "neither a built-in set" in refused(tmp_path)  # a folder
    assert "at least 1" in refused(tmp_path / "b.npz", "--labelled", "0")
    assert not (tmp_path / "o").exists()


@pytest.mark.slow  # 6-16 s cold on 2 cores: the slow step (2026-12-07)
def test_hide_channel_hides_every_patch_of_the_hidden_levels_channel_only():
    from wearjax.tasks.pretrain import batch_masks

    ok = jnp.asarray([[True, True, True, False]] * 5)
    plain = PretrainConfig(mask_ratio=0.5, masking="random")
    mask, hide = batch_masks(jax.random.key(0), ok, 3, 4, plain)
    mask_h, hide_h = batch_masks(jax.random.key(0), ok, 3, 4, plain._replace(hide_channel=True))
    np.testing.assert_array_equal(hide, hide_h)
    assert np.all(np.asarray(hide).sum(1) == 1) and not np.any(np.asarray(hide)[:, 3])
    np.testing.assert_array_equal(np.asarray(mask_h)[np.asarray(hide)], True)
    np.testing.assert_array_equal(
        np.asarray(mask_h)[~np.asarray(hide)], np.asarray(mask)[~np.asarray(hide)]
    )
    assert np.all(np.asarray(mask).sum(-1) == 6)  # without it, half of every channel's patches


@pytest.mark.slow  # 6-16 s cold on 2 cores: the slow step (2026-12-07)
def test_with_two_or_three_labelled_subjects_the_penalty_is_chosen_leaving_one_out(caplog):
    """3 windows per class and subject: too few for 4 stratified folds, so the probe used to
    fall back to C = 1; with subject ids it now leaves one subject out, as scikit-learn's own
    LeaveOneGroupOut search does (the reference)."""
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import LeaveOneGroupOut
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from tests.windows import label_only_windows
    from wearjax.cv import Split
    from wearjax.tasks.probe import PROBE_CS, probe_scores

    rng = np.random.default_rng(6)
    for n_fit in (2, 3):
        subject = np.repeat(np.arange(n_fit + 1), 6).astype(np.int32)
        y = np.tile([0, 0, 0, 1, 1, 1], n_fit + 1).astype(np.int32)
        features = rng.normal(size=(len(y), 4)) + 0.7 * y[:, None]
        w = label_only_windows(y, subject)
        test = (subject == n_fit)[None]
        split = Split(test, np.zeros_like(test), ~test)
        with caplog.at_level("WARNING", logger="wearjax.tasks.probe"):
            got = probe_scores(features, w, split)[0]
        assert "uses C = 1" not in caplog.text
        fit = ~test[0]
        folds = list(LeaveOneGroupOut().split(features[fit], y[fit], subject[fit]))
        ref = make_pipeline(
            StandardScaler(), LogisticRegressionCV(Cs=list(PROBE_CS), cv=folds, max_iter=5000)
        )
        with warnings.catch_warnings():  # scikit-learn announces its new defaults
            warnings.simplefilter("ignore", FutureWarning)
            ref.fit(features[fit], y[fit])
        want = np.mean(ref.predict(features[test[0]]) == y[test[0]])
        np.testing.assert_allclose(got, [want])


def test_logistic_probe_on_too_few_windows_falls_back_to_a_fixed_penalty(caplog):
    """No subject ids and 3 windows of a class: no 4 inner folds can be drawn, so the probe
    says so and fits C = 1, the same predictions as asking for C = 1."""
    from tests.windows import label_only_windows
    from wearjax.cv import Split
    from wearjax.tasks.probe import probe_scores

    rng = np.random.default_rng(2)
    y = np.asarray([0] * 3 + [1] * 9, np.int32)
    features = rng.normal(size=(12, 5)) + y[:, None]
    w = label_only_windows(y, np.full(12, -1, np.int32))
    test = np.zeros((1, 12), bool)
    test[0, [0, 5]] = True
    split = Split(test, np.zeros_like(test), ~test)
    with caplog.at_level("WARNING", logger="wearjax.tasks.probe"):
        chosen = probe_scores(features, w, split)
    assert "uses C = 1" in caplog.text
    np.testing.assert_array_equal(chosen[0], probe_scores(features, w, split, cs=[1.0])[0])


@pytest.mark.slow
def test_level_targets_all_scores_every_real_channels_levels_from_its_cls_token():
    """`level_targets="all"`: the level term is the MSE of every real channel's levels (padding
    left out) from its own [CLS] token, checked against a float64 NumPy computation."""
    from wearjax.models.transformer import PATCH, build_transformer
    from wearjax.signal.cwt import levels, scalogram
    from wearjax.tasks.pretrain import batch_masks, masked_loss

    data = _corpus(n=4, c=3, t=45)
    ok = jnp.asarray([[True, True, False]] * 4)
    config = PretrainConfig(size="tiny", level_targets="all", level_weight=1.0)
    model = build_transformer("tiny", key=jax.random.key(3))
    key = jax.random.key(5)
    with_levels = masked_loss(model, data.x, ok, key, config)
    signal_only = masked_loss(model, data.x, ok, key, config._replace(level_weight=0.0))

    planes = scalogram(data.x, 1.0, 1.0, config.freqs)
    rows, cols = planes.shape[-2] // PATCH[0], planes.shape[-1] // PATCH[1]
    mask, hide = batch_masks(key, ok, rows, cols, config)
    lv = levels(data.x, 1.0, 1.0)
    module = model.module
    cls = jax.vmap(
        lambda p, m, o, v, h: module.encode(p, m, channel_ok=o, levels=v, hide_levels=h)[:, 0]
    )(planes, mask, ok, lv, hide)
    w = np.asarray(module.level_head.kernel[...], np.float64)
    b = np.asarray(module.level_head.bias[...], np.float64)
    guess = np.asarray(cls, np.float64) @ w + b  # [B, C, 2]
    err = (guess - np.asarray(lv, np.float64)) ** 2
    expected = err[np.asarray(ok)].mean()
    np.testing.assert_allclose(float(with_levels - signal_only), expected, rtol=1e-4)
    with pytest.raises(ValueError, match="level_targets"):
        masked_loss(model, data.x, ok, key, config._replace(level_targets="some"))
    with pytest.raises(ValueError, match="choose one of"):  # before anything is trained
        pretrain(data, config._replace(masking="diagonal"))


def _probe_against_scikit_learn(features, w, folds_of, caplog):
    """Fit on windows 0-59, test on 60-79: the probe's accuracy must be that of scikit-learn's
    `LogisticRegressionCV` over the inner folds `folds_of(x, y)` gives, with no C = 1 fallback."""
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from wearjax.cv import Split
    from wearjax.tasks.probe import PROBE_CS, probe_scores

    test = np.zeros((1, 80), bool)
    test[0, 60:] = True
    with caplog.at_level("WARNING", logger="wearjax.tasks.probe"):
        got = probe_scores(features, w, Split(test, np.zeros_like(test), ~test))
    assert "uses C = 1" not in caplog.text
    probe = LogisticRegressionCV(Cs=list(PROBE_CS), cv=folds_of(features[:60], w.y[:60]),
                                 max_iter=5000)  # fmt: skip
    with warnings.catch_warnings():  # scikit-learn announces new defaults, as in the probe
        warnings.simplefilter("ignore", FutureWarning)
        by_hand = make_pipeline(StandardScaler(), probe).fit(features[:60], w.y[:60])
    assert got.accuracy[0] == pytest.approx(np.mean(by_hand.predict(features[60:]) == w.y[60:]))


def test_logistic_probe_without_subjects_chooses_its_penalty_by_stratified_inner_folds(caplog):
    """No subject ids and 30 windows per class: the penalty is chosen by 4 stratified inner
    folds, as a scikit-learn `LogisticRegressionCV` over the same folds chooses it."""
    from sklearn.model_selection import StratifiedKFold

    from tests.windows import label_only_windows

    rng = np.random.default_rng(5)
    y = np.tile([0, 1], 40).astype(np.int32)
    features = rng.normal(size=(80, 30)) + 0.4 * y[:, None]
    w = label_only_windows(y, np.full(80, -1, np.int32))
    inner = StratifiedKFold(4, shuffle=True, random_state=0)
    _probe_against_scikit_learn(features, w, lambda x, y: list(inner.split(x, y)), caplog)


def test_without_subjects_the_inner_folds_keep_each_recording_whole(caplog):
    """Windows that share recordings (overlapping windows of 8 recordings, no subject ids, or
    one subject under --labelled 1): the inner folds group by recording, as a
    `LogisticRegressionCV` over GroupKFold by recording chooses; one recording: C = 1."""
    from sklearn.model_selection import GroupKFold

    from tests.windows import label_only_windows
    from wearjax.cv import Split
    from wearjax.tasks.probe import probe_scores

    rng = np.random.default_rng(6)
    recording = np.repeat(np.arange(8), 10).astype(np.int32)
    y = np.tile([0, 1], 40).astype(np.int32)
    features = rng.normal(size=(80, 30)) + 0.3 * y[:, None] + rng.normal(size=(8, 30))[recording]
    w = label_only_windows(y, np.full(80, -1, np.int32))._replace(recording=recording)
    by_recording = lambda x, y: list(GroupKFold(4).split(x, y, recording[:60]))  # noqa: E731
    _probe_against_scikit_learn(features, w, by_recording, caplog)
    test = np.zeros((1, 80), bool)
    test[0, 60:] = True
    one = np.zeros((1, 80), bool)
    one[0, :10] = True  # fitted on recording 0 alone
    with caplog.at_level("WARNING", logger="wearjax.tasks.probe"):
        alone = probe_scores(features, w, Split(test, np.zeros_like(test), one))
    assert "uses C = 1" in caplog.text
    fixed = probe_scores(features, w, Split(test, np.zeros_like(test), one), cs=[1.0])
    np.testing.assert_array_equal(alone[0], fixed[0])


def test_a_researchers_file_whose_fold_fits_on_one_class_is_refused_before_the_work(tmp_path):
    from wearjax.errors import WearjaxDataError
    from wearjax.tasks.probe import probe_windows

    subject = np.repeat(np.arange(3), 6)
    path = tmp_path / "two_runners_walk.npz"
    np.savez(path, x=np.ones((18, 20, 1), np.float32) + subject[:, None, None],
             y=np.where(subject < 2, "walk", "run"), rate=1.0, subject=subject)  # fmt: skip
    with pytest.raises(WearjaxDataError, match="two_runners_walk.npz: fold . fits on windows of "
                       "class 'walk' only"):  # fmt: skip
        probe_windows(str(path))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(high_hz=0.3), "high_hz <= 0.25"),
        (dict(low_hz=0.3, high_hz=0.2), "0 < low_hz < high_hz"),
        (dict(n_scales=63), "n_scales=63: give a multiple of 5"),
        (dict(nominal_rate=25.0, high_hz=6.25, n_scales=3), "n_scales=3"),
    ],
)
def test_scale_settings_are_refused_before_anything_is_built(change, message):
    from wearjax.tasks.pretrain import check_config

    with pytest.raises(ValueError, match=message):
        check_config(PretrainConfig(**change))
    check_config(PretrainConfig(nominal_rate=25.0, low_hz=0.25, high_hz=6.25, n_scales=25))


def test_windows_slower_than_the_encoders_scales_are_named(caplog):
    """1 Hz windows to an encoder whose scales reach 6.25 Hz: its top rows see no signal, and
    the probe says so once (it still runs: BasicMotions at 10 Hz is probed this way)."""
    from wearjax.data.imu import LabelledWindows
    from wearjax.models.transformer import build_transformer
    from wearjax.tasks.pretrain import WRIST
    from wearjax.tasks.probe import embed_windows

    x = np.random.default_rng(0).normal(size=(2, 60, 2)).astype(np.float32)
    none = np.zeros(2, np.int32)
    w = LabelledWindows(x, none, none, none, ("a",), ("p", "q"), {}, 1.0)
    model = build_transformer("tiny", key=jax.random.key(0))
    with caplog.at_level("WARNING"):
        embed_windows(model, w, WRIST.header())
    notes = [r.getMessage() for r in caplog.records]
    assert len(notes) == 1 and "hold nothing above 0.5 Hz" in notes[0] and "6.25 Hz" in notes[0]


def test_visible_planes_read_only_the_visible_samples_and_equal_signal_planes_when_all_are():
    from wearjax.signal.cwt import signal_planes, visible_planes

    rng = np.random.default_rng(0)
    x = jnp.asarray(50 + np.cumsum(rng.normal(size=(2, 60)), -1), jnp.float32)
    every = jnp.ones_like(x, bool)
    planes, stats = visible_planes(x, every)
    np.testing.assert_allclose(planes, signal_planes(x, 1.0, 1.0), atol=1e-5)
    np.testing.assert_allclose(stats[:, 0], x.mean(-1), rtol=1e-6)
    np.testing.assert_allclose(stats[:, 1], x.std(-1), rtol=1e-5)
    visible = jnp.asarray(np.arange(60) % 18 < 9)[None].repeat(2, 0)  # every other 9 s column
    other = jnp.where(visible, x, x + 100 * jnp.asarray(rng.normal(size=(2, 60)), jnp.float32))
    a, sa = visible_planes(x, visible)
    b, sb = visible_planes(other, visible)  # hidden samples changed: nothing moves
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(sa, sb)
    assert np.all(np.asarray(a)[:, :, ~np.asarray(visible[0])] == 0)
    v = np.asarray(x)[0][np.asarray(visible[0])]
    np.testing.assert_allclose(sa[0], [v.mean(), v.std()], rtol=1e-5)


@pytest.mark.slow  # 6-16 s cold on 2 cores: the slow step (2026-12-07)
def test_inpainting_hides_the_masked_columns_from_the_encoder_and_the_mixed_masks_do_not():
    """The gradient of the encoder's tokens with respect to the signal is zero on the columns
    `inpaint` hides; under the NormWear-style masks the visible patches' wavelets read every
    sample, hidden columns included (the leak the `inpaint` masking removes)."""
    from wearjax.models.transformer import build_transformer
    from wearjax.signal import cwt
    from wearjax.signal.cwt import scalogram, visible_planes
    from wearjax.tasks.pretrain import PATCH, batch_masks

    config = PretrainConfig(size="tiny", masking="inpaint", mask_ratio=0.5)
    model = build_transformer("tiny", key=jax.random.key(0)).module
    corpus = _corpus(n=2, c=3, t=60)
    x, ok = corpus.x, corpus.ok
    rows, cols = len(config.freqs) // PATCH[0], 60 // PATCH[1]
    mask, _ = batch_masks(jax.random.key(3), ok, rows, cols, config)
    hidden = np.repeat(np.asarray(mask).reshape(2, 3, rows, cols)[:, :, 0], PATCH[1], -1)
    hidden = np.concatenate([hidden, np.zeros((2, 3, 60 - cols * PATCH[1]), bool)], -1)
    assert hidden.sum(-1).min() == round(0.5 * cols) * PATCH[1]

    def tokens(x, inpaint):
        if inpaint:
            seen, _ = visible_planes(x, jnp.asarray(~hidden))
            planes = cwt.cwt(seen, cwt.wavelet_width(config.freqs, 1.0))
        else:
            planes = scalogram(x, 1.0, 1.0, config.freqs)
        # the first window's tokens: one encoder in the program (the second's would double
        # its compile, ~8 s on 2 cores, for the same check)
        return model.encode(planes[0], mask[0], channel_ok=ok[0]).sum()

    grad = jax.jit(jax.grad(tokens), static_argnums=1)  # one compile, not one per operation
    for inpaint in (True, False):
        g = np.asarray(grad(x, inpaint))[0]
        leak, seen = np.abs(g[hidden[0]]).max(), np.abs(g[~hidden[0]]).max()
        # relative to the visible samples' (the tiny encoder's are ~5e-6: an absolute 1e-6,
        # until 2026-12-07, failed on an AVX-512 CPU whose leak came out 8.7e-7, 19% of them)
        assert seen > 0 and ((leak == 0) if inpaint else (leak > 0.05 * seen)), (leak, seen)


@pytest.mark.slow  # ~30 s cold on 2 cores; what inpainting hides is checked in the fast suite
def test_inpainting_pretraining_loss_falls_and_refuses_a_hidden_channel():
    config = PretrainConfig(size="tiny", batch_size=8, masking="inpaint", mask_ratio=0.5)
    config = config._replace(
        train=config.train._replace(epochs=6, steps_per_epoch=10, learning_rate=2e-3)
    )
    result = pretrain(_corpus(), config, n_validation=16)
    val = np.asarray(result.history["val_loss"])
    assert np.all(np.isfinite(val)) and val.min() < 0.8 * val[0], val
    with pytest.raises(ValueError, match="hide_channel"):
        pretrain(_corpus(), config._replace(hide_channel=True), n_validation=16)
