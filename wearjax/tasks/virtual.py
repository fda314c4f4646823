"""The virtual-sensing task: HR per 8 s window (2 s hop) from wrist spectra, in four
information settings (`models.virtual.SETTINGS`), trained by the one trainer with every fold
of a leave-subjects-out split in one vmapped program.

Data to arrays: `tasks.virtual_data` (spectra on the model's grid, each window's peak 1;
reference HR per window). The models read the spectra in decibels under that peak
(`virtual_data.device_data`, `models.virtual.compress`, floor `VirtualConfig.floor_db`).

Training samples are `context` consecutive windows of a training session. A held-out session
is predicted as a watch would stream it: each window by the model run on it and the
`context - 1` windows before it (`predict`; the models are causal); early stopping uses the
cheaper consecutive blocks (`predict_blocks`). The loss is the cross-entropy of the head's
distribution against a Gaussian of `target_sd` bpm around the true HR
(`models.virtual.soft_target`); for `virtual` it adds the four reconstructions (ACC and PPG
latents each decoding both spectra; a PPG target or the PPG latent only in windows with PPG,
an ACC one only in windows without an ACC gap) and the two KL terms (each over the windows its
modality has), weighted by
`kl_weight x min(1, epoch / kl_warmup)` (`kl_beta`; `kl_weight` throughout when `kl_warmup
<= 0`): KL annealing. Each sample's cross-entropy is its mean over its own windows with a
reference HR (0 for a sample with none; a setting that reads ACC skips windows with an ACC
gap, while `virtual`'s PPG path keeps them), and the loss is the mean over the samples.
Early stopping on the validation subjects' cross-entropy of the inference path. Label-scarce
training (`VirtualConfig.labelled`): per fold only that many training subjects' reference HR
enters the loss (`make_folds`, `labelled_sessions`); the settings that learn from HR alone
sample only their sessions, `virtual` every training session (the others teach it through the
reconstructions alone). So in `virtual`'s loss an unlabelled sample adds 0 to the HR terms
but still counts in the batch mean: the HR terms' weight against the reconstructions and KL
scales with the fraction of labelled samples in the batch (in expectation, the labelled
training sessions' share of the sampling weight), not renormalised over the labelled
samples (the published label-scarce figures were trained so).
Frequency stretching (`VirtualConfig.stretch`, off by default): each training sample's spectra
are read at f / a and its HR and cadence multiplied by a, a drawn log-uniformly per sample
(`stretch_spectra`): what the same recording played a times faster would give. The per-bin
input maps and the head's grid otherwise learn only the HR range the training set covers.

Tracking: `models.virtual.track` (a random-walk Kalman filter, `filters.kalman_filter`) takes
the head's variance as measurement noise over every window (never told where the reference
is) and a transition variance per fold chosen on its validation sessions (`choose_q`: the
training sessions' mean squared HR change per hop times 1, 4, ..., 256, the best tracked MAE).
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from wearjax.cv import Split, fit_folds, padded_table, predict_per_fold, scatter
from wearjax.errors import WearjaxDataError
from wearjax.eval.metrics import mae
from wearjax.eval.ridge import fold_ridge
from wearjax.models.virtual import (
    FLOOR_DB,
    GRID_BPM,
    GRID_HZ,
    N_GAIT,
    VirtualSensing,
    gaussian_kl,
    soft_target,
    track,
    with_gait_coef,
)
from wearjax.tasks.virtual_data import (
    SpectralSessions,
    VirtualData,
    device_data,
    gait_features,
)
from wearjax.train.loop import Task, TrainConfig, validation_mean

PREDICT_WINDOWS = 8192  # windows (blocks x context) `predict` runs at once per session


class VirtualConfig(NamedTuple):
    width: int = 16
    latent: int = 4
    depth: int = 2
    heads: int = 2
    context: int = 16  # windows per training sample and per prediction block
    batch_size: int = 16
    target_sd: float = 3.0  # bpm, the soft target's spread
    recon_weight: float = 1.0
    kl_weight: float = 0.01
    kl_warmup: int = 10  # epochs of KL annealing
    floor_db: float | None = FLOOR_DB  # the spectra's decibel floor (`compress`); None: linear
    gait: bool = False  # the gait prior (`models.virtual.GaitPrior`) in the ACC settings
    # the residual gait prior: its mean is a ridge of HR on the gait features fitted per fold
    # on the labelled training sessions before training (`make_folds`), plus a learned part
    gait_ridge: bool = False
    labelled: int | None = None  # training subjects per fold whose reference HR the loss
    # reads (None: all); `virtual` also trains on the others' PPG and ACC (`make_folds`)
    stretch: tuple[float, float] | None = None  # (lo, hi): frequency-stretch augmentation
    seed: int = 0
    train: TrainConfig = TrainConfig(
        learning_rate=2e-3, weight_decay=1e-4, epochs=40, steps_per_epoch=25,
        early_stopping_patience=12, plateau_patience=5,
    )  # fmt: skip


class VirtualFold(NamedTuple):
    train_p: jax.Array  # [S] sampling probability of each training session
    val_idx: jax.Array  # [V] validation sessions (padded)
    val_ok: jax.Array  # [V]
    q: jax.Array  # [] the tracker's transition variance (bpm^2 per hop)
    labelled: jax.Array  # [S] bool: the loss may read the session's reference HR
    gait_coef: jax.Array  # [N_GAIT + 1] the gait ridge's intercept and weights (zeros: none)


def labelled_sessions(
    s: SpectralSessions, split: Split, labelled: int | None = None, seed: int = 0
) -> np.ndarray:
    """`[K, S]` bool: the sessions whose reference HR fold k may read. Every session with
    `labelled=None`; otherwise the training sessions of `labelled` training subjects per fold
    (`Split.keep_subjects`, drawn with `seed`; all of a fold's when it has fewer) and every
    session that is not training (validation and test keep their HR). The one choice of
    labelled subjects: the models (`make_folds`) and the study's references use it."""
    known = np.ones_like(split.train)
    if labelled is not None:
        known = split.keep_subjects(s.subject, len(s.subjects), labelled, seed=seed)
        known |= ~split.train
    return known


def make_folds(s: SpectralSessions, split: Split, labelled: int | None = None,
               seed: int = 0, gait_ridge: bool = False) -> VirtualFold:  # fmt: skip
    """Per fold: sampling weights, validation sessions, the tracker's starting q (the mean
    squared step of the labelled training sessions' reference HR, `s.ok`) and which are
    labelled: all or, with `labelled`, only those of that many training subjects per fold (all
    of a fold's when it has fewer), drawn with `seed` (label-scarce training: the settings that
    learn from HR alone sample only labelled sessions; `virtual` samples every training session
    and learns from the unlabelled ones through the VAE's reconstructions). With `gait_ridge`,
    each fold's ridge of HR on the gait features (`gait_features`; `eval.ridge.fold_ridge`, its
    penalty chosen by leave-one-subject-out) fitted on its labelled training sessions."""
    known = labelled_sessions(s, split, labelled, seed)
    pairs = s.ok[:, 1:] & s.ok[:, :-1]
    steps = (np.square(np.diff(s.hr, axis=1)) * pairs).sum(1)
    w = split.train & known
    q = (w * steps).sum(1) / np.maximum((w * pairs.sum(1)).sum(1), 1)
    val_idx, val_ok = padded_table(split.validation)
    coef = np.zeros((split.n_folds, N_GAIT + 1))
    if gait_ridge:
        fitted = fold_ridge(np.asarray(gait_features(s)), s.hr, s.labels(), w, s.subject)
        coef = np.concatenate([fitted.intercept[:, None], fitted.weights], axis=1)
    return VirtualFold(
        jnp.asarray(split.sampling_weights()), jnp.asarray(val_idx), jnp.asarray(val_ok),
        jnp.asarray(np.maximum(q, 0.25), jnp.float32), jnp.asarray(known),
        jnp.asarray(coef, jnp.float32),
    )  # fmt: skip


PPG_SETTINGS = ("ppg_only", "fusion")
"""The learned settings that read PPG (`VirtualSensing.uses_ppg`)."""
ACC_SETTINGS = ("acc_only", "virtual", "acc_refined", "fusion")
"""The learned settings that read ACC (`VirtualSensing.uses_acc`)."""


def reading(s: SpectralSessions, setting: str) -> tuple[list[str], np.ndarray]:
    """The streams `setting` reads ("PPG", "ACC") and `[S]` the sessions that hold them."""
    reads = [name for name, settings in (("PPG", PPG_SETTINGS), ("ACC", ACC_SETTINGS))
             if setting in settings]  # fmt: skip
    has = np.ones(len(s.names), bool)
    if "PPG" in reads:
        has &= s.with_ppg
    if "ACC" in reads:
        has &= s.with_acc
    return reads, has


def reading_split(s: SpectralSessions, split: Split, setting: str) -> Split:
    """`split` as `setting` can learn from it: a setting trains and stops early only on the
    sessions that hold what it reads (PPG: `PPG_SETTINGS`; ACC: `ACC_SETTINGS`; one without
    reads all-zero spectra beside its HR, and is never scored there); a fold left with no
    validation session moves its first training subject with them there. Test sessions are
    kept (those without are not scored)."""
    reads, has = reading(s, setting)
    if has.all():
        return split
    train, validation = split.train & has, split.validation & has
    for k in np.flatnonzero(~validation.any(axis=1) & train.any(axis=1)):
        first = s.subject[np.flatnonzero(train[k])[0]]
        moved = train[k] & (s.subject == first)
        validation[k] |= moved
        train[k] &= ~moved
    if short := np.flatnonzero(~train.any(axis=1) | ~validation.any(axis=1)).tolist():
        what = " and ".join(reads)
        raise WearjaxDataError(
            f"{setting} reads {what}: folds {short} hold fewer than two subjects with {what} "
            "outside their test (one to train on, one to stop early on); add such recordings, "
            "or run the settings the others allow (--setting)"
        )
    return Split(split.test, validation, train, split.calibrate_from)


def split_sessions(s: SpectralSessions, subjects_out: int = 1, seed: int = 0) -> Split:
    """Leave-`subjects_out`-subjects-out folds, one other subject validating per fold."""
    n = len(s.subjects)
    if n < subjects_out + 2:
        raise WearjaxDataError(
            f"{n} subjects: leave-{subjects_out}-out cross-validation needs at least "
            f"{subjects_out + 2} (one to test, one to validate, one to train on); add subjects"
        )
    return Split.by_subject(s.subject, n, subjects_out, seed=seed)


def _blocks(a: jax.Array, context: int) -> jax.Array:
    """`[W, ...]` -> `[B, context, ...]`, the last block zero-padded."""
    n = -(-a.shape[0] // context) * context
    pad = [(0, n - a.shape[0])] + [(0, 0)] * (a.ndim - 1)
    return jnp.pad(a, pad).reshape((n // context, context) + a.shape[1:])


def _ce(logits, hr, ok, sd):
    logp = jax.nn.log_softmax(logits, axis=-1)
    ce = jnp.where(ok, -jnp.sum(soft_target(hr, sd) * logp, axis=-1), 0.0)
    return jnp.sum(ce) / jnp.maximum(jnp.sum(ok.astype(ce.dtype)), 1.0)


def _mse(x, y, ok):
    w = ok.astype(x.dtype).reshape(ok.shape + (1, 1))
    n = jnp.maximum(jnp.sum(w) * x.shape[-1] * x.shape[-2], 1.0)
    return jnp.sum(jnp.square(x - y) * w) / n


def stretch_spectra(spec: Float[Array, "*batch freq"], a: Float[Array, ""] | float) -> Array:
    """Spectra on `GRID_HZ` as a signal `a` times faster would give them: each read at f / a
    (linear interpolation; beyond the grid, its edge value continued: zeros there would tell
    the model how it was stretched, a cue no recording has)."""
    grid = jnp.asarray(GRID_HZ, spec.dtype)
    flat = spec.reshape(-1, spec.shape[-1])
    return jax.vmap(lambda row: jnp.interp(grid / a, grid, row))(flat).reshape(spec.shape)


def _stretched(config: VirtualConfig, key, acc, ppg, gait, hr, *masks):
    """One training batch under `stretch_spectra`, a factor per sample (log-uniform in
    `config.stretch`); windows whose stretched HR leaves the grid are not scored (`masks`)."""
    lo, hi = np.log(config.stretch)
    a = jnp.exp(jax.random.uniform(key, (hr.shape[0],), minval=lo, maxval=hi))
    move = jax.vmap(lambda x, f: stretch_spectra(jnp.moveaxis(x, -1, -2), f).swapaxes(-1, -2))
    hr = hr * a[:, None]
    inside = (hr >= GRID_BPM[0]) & (hr <= GRID_BPM[-1])
    return move(acc, a), move(ppg, a), gait * a[:, None, None], hr, *(m & inside for m in masks)


def kl_beta(config: VirtualConfig, epoch) -> jax.Array:
    """The KL weight at `epoch` (from 0): `kl_weight x min(1, epoch / kl_warmup)`, annealed in
    over the first `kl_warmup` epochs; `kl_weight` from epoch 0 when `kl_warmup <= 0`."""
    if config.kl_warmup <= 0:
        return jnp.asarray(config.kl_weight, jnp.float32)
    return config.kl_weight * jnp.minimum(1.0, jnp.asarray(epoch, jnp.float32) / config.kl_warmup)


def make_task(config: VirtualConfig, setting: str) -> Task:
    L = config.context
    if config.stretch is not None and not 0 < config.stretch[0] <= config.stretch[1]:
        raise ValueError(f"stretch {config.stretch}: give (lo, hi) with 0 < lo <= hi")

    def sample(data: VirtualData, fold: VirtualFold, key):
        k1, k2 = jax.random.split(key)
        p = fold.train_p if setting == "virtual" else jnp.where(fold.labelled, fold.train_p, 0)
        i = jax.random.choice(k1, data.hr.shape[0], (config.batch_size,), p=p)
        hi = (jnp.maximum(data.n_windows[i] - L, 0) + 1).astype(jnp.float32)
        start = jnp.floor(jax.random.uniform(k2, (config.batch_size,)) * hi).astype(jnp.int32)
        w = start[:, None] + jnp.arange(L)[None]  # [B, L]
        take = lambda a: a[i[:, None], w]  # noqa: E731
        # past a session's end: its padding, or where every session is shorter than L (under
        # 38 s) a clamped gather repeating the last window, which must not count L times
        inside = w < data.n_windows[i][:, None]
        ok, ref = (take(m) & fold.labelled[i][:, None] & inside for m in (data.ok, data.ref_ok))
        acc, ppg, gait, hr, ppg_ok, acc_ok = (take(a) for a in (
            data.acc, data.ppg, data.gait, data.hr, data.ppg_ok, data.acc_ok))  # fmt: skip
        ppg_ok, acc_ok = ppg_ok & inside, acc_ok & inside
        if config.stretch is not None:  # its own key: without it the draws are unchanged
            acc, ppg, gait, hr, ok, ref = _stretched(
                config, jax.random.fold_in(key, 3), acc, ppg, gait, hr, ok, ref
            )
        return acc, ppg, gait, hr, ok, ref, ppg_ok, acc_ok, fold.gait_coef

    def one_loss(model, acc, ppg, gait, hr, ok, ref, ppg_ok, acc_ok, key, beta):
        if setting != "virtual":
            return _ce(model(acc, ppg, gait).logits, hr, ok, config.target_sd), {}
        ka, kp = jax.random.split(key)
        fa = model.features(acc, None, ka)
        fp = model.features(None, ppg, kp)
        ce_a = _ce(model.hr(fa["u"], gait)[2], hr, ok, config.target_sd)
        # the PPG path learns from every window with a reference and PPG, ACC gap or not
        ce_p = _ce(model.hr(fp["u"], gait)[2], hr, ref & ppg_ok, config.target_sd)
        # a term reads a window only where its input and its target were measured: an ACC
        # gap's filled signal is neither a spectrum to reconstruct nor one to encode from
        both = ppg_ok & acc_ok
        recon = (
            _mse(fa["ppg_hat"], ppg, both) + _mse(fp["ppg_hat"], ppg, ppg_ok)
            + _mse(fa["acc_hat"], acc, acc_ok) + _mse(fp["acc_hat"], acc, both)
        )  # fmt: skip
        cells = lambda m: jnp.broadcast_to(m[:, None], fa["mu"].shape[:2])  # noqa: E731
        kl = (gaussian_kl(fa["mu"], fa["logvar"], cells(acc_ok))
              + gaussian_kl(fp["mu"], fp["logvar"], cells(ppg_ok)))  # fmt: skip
        total = ce_a + ce_p + config.recon_weight * recon + beta * kl
        return total, {"ce_ppg": ce_p, "recon": recon, "kl": kl}

    def loss(model, batch, key, epoch):
        """The batch's mean of `one_loss`: each sample's HR cross-entropy averaged over its own
        windows with a reference HR, a sample without any (unlabelled, label-scarce `virtual`)
        adding 0 yet counting in the mean, so the HR terms' weight scales with the fraction
        of labelled samples in the batch (module docstring)."""
        acc, ppg, gait, hr, ok, ref, ppg_ok, acc_ok, coef = batch
        model = with_gait_coef(model, coef)
        beta = kl_beta(config, epoch)
        keys = jax.random.split(key, hr.shape[0])
        per = jax.vmap(lambda *a: one_loss(model, *a, beta))
        value, aux = per(acc, ppg, gait, hr, ok, ref, ppg_ok, acc_ok, keys)
        return jnp.mean(value), jax.tree_util.tree_map(jnp.mean, aux)

    def validate(model, data: VirtualData, fold: VirtualFold):
        model = with_gait_coef(model, fold.gait_coef)

        def session(i):
            logits = predict_blocks(model, data, i, context=L).logits
            return _ce(logits, data.hr[i], data.ok[i], config.target_sd)

        ce = jax.vmap(session)(fold.val_idx)
        return validation_mean(ce, fold.val_ok.astype(ce.dtype))

    return Task(sample, loss, validate)


def predict_blocks(model: VirtualSensing, data: VirtualData, i, *, context: int = 16):
    """The model's `VirtualOutput` over every window of session `i` in consecutive blocks of
    `context` windows: cheap (each window computed once) but a block's first windows have
    little history. Used for early stopping."""
    acc, ppg = _blocks(data.acc[i], context), _blocks(data.ppg[i], context)
    out = jax.vmap(model)(acc, ppg, _blocks(data.gait[i], context))
    n = data.acc.shape[1]
    return jax.tree_util.tree_map(lambda a: a.reshape((-1,) + a.shape[2:])[:n], out)


def predict(model: VirtualSensing, fold, data: VirtualData, i, *, context: int = 16):
    """The model's `VirtualOutput` over every window of session `i` as a watch streams it: the
    model on the window and the `context - 1` before it (fewer at the session's start), the
    last output kept (the models are causal, so this is exact). One program per shape when
    called eagerly (a Python int `i` is static), inlined in an outer `jit`."""
    return _predict(model, data, i, context=context, windows=PREDICT_WINDOWS)


@eqx.filter_jit  # `windows` an argument, not the global read while tracing: in the cache key
def _predict(model: VirtualSensing, data: VirtualData, i, *, context: int, windows: int):
    n = data.acc.shape[1]
    w = jnp.arange(n)
    start = jnp.clip(w - context + 1, 0, max(n - context, 0))
    idx = jnp.minimum(start[:, None] + jnp.arange(context)[None], n - 1)  # [W, context]
    chunk = max(1, windows // context)  # blocks at once, per session and fold
    if n <= chunk:
        out = jax.vmap(model)(data.acc[i][idx], data.ppg[i][idx], data.gait[i][idx])
    else:  # equal chunks (one compile), gathered in the loop: memory bounded for any n
        size = -(-n // -(-n // chunk))
        rows = jnp.concatenate([idx, jnp.repeat(idx[-1:], -(-n // size) * size - n, axis=0)])
        run = lambda r: model(data.acc[i][r], data.ppg[i][r], data.gait[i][r])  # noqa: E731
        out = jax.tree_util.tree_map(lambda a: a[:n], jax.lax.map(run, rows, batch_size=size))
    pos = jnp.minimum(w - start, context - 1)
    return jax.tree_util.tree_map(lambda a: jnp.take_along_axis(
        a, pos.reshape((n, 1) + (1,) * (a.ndim - 2)), axis=1)[:, 0], out)  # fmt: skip


def build(config: VirtualConfig, setting: str, key) -> VirtualSensing:
    return VirtualSensing(
        setting, width=config.width, latent=config.latent, depth=config.depth,
        heads=config.heads, gait=config.gait, gait_ridge=config.gait_ridge, key=key,
    )  # fmt: skip


class SettingResult(NamedTuple):
    hr: np.ndarray  # [S, W] per-window estimate of the fold that tests each session
    var: np.ndarray  # [S, W]
    tracked: np.ndarray  # [S, W] Kalman-tracked estimate
    tracked_var: np.ndarray  # [S, W]
    history: dict
    model: eqx.Module  # [K] stacked
    folds: VirtualFold  # [K]


Q_FACTORS = (1.0, 4.0, 16.0, 64.0, 256.0)


def tracked_windows(data: VirtualData, reads_acc: bool) -> jax.Array:
    """`[S, W]` the windows whose estimates the HR tracker takes as measurements: every
    window of a setting that reads PPG alone; for one that reads ACC, those without an ACC
    gap, whose filled ACC is input the model never learned from, so the filter holds through
    them (until 2026-12-07 it took them, and their errors reached the scored windows after)."""
    return data.acc_ok if reads_acc else data.valid


@jax.jit
def choose_q(hr, var, valid, true, ok, q0):
    """Per fold, the transition variance among `q0 x Q_FACTORS` whose tracked estimates of the
    validation sessions (`[K, V, W]`) have the lowest MAE: the filter is as smooth as held-out
    data say it should be (the training sessions' own HR steps, `q0`, ignore how noisy the
    estimates are)."""

    def fold(hr, var, valid, true, ok, q0):
        def mae_for(q):
            m, _ = jax.vmap(track, in_axes=(0, 0, 0, None))(hr, var, valid, q)
            return mae(m, true, ok)

        grid = q0 * jnp.asarray(Q_FACTORS, q0.dtype)
        return grid[jnp.argmin(jax.vmap(mae_for)(grid))]

    return jax.vmap(fold)(hr, var, valid, true, ok, q0)


def run_setting(s: SpectralSessions, split: Split, config: VirtualConfig, setting: str, *,
                progress=False) -> SettingResult:  # fmt: skip
    """Train `setting`'s model on every fold of `split` in one vmapped program and predict the
    held-out sessions, raw and tracked."""
    split = reading_split(s, split, setting)
    folds = make_folds(s, split, config.labelled, config.seed, config.gait_ridge)
    data = device_data(s, floor_db=config.floor_db, reads_acc=setting in ACC_SETTINGS)
    keys = jax.random.split(jax.random.key(config.seed), split.n_folds)
    fit = fit_folds(
        lambda key: build(config, setting, key), make_task(config, setting), data, folds,
        config.train.recipe(), keys, progress=progress,
    )  # fmt: skip
    fit = fit._replace(model=with_gait_coef(fit.model, folds.gait_coef))  # [K] models, [K] fits

    def per_session(model, fold, data, i):
        out = predict(model, fold, data, i, context=config.context)
        return out.hr, out.var

    (hr, var), idx, ok = predict_per_fold(per_session, fit.model, folds, data, split, batch=4)
    val, vidx, vok = predict_per_fold(
        per_session, fit.model, folds, data, split, batch=4, which="validation"
    )
    measured = tracked_windows(data, setting in ACC_SETTINGS)
    q = choose_q(*val, measured[vidx], data.hr[vidx], data.ok[vidx] & vok[..., None], folds.q)
    folds = folds._replace(q=q)
    tracked = jax.vmap(jax.vmap(track, in_axes=(0, 0, 0, None)))(hr, var, measured[idx], q)
    full = [scatter(a, idx, ok, len(s.names)) for a in (hr, var, *tracked)]
    return SettingResult(*full, fit.history, fit.model, folds)
