"""The virtual-sensing task: HR per 8 s window (2 s hop) from wrist spectra, in four
information settings (`models.virtual.SETTINGS`), trained by the one trainer with every fold
of a leave-subjects-out split in one vmapped program.

Data to arrays (`spectral_sessions`): each session's ACC axes and PPG become band magnitude
spectra (`signal.spectra`, Hann, 8 s windows every 2 s, 0.5-4 Hz), linearly interpolated onto
the model's grid (`models.virtual.GRID_HZ`, so files at any rate share one model) and divided
by their maximum per window and channel (the peak's position carries HR; the amplitude
changes with skin contact, arm and motion). The models read them in decibels under
that peak (`device_data`, `models.virtual.compress`, floor `VirtualConfig.floor_db`): the
heart's trace in a running wrist's ACC lies about 50 dB under the gait's lines, a fraction of
a percent of the peak on a linear scale. Reference HR per window is the mean of the reference
series over the window. Sessions are padded to the longest one's window count.

Training samples are `context` consecutive windows of a training session. A held-out session
is predicted as a watch would stream it: each window by the model run on it and the
`context - 1` windows before it (`predict`; the models are causal); early stopping uses the
cheaper consecutive blocks (`predict_blocks`). The loss is the cross-entropy of the head's
distribution against a Gaussian of `target_sd` bpm around the true HR
(`models.virtual.soft_target`); for `virtual` it adds the four reconstructions (ACC and PPG
latents each decoding both spectra; PPG targets, and the PPG latent, only in windows with PPG)
and the two KL terms (each over the windows its modality has), weighted by
`kl_weight x min(1, epoch / kl_warmup)`: KL annealing. Early stopping on the validation
subjects' cross-entropy of the inference path.

Tracking: the per-window estimates go through `models.virtual.track` (a random-walk Kalman
filter, `filters.kalman_filter`) with the head's variance as measurement
noise over every window of the session (never told where the reference is) and a transition
variance per fold chosen on its validation sessions (`choose_q`: the training sessions' mean
squared HR change between windows times 1, 4, ..., 256, the one with the lowest tracked MAE).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from wearjax.cv import Split, fit_folds, padded_table, predict_per_fold, scatter
from wearjax.errors import WearjaxDataError
from wearjax.eval.metrics import mae
from wearjax.models.virtual import (
    FLOOR_DB,
    GRID_HZ,
    VirtualSensing,
    compress,
    gaussian_kl,
    soft_target,
    track,
)
from wearjax.signal.gait import lagged, stride_hz
from wearjax.signal.spectra import band_spectra, normalise, window_mean
from wearjax.train.loop import Task, TrainConfig

WINDOW_S = 8.0
HOP_S = 2.0
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
    seed: int = 0
    train: TrainConfig = TrainConfig(
        learning_rate=2e-3, weight_decay=1e-4, epochs=40, steps_per_epoch=25,
        early_stopping_patience=12, plateau_patience=5,
    )  # fmt: skip


class SpectralSessions(NamedTuple):
    """Per-window spectra of S sessions on `GRID_HZ`, padded to W windows."""

    acc: np.ndarray  # [S, W, F, 3]
    ppg: np.ndarray  # [S, W, F, 1] (zeros where a session has no PPG)
    acc_scale: np.ndarray  # [S, W, 3] each ACC spectrum's maximum before normalising
    valid: np.ndarray  # [S, W] bool: a window of the session (False for padding)
    hr: np.ndarray  # [S, W] reference HR per window (bpm; 0 where not ok)
    ok: np.ndarray  # [S, W] bool: a window of the session with a reference HR
    ppg_ok: np.ndarray  # [S, W] bool: PPG present over the whole window
    subject: np.ndarray  # [S] int subject index
    subjects: tuple[str, ...]  # subject names
    severity: np.ndarray  # [S] motion severity (NaN when unknown)
    names: tuple[str, ...]  # [S] session names
    has_ppg: bool

    @property
    def n_windows(self) -> np.ndarray:
        return self.valid.sum(1)


def check_rate(rate: float, what: str) -> None:
    """Streams align window by window only when the 2 s hop is a whole number of samples
    (a rounded hop drifts: at 31.25 Hz by about 5 s over 300 windows); `WearjaxDataError`
    naming the stream otherwise."""
    hop = HOP_S * rate
    if hop < 1 or abs(hop - round(hop)) > 1e-6 * hop:
        raise WearjaxDataError(
            f"{what} is sampled at {rate:g} Hz: a {HOP_S:g} s hop is {hop:g} samples, which "
            f"does not align the windows; resample it to a multiple of {1 / HOP_S:g} Hz"
        )


def grid_spectra(x: np.ndarray, rate: float, *, scale: bool = False):
    """`x [C, N]` samples -> `[W, F, C]` spectra on `GRID_HZ`, each window and channel peak 1
    (and, with `scale`, the maxima `[W, C]` they were divided by)."""
    check_rate(rate, "a signal")
    mag, freqs = band_spectra(jnp.asarray(x, jnp.float32), rate, window_s=WINDOW_S, hop_s=HOP_S)
    interp = jax.vmap(jax.vmap(lambda row: jnp.interp(jnp.asarray(GRID_HZ), freqs, row)))
    raw = interp(mag)  # [C, W, F]
    spec = np.asarray(jnp.moveaxis(normalise(raw, axis=-1), 0, -1))
    return (spec, np.asarray(jnp.max(raw, axis=-1)).T) if scale else spec


def _pad(arrays: list[np.ndarray], n: int) -> np.ndarray:
    return np.stack(
        [np.concatenate([a, np.zeros((n - len(a),) + a.shape[1:], a.dtype)]) for a in arrays]
    )


class WristRecording(NamedTuple):
    """One session's samples: `acc = (values [N, 3], rate_hz)`, `ppg = (values [N], rate_hz)`
    or None (NaN where a PPG sample is missing), reference `hr = (values, rate_hz)` (NaN where
    absent)."""

    name: str
    subject: str
    acc: tuple[np.ndarray, float]
    ppg: tuple[np.ndarray, float] | None
    hr: tuple[np.ndarray, float]
    severity: float = float("nan")


def wrist_recording(session, *, require_reference: bool = True) -> WristRecording:
    """A sampled-signal `Session` (`data.sampled`) as a `WristRecording`: its `acc` (three
    axes), `ppg` if present and reference HR (NaN throughout when absent and not required).
    `WearjaxDataError` with the reason when it cannot be used."""
    acc, ppg = session.signals.get("acc"), session.signals.get("ppg")
    ref = session.targets.get("hr")
    name = Path(session.source).stem if session.source else session.workout
    if acc is None or acc.values.shape[1] != 3:
        raise WearjaxDataError(f"{name}: no acc_x/acc_y/acc_z signal; add the three ACC axes")
    if ref is None and require_reference:
        raise WearjaxDataError(
            f"{name}: no reference HR; add an hr_ref column, an hr array or NAME.hr.csv"
        )
    if acc.duration_s < WINDOW_S:
        raise WearjaxDataError(
            f"{name}: {acc.duration_s:.1f} s long, shorter than one {WINDOW_S:.0f} s window"
        )
    a = np.where(acc.mask[:, None], acc.values, 0.0)
    p = None if ppg is None else (np.where(ppg.mask, ppg.values[:, 0], np.nan), ppg.rate_hz)
    hr = (np.full(int(acc.duration_s) + 1, np.nan), 1.0) if ref is None else (
        np.where(ref.mask, ref.values[:, 0], np.nan), ref.rate_hz)  # fmt: skip
    return WristRecording(name, session.runner, (a, acc.rate_hz), p, hr)


def _window_means(values: np.ndarray, ok: np.ndarray, rate: float, w: int):
    check_rate(rate, "the reference HR")
    mean, seen = window_mean(
        jnp.asarray(np.where(ok, values, 0.0), jnp.float32), rate, WINDOW_S, HOP_S,
        mask=jnp.asarray(ok),
    )  # fmt: skip
    m, s = np.zeros(w, np.float32), np.zeros(w, bool)
    k = min(w, len(mean))
    m[:k], s[:k] = np.asarray(mean)[:k], np.asarray(seen)[:k]
    return m, s


def spectral_sessions(recordings: list[WristRecording]) -> SpectralSessions:
    """Recordings to `SpectralSessions` (module docstring): spectra on the grid, reference HR
    per window, and whether the PPG is present over each whole window."""
    accs, scales, ppgs, hrs, oks, pok = [], [], [], [], [], []
    for rec in recordings:
        a, rate = rec.acc
        for stream, r in (("acc", rate), ("ppg", rec.ppg and rec.ppg[1]), ("hr", rec.hr[1])):
            if r:
                check_rate(r, f"session {rec.name!r}: {stream}")
        spec, scale = grid_spectra(np.asarray(a, np.float32).T, rate, scale=True)
        w = spec.shape[0]
        if w == 0:
            raise WearjaxDataError(
                f"session {rec.name!r} is {len(a) / rate:.1f} s long, shorter than one "
                f"{WINDOW_S:.0f} s window; drop it or record longer"
            )
        accs.append(spec)
        scales.append(scale)
        if rec.ppg is None:
            ppgs.append(np.zeros((w, len(GRID_HZ), 1), np.float32))
            pok.append(np.zeros(w, bool))
        else:
            p, p_rate = rec.ppg
            valid = np.isfinite(p)
            p_spec = grid_spectra(np.where(valid, p, 0.0).astype(np.float32)[None], p_rate)
            ppgs.append(_pad([p_spec[:w]], w)[0].astype(np.float32))
            frac, _ = _window_means(valid.astype(np.float32), np.ones(len(p), bool), p_rate, w)
            pok.append(frac > 1.0 - 1e-6)  # every sample of the window valid
        values, hr_rate = rec.hr
        values = np.asarray(values, np.float32)
        m, seen = _window_means(values, np.isfinite(values) & (values > 0), hr_rate, w)
        hrs.append(np.where(seen, m, 0.0).astype(np.float32))
        oks.append(seen)
    n = max(len(a) for a in accs)
    subjects = sorted({r.subject for r in recordings})
    return SpectralSessions(
        acc=_pad(accs, n), ppg=_pad(ppgs, n), acc_scale=_pad(scales, n),
        valid=_pad([np.ones(len(a), bool) for a in accs], n), hr=_pad(hrs, n), ok=_pad(oks, n),
        ppg_ok=_pad(pok, n), subject=np.asarray([subjects.index(r.subject) for r in recordings]),
        subjects=tuple(subjects), severity=np.asarray([r.severity for r in recordings], float),
        names=tuple(r.name for r in recordings), has_ppg=any(r.ppg is not None for r in recordings),
    )  # fmt: skip


class VirtualData(NamedTuple):
    acc: jax.Array  # [S, W, F, 3] spectra as the models read them (`device_data`)
    ppg: jax.Array  # [S, W, F, 1] likewise
    gait: jax.Array  # [S, W, N_GAIT] cadence (steps/min) and its lags (`gait_features`)
    hr: jax.Array  # [S, W]
    ok: jax.Array  # [S, W]
    ppg_ok: jax.Array  # [S, W]
    valid: jax.Array  # [S, W]
    n_windows: jax.Array  # [S]


def gait_features(s: SpectralSessions) -> jax.Array:
    """`[S, W, N_GAIT]`: the cadence each window's ACC shows (`signal.gait.stride_hz` on its
    power summed over the axes, in steps/min) and its first-order lags (`signal.gait.lagged`),
    causal over each whole session."""
    power = jnp.square(jnp.asarray(s.acc) * jnp.asarray(s.acc_scale)[:, :, None, :]).sum(-1)
    cadence = 120.0 * stride_hz(power, GRID_HZ)  # [S, W]
    return jnp.concatenate([cadence[..., None], lagged(cadence, HOP_S)], axis=-1)


def device_data(s: SpectralSessions, *, floor_db: float | None) -> VirtualData:
    """The sessions as the models see them: decibel spectra (`compress`), gait features."""
    return VirtualData(
        compress(jnp.asarray(s.acc), floor_db), compress(jnp.asarray(s.ppg), floor_db),
        gait_features(s), jnp.asarray(s.hr), jnp.asarray(s.ok), jnp.asarray(s.ppg_ok),
        jnp.asarray(s.valid), jnp.asarray(s.n_windows, jnp.int32),
    )  # fmt: skip


class VirtualFold(NamedTuple):
    train_p: jax.Array  # [S] sampling probability of each training session
    val_idx: jax.Array  # [V] validation sessions (padded)
    val_ok: jax.Array  # [V]
    q: jax.Array  # [] the tracker's transition variance (bpm^2 per hop)


def make_folds(s: SpectralSessions, split: Split) -> VirtualFold:
    steps = np.square(np.diff(s.hr, axis=1)) * (s.ok[:, 1:] & s.ok[:, :-1])
    n_steps = (s.ok[:, 1:] & s.ok[:, :-1]).sum(1)
    q = (split.train * steps.sum(1)).sum(1) / np.maximum((split.train * n_steps).sum(1), 1)
    val_idx, val_ok = padded_table(split.validation)
    return VirtualFold(
        jnp.asarray(split.sampling_weights()), jnp.asarray(val_idx), jnp.asarray(val_ok),
        jnp.asarray(np.maximum(q, 0.25), jnp.float32),
    )  # fmt: skip


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


def make_task(config: VirtualConfig, setting: str) -> Task:
    L = config.context

    def sample(data: VirtualData, fold: VirtualFold, key):
        k1, k2 = jax.random.split(key)
        i = jax.random.choice(k1, data.hr.shape[0], (config.batch_size,), p=fold.train_p)
        hi = (jnp.maximum(data.n_windows[i] - L, 0) + 1).astype(jnp.float32)
        start = jnp.floor(jax.random.uniform(k2, (config.batch_size,)) * hi).astype(jnp.int32)
        w = start[:, None] + jnp.arange(L)[None]  # [B, L]
        take = lambda a: a[i[:, None], w]  # noqa: E731
        arrays = (data.acc, data.ppg, data.gait, data.hr, data.ok, data.ppg_ok, data.valid)
        return tuple(take(a) for a in arrays)

    def one_loss(model, acc, ppg, gait, hr, ok, ppg_ok, valid, key, beta):
        if setting != "virtual":
            return _ce(model(acc, ppg, gait).logits, hr, ok, config.target_sd), {}
        ka, kp = jax.random.split(key)
        fa = model.features(acc, None, ka)
        fp = model.features(None, ppg, kp)
        ce_a = _ce(model.hr(fa["u"], gait)[2], hr, ok, config.target_sd)
        ce_p = _ce(model.hr(fp["u"], gait)[2], hr, ok & ppg_ok, config.target_sd)
        recon = (
            _mse(fa["ppg_hat"], ppg, ppg_ok) + _mse(fp["ppg_hat"], ppg, ppg_ok)
            + _mse(fa["acc_hat"], acc, valid) + _mse(fp["acc_hat"], acc, ppg_ok)
        )  # fmt: skip
        cells = lambda m: jnp.broadcast_to(m[:, None], fa["mu"].shape[:2])  # noqa: E731
        kl = (gaussian_kl(fa["mu"], fa["logvar"], cells(valid))
              + gaussian_kl(fp["mu"], fp["logvar"], cells(ppg_ok)))  # fmt: skip
        total = ce_a + ce_p + config.recon_weight * recon + beta * kl
        return total, {"ce_ppg": ce_p, "recon": recon, "kl": kl}

    def loss(model, batch, key, epoch):
        acc, ppg, gait, hr, ok, ppg_ok, valid = batch
        beta = config.kl_weight * jnp.minimum(
            1.0, jnp.asarray(epoch, jnp.float32) / max(config.kl_warmup, 1)
        )
        keys = jax.random.split(key, hr.shape[0])
        per = jax.vmap(lambda *a: one_loss(model, *a, beta))
        value, aux = per(acc, ppg, gait, hr, ok, ppg_ok, valid, keys)
        return jnp.mean(value), jax.tree_util.tree_map(jnp.mean, aux)

    def validate(model, data: VirtualData, fold: VirtualFold):
        def session(i):
            logits = predict_blocks(model, data, i, context=L).logits
            return _ce(logits, data.hr[i], data.ok[i], config.target_sd)

        ce = jax.vmap(session)(fold.val_idx)
        w = fold.val_ok.astype(ce.dtype)
        return jnp.sum(ce * w) / jnp.maximum(jnp.sum(w), 1.0)

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
    model run on the window and the `context - 1` before it (fewer at the session's start),
    the last output kept (the models are causal, so this is exact)."""
    n = data.acc.shape[1]
    w = jnp.arange(n)
    start = jnp.clip(w - context + 1, 0, max(n - context, 0))
    idx = jnp.minimum(start[:, None] + jnp.arange(context)[None], n - 1)  # [W, context]
    chunk = max(1, PREDICT_WINDOWS // context)  # blocks at once, per session and fold
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
        heads=config.heads, gait=config.gait, key=key,
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
    folds = make_folds(s, split)
    data = device_data(s, floor_db=config.floor_db)
    keys = jax.random.split(jax.random.key(config.seed), split.n_folds)
    fit = fit_folds(
        lambda key: build(config, setting, key), make_task(config, setting), data, folds,
        config.train.recipe(), keys, progress=progress,
    )  # fmt: skip

    def per_session(model, fold, data, i):
        out = predict(model, fold, data, i, context=config.context)
        return out.hr, out.var

    (hr, var), idx, ok = predict_per_fold(per_session, fit.model, folds, data, split, batch=4)
    val, vidx, vok = predict_per_fold(
        per_session, fit.model, folds, data, split, batch=4, which="validation"
    )
    q = choose_q(*val, data.valid[vidx], data.hr[vidx], data.ok[vidx] & vok[..., None], folds.q)
    folds = folds._replace(q=q)
    tracked = jax.vmap(jax.vmap(track, in_axes=(0, 0, 0, None)))(hr, var, data.valid[idx], q)
    full = [scatter(a, idx, ok, len(s.names)) for a in (hr, var, *tracked)]
    return SettingResult(*full, fit.history, fit.model, folds)
