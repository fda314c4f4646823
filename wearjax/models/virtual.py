"""Virtual sensing: heart rate from wrist spectra, with a cross-modal VAE that turns
accelerometer spectra into PPG-like ones (after Fedorin et al., ICASSP 2026; the same group's
Information Fusion 2025 paper pairs a small attention denoiser with an offline VAE that
reconstructs the PPG spectrum from ACC).

Inputs are sequences of `L` short-time magnitude spectra on one fixed frequency grid
(`GRID_HZ`: 64 bins over 0.5-4 Hz, 30-240 bpm, 3.3 bpm apart, whatever the sensor's rate;
`signal.spectra` makes them): ACC `a [L, F, 3]` (one spectrum per axis) and PPG `p [L, F, 1]`,
each normalised per window to a peak of 1 and put on a decibel scale under it (`compress`:
1 at the peak, 0 at `FLOOR_DB` below). (An 8 s Hann window resolves about 0.25 Hz, so the grid
is finer than what the spectra can separate.)

- **Shared encoder** (`SpectralEncoder`): a per-bin linear map of each modality's channels to
  `width` features (ACC and PPG have their own; the fused input is their sum, which is the linear
  map of the concatenated channels), then `depth` residual 2-D convolutions over (window,
  frequency), shared by both modalities, each 3 windows x 5 bins and causal in the windows
  (left-padded), so the trunk's output at a window sees that window and the `2 x depth` before
  it and `2 x depth` bins either side: by default (`depth=2`) 5 windows (16 s of signal) and
  +-4 bins: `h [L, F, width]`.
- **Cross-modal VAE** (`CrossModalVAE`): per (window, bin) a diagonal Gaussian posterior
  `q(z | h)` with `latent` dimensions; decoders map `z` to the PPG spectrum and the ACC spectra.
  Trained in both directions: ACC and PPG each go through the shared encoder into the one latent
  space, and each latent reconstructs both modalities (ACC -> PPG is the virtual PPG), with the
  KL term to `N(0, I)` annealed in over the first epochs (`tasks.virtual`). At inference only
  ACC is given and `z` is the posterior mean.
- **Attention refinement** (`Refiner`): self-attention over the frequency bins of each window
  (sine-cosine positions of the bin), then causal attention over the windows at each bin (a
  window attends to itself and earlier ones only, so an estimate never waits for the future,
  as on a watch, and padding after a session's end changes nothing), pre-norm residual, and a
  sigmoid gate per (window, bin) that can switch off the motion components; the gate is returned
  so reports can show what it suppressed.
- **HR head** (`HRHead`): logits per bin, a softmax over the grid as the predictive
  distribution of HR in each window; its mean is the estimate and its variance (plus the bin's
  quantisation variance, step^2 / 12) the measurement noise the Kalman tracker uses.

- **Gait prior** (`GaitPrior`, with `gait=True`, for the settings that read ACC): the cadence
  the ACC shows and its first-order lags of 10 s to 4 min (`signal.gait`, computed causally
  over the whole session before the model, `N_GAIT` numbers per window) map linearly to a
  Gaussian over the grid, whose log density is added to the head's logits (a product of the
  two: the spectra's evidence and the gait's). HR lags a change of pace by a minute or two,
  longer than the `L` windows the model sees; on a watch the lags are five running averages.
  With `gait_ridge=True` the prior is residual: its mean is a ridge of HR on those features
  fitted per fold before training (`tasks.virtual.make_folds`, kept in the model, not trained)
  plus a learned linear part that starts at zero, so training starts from the ridge's estimate.

Settings (`SETTINGS`, the information settings of the published table): `acc_only` (direct
regression from ACC spectra: the encoder, then `RegressionHead`, an MLP on each window's
flattened features, so it reads only the encoder's `2 x depth + 1` windows, not all `L`;
a gait prior adds the cadence's causal lags), `virtual` (ACC -> VAE latent -> refiner ->
head; PPG only as a training target), `ppg_only`, `fusion` (PPG + ACC); the refiner's causal
attention gives these three every window of the `L`. The ablation `acc_refined` (ACC -> encoder ->
refiner -> head, no VAE, no PPG) separates what the architecture gives from what the
cross-modal training gives.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, PRNGKeyArray

from wearjax.filters.linear import LinearGaussianParams, kalman_filter
from wearjax.models.backbone import dense
from wearjax.models.har import time_positions

SETTINGS = ("acc_only", "virtual", "ppg_only", "fusion")
ABLATIONS = ("acc_refined",)  # ACC through the refiner and the distributional head, no VAE
GRID_HZ = np.linspace(0.5, 4.0, 64)  # the model's frequency grid (Hz)
GRID_BPM = 60.0 * GRID_HZ
BIN_BPM = float(GRID_BPM[1] - GRID_BPM[0])
PRIOR = (float(GRID_BPM.mean()), 100.0)  # the tracker's prior HR: mean and SD (bpm)
FLOOR_DB = 60.0  # the input scale's floor below each window's peak
N_GAIT = 6  # cadence and its five lags (`signal.gait.LAGS_S`)
GAIT_CENTRE, GAIT_SCALE = 160.0, 20.0  # steps/min: the gait features' standardisation


def compress(spec: Float[Array, "*shape"], floor_db: float | None = FLOOR_DB) -> Array:
    """Peak-normalised magnitude spectra to a decibel scale: 1 at the peak, 0 at `floor_db`
    below it and under (a zero spectrum stays 0); `floor_db=None` leaves them linear. A
    heart's trace 40-50 dB under the gait's lines is 0.3-1% of the peak on a linear scale and
    0.17-0.33 on this one (with the default floor)."""
    if floor_db is None:
        return spec
    if not floor_db > 0:
        raise ValueError(f"need a decibel floor > 0 (or None for linear spectra), got {floor_db}")
    db = 20.0 * jnp.log10(jnp.maximum(spec, 10.0 ** (-floor_db / 20.0)))
    return jnp.where(spec > 0, jnp.maximum(1.0 + db / floor_db, 0.0), 0.0)


class VirtualOutput(NamedTuple):
    hr: Float[Array, " window"]  # bpm, mean of the predictive distribution
    var: Float[Array, " window"]  # bpm^2
    logits: Float[Array, "window freq"]
    gate: Float[Array, "window freq"]  # the refiner's gate (1 = kept)
    virtual_ppg: Float[Array, "window freq"]  # decoded PPG spectrum (zeros without a VAE)


def _linear(layer: eqx.nn.Linear, x: Array) -> Array:
    return dense(layer.weight, layer.bias, x)


class SpectralEncoder(eqx.Module):
    """Per-bin input maps (one per modality) and a shared residual conv trunk."""

    acc_in: eqx.nn.Linear
    ppg_in: eqx.nn.Linear
    convs: tuple[eqx.nn.Conv2d, ...]

    def __init__(self, width: int, *, depth: int = 2, key: PRNGKeyArray):
        k = jax.random.split(key, depth + 2)
        self.acc_in = eqx.nn.Linear(3, width, key=k[0])
        self.ppg_in = eqx.nn.Linear(1, width, key=k[1])
        self.convs = tuple(
            eqx.nn.Conv2d(width, width, (3, 5), padding=((2, 0), (2, 2)), key=ki) for ki in k[2:]
        )

    def embed(self, acc: Array | None, ppg: Array | None) -> Float[Array, "window freq width"]:
        parts = []
        if acc is not None:
            parts.append(_linear(self.acc_in, acc))
        if ppg is not None:
            parts.append(_linear(self.ppg_in, ppg))
        return sum(parts[1:], parts[0])

    def __call__(self, acc: Array | None = None, ppg: Array | None = None):
        h = jnp.moveaxis(self.embed(acc, ppg), -1, 0)  # [width, L, F]
        for conv in self.convs:
            h = h + jax.nn.gelu(conv(h))
        return jnp.moveaxis(h, 0, -1)


class CrossModalVAE(eqx.Module):
    """Diagonal-Gaussian posterior per (window, bin) and decoders to PPG and ACC spectra."""

    posterior: eqx.nn.Linear  # width -> 2 latent
    expand: eqx.nn.Linear  # latent -> width
    to_ppg: eqx.nn.Linear  # width -> 1
    to_acc: eqx.nn.Linear  # width -> 3

    def __init__(self, width: int, latent: int, *, key: PRNGKeyArray):
        k = jax.random.split(key, 4)
        self.posterior = eqx.nn.Linear(width, 2 * latent, key=k[0])
        self.expand = eqx.nn.Linear(latent, width, key=k[1])
        self.to_ppg = eqx.nn.Linear(width, 1, key=k[2])
        self.to_acc = eqx.nn.Linear(width, 3, key=k[3])

    def encode(self, h: Array) -> tuple[Array, Array]:
        """Posterior mean and log-variance `[L, F, latent]` each."""
        mu, logvar = jnp.split(_linear(self.posterior, h), 2, axis=-1)
        return mu, jnp.clip(logvar, -10.0, 10.0)

    def features(self, z: Array) -> Float[Array, "window freq width"]:
        """The decoder's hidden features of `z`: what the refiner and the decoders read."""
        return jax.nn.gelu(_linear(self.expand, z))

    def decode(self, u: Array) -> tuple[Array, Array]:
        """PPG `[L, F, 1]` and ACC `[L, F, 3]` spectra from the features `u`."""
        return _linear(self.to_ppg, u), _linear(self.to_acc, u)


def gaussian_kl(mu: Array, logvar: Array, weights: Array | None = None) -> Float[Array, ""]:
    """`KL(N(mu, exp(logvar)) || N(0, 1))` summed over the last axis, averaged over the rest
    (weighted by `weights`, shaped as `mu` without its last axis, when given)."""
    kl = 0.5 * jnp.sum(jnp.exp(logvar) + jnp.square(mu) - 1.0 - logvar, axis=-1)
    if weights is None:
        return jnp.mean(kl)
    w = weights.astype(kl.dtype)
    return jnp.sum(kl * w) / jnp.maximum(jnp.sum(w), 1.0)


def reparameterise(mu: Array, logvar: Array, key: PRNGKeyArray | None) -> Array:
    """A posterior draw `mu + exp(logvar / 2) * eps`; the mean when `key` is None."""
    if key is None:
        return mu
    return mu + jnp.exp(0.5 * logvar) * jax.random.normal(key, mu.shape, mu.dtype)


class Refiner(eqx.Module):
    """Attention over frequency (per window), over windows (per bin), then a sigmoid gate."""

    norms: tuple[eqx.nn.LayerNorm, eqx.nn.LayerNorm]
    over_freq: eqx.nn.MultiheadAttention
    over_time: eqx.nn.MultiheadAttention
    gate: eqx.nn.Linear

    def __init__(self, width: int, heads: int, *, key: PRNGKeyArray):
        k = jax.random.split(key, 3)
        self.norms = (eqx.nn.LayerNorm(width), eqx.nn.LayerNorm(width))
        self.over_freq = eqx.nn.MultiheadAttention(heads, width, key=k[0])
        self.over_time = eqx.nn.MultiheadAttention(heads, width, key=k[1])
        self.gate = eqx.nn.Linear(width, 1, key=k[2])

    def __call__(self, u: Float[Array, "window freq width"]) -> tuple[Array, Array]:
        n_win, n_freq, width = u.shape
        norm = lambda i, y: jax.vmap(jax.vmap(self.norms[i]))(y)  # noqa: E731
        y = norm(0, u) + time_positions(n_freq, width)[None]
        u = u + jax.vmap(lambda a: self.over_freq(a, a, a))(y)
        y = jnp.swapaxes(norm(1, u), 0, 1) + time_positions(n_win, width)[None]  # [F, L, w]
        causal = jnp.tril(jnp.ones((n_win, n_win), bool))
        u = u + jnp.swapaxes(jax.vmap(lambda a: self.over_time(a, a, a, causal))(y), 0, 1)
        g = jax.nn.sigmoid(_linear(self.gate, u))  # [L, F, 1]
        return u * g, g[..., 0]


class HRHead(eqx.Module):
    """Logits per bin -> HR mean and variance of the softmax over `GRID_BPM`."""

    out: eqx.nn.Linear

    def __init__(self, width: int, *, key: PRNGKeyArray):
        self.out = eqx.nn.Linear(width, 1, key=key)

    def __call__(self, r: Array) -> tuple[Array, Array, Array]:
        logits = _linear(self.out, r)[..., 0]  # [L, F]
        return (*moments(logits), logits)


def moments(logits: Float[Array, "window freq"]) -> tuple[Array, Array]:
    """Mean and variance (bpm, bpm^2) of the distribution `softmax(logits)` over `GRID_BPM`,
    the variance including the bins' quantisation (`BIN_BPM^2 / 12`)."""
    p = jax.nn.softmax(logits, axis=-1)
    grid = jnp.asarray(GRID_BPM, logits.dtype).reshape(1, -1)
    mean = jnp.sum(p * grid, axis=-1)
    var = jnp.sum(p * jnp.square(grid - mean[:, None]), axis=-1)
    return mean, var + BIN_BPM**2 / 12.0


class RegressionHead(eqx.Module):
    """Direct regression of each window's HR from its flattened spectral features: an MLP to a
    Gaussian's mean and log-SD, given as logits over `GRID_BPM` (`-(g - mean)^2 / 2 sd^2`),
    so it shares the distributional head's loss and moments."""

    mlp: eqx.nn.MLP

    def __init__(self, width: int, *, hidden: int = 32, key: PRNGKeyArray):
        self.mlp = eqx.nn.MLP(width * len(GRID_HZ), 2, hidden, 1, jax.nn.gelu, key=key)

    def __call__(self, r: Array) -> tuple[Array, Array, Array]:
        out = jax.vmap(self.mlp)(r.reshape(r.shape[0], -1))  # [L, 2]
        mean = 130.0 + 40.0 * out[:, 0]
        sd = 1.0 + 10.0 * jnp.exp(jnp.clip(out[:, 1], -5.0, 3.0))
        grid = jnp.asarray(GRID_BPM, r.dtype).reshape(1, -1)
        logits = -0.5 * jnp.square((grid - mean[:, None]) / sd[:, None])
        return (*moments(logits), logits)


class GaitPrior(eqx.Module):
    """Gait features `[L, N_GAIT]` (steps/min) -> logits over `GRID_BPM` of a Gaussian whose
    mean and log-SD are linear in them. With `residual`, the mean is a fitted ridge's HR
    (`coef`: intercept and weights on the raw features, fitted before training and written in
    by the task, never trained) plus the linear part, which starts at zero: the model starts
    from the ridge's estimate and learns what the spectra add to it."""

    linear: eqx.nn.Linear
    coef: Array | None

    def __init__(self, *, residual: bool = False, key: PRNGKeyArray):
        self.linear = eqx.nn.Linear(N_GAIT, 2, key=key)
        self.coef = None
        if residual:
            self.linear = jax.tree_util.tree_map(jnp.zeros_like, self.linear)
            self.coef = jnp.zeros(N_GAIT + 1).at[0].set(GRID_BPM.mean())

    def __call__(self, gait: Float[Array, "window gait"]) -> Float[Array, "window freq"]:
        out = _linear(self.linear, (gait - GAIT_CENTRE) / GAIT_SCALE)  # [L, 2]
        if self.coef is None:
            mean = 130.0 + 40.0 * out[:, 0]
        else:
            coef = jax.lax.stop_gradient(self.coef)
            mean = coef[0] + gait @ coef[1:] + 40.0 * out[:, 0]
        sd = 1.0 + 10.0 * jnp.exp(jnp.clip(out[:, 1], -5.0, 3.0))
        grid = jnp.asarray(GRID_BPM, gait.dtype).reshape(1, -1)
        return -0.5 * jnp.square((grid - mean[:, None]) / sd[:, None])


def with_gait_coef(model: VirtualSensing, coef: Float[Array, "*fold coef"]) -> VirtualSensing:
    """`model` with its residual gait prior's ridge set to `coef` (unchanged without one;
    a stacked model `[K]` takes `[K, N_GAIT + 1]`)."""
    if model.gait_prior is None or model.gait_prior.coef is None:
        return model
    return eqx.tree_at(
        lambda m: m.gait_prior.coef, model, jnp.asarray(coef, model.gait_prior.coef.dtype)
    )


class VirtualSensing(eqx.Module):
    """One information setting's model (module docstring). `__call__` is inference: it reads
    only the modalities its setting allows."""

    encoder: SpectralEncoder
    vae: CrossModalVAE | None
    refiner: Refiner | None
    head: HRHead | RegressionHead
    gait_prior: GaitPrior | None
    setting: str = eqx.field(static=True)

    def __init__(self, setting: str = "virtual", *, width: int = 16, latent: int = 4,
                 depth: int = 2, heads: int = 2, gait: bool = False,
                 gait_ridge: bool = False, key: PRNGKeyArray):  # fmt: skip
        if setting not in SETTINGS + ABLATIONS:
            raise ValueError(f"unknown setting {setting!r}: choose one of {SETTINGS + ABLATIONS}")
        k = jax.random.split(key, 4)
        self.setting = setting
        self.encoder = SpectralEncoder(width, depth=depth, key=k[0])
        self.vae = CrossModalVAE(width, latent, key=k[1]) if setting == "virtual" else None
        direct = setting == "acc_only"
        self.refiner = None if direct else Refiner(width, heads, key=k[2])
        self.head = RegressionHead(width, key=k[3]) if direct else HRHead(width, key=k[3])
        with_gait = (gait or gait_ridge) and setting != "ppg_only"  # its key folded in: the
        # other parts start as they do in a model without it
        self.gait_prior = (
            GaitPrior(residual=gait_ridge, key=jax.random.fold_in(key, 4)) if with_gait else None
        )

    @property
    def uses_acc(self) -> bool:
        return self.setting != "ppg_only"

    @property
    def uses_ppg(self) -> bool:
        return self.setting in ("ppg_only", "fusion")

    def inference_parameters(self) -> int:
        """Parameters the HR estimate uses: without the unused modality's input map and the
        VAE's decoders (training targets; the virtual PPG they draw is for inspection)."""
        enc = self.encoder
        parts = [enc.convs, self.refiner, self.head, self.gait_prior]
        parts += [enc.acc_in] if self.uses_acc else []
        parts += [enc.ppg_in] if self.setting in ("ppg_only", "fusion") else []
        parts += [self.vae.posterior, self.vae.expand] if self.vae is not None else []
        leaves = jax.tree_util.tree_leaves(eqx.filter(parts, eqx.is_inexact_array))
        return int(sum(a.size for a in leaves))

    def features(self, acc: Array | None, ppg: Array | None, key=None) -> dict:
        """Encoder output and, for the VAE, the posterior, its draw and decoded spectra."""
        h = self.encoder(acc, ppg)
        if self.vae is None:
            return {"u": h}
        mu, logvar = self.vae.encode(h)
        u = self.vae.features(reparameterise(mu, logvar, key))
        ppg_hat, acc_hat = self.vae.decode(u)
        return {"u": u, "mu": mu, "logvar": logvar, "ppg_hat": ppg_hat, "acc_hat": acc_hat}

    def hr(self, u: Array, gait: Array | None = None) -> tuple[Array, Array, Array, Array]:
        """HR mean, variance, logits and gate from features `u`; with a gait prior, `gait`
        `[L, N_GAIT]` is required and its logits are added to the head's."""
        if self.refiner is None:
            r, gate = u, jnp.ones(u.shape[:2], u.dtype)
        else:
            r, gate = self.refiner(u)
        mean, var, logits = self.head(r)
        if self.gait_prior is not None:
            if gait is None:
                raise ValueError("this model has a gait prior: pass the gait features")
            logits = logits + self.gait_prior(gait)
            mean, var = moments(logits)
        return mean, var, logits, gate

    def __call__(
        self,
        acc: Float[Array, "window freq 3"],
        ppg: Float[Array, "window freq 1"],
        gait: Float[Array, "window gait"] | None = None,
    ) -> VirtualOutput:
        f = self.features(acc if self.uses_acc else None, ppg if self.uses_ppg else None)
        mean, var, logits, gate = self.hr(f["u"], gait)
        virtual = f["ppg_hat"][..., 0] if "ppg_hat" in f else jnp.zeros_like(logits)
        return VirtualOutput(mean, var, logits, gate, virtual)


def soft_target(hr: Float[Array, "*batch"], sd_bpm: float = 3.0) -> Array:
    """A Gaussian of `sd_bpm` around each true HR over `GRID_BPM`, normalised: the head's
    cross-entropy target (a distribution, so the head's spread means something)."""
    grid = jnp.asarray(GRID_BPM, hr.dtype).reshape((1,) * hr.ndim + (-1,))
    return jax.nn.softmax(-0.5 * jnp.square((grid - hr[..., None]) / sd_bpm), axis=-1)


def track(
    hr: Float[Array, " window"],
    var: Float[Array, " window"],
    ok: Bool[Array, " window"],
    q: Float[Array, ""] | float,
) -> tuple[Array, Array]:
    """A random-walk Kalman filter over per-window estimates: state HR (bpm), transition
    variance `q` per hop, each estimate observed with its predicted variance `var` (windows
    where `ok` is False are skipped), from a flat prior (`PRIOR`: the grid's middle, SD 100
    bpm). Built on `filters.kalman_filter`; returns the filtered mean and variance per window,
    as a watch would report them online. A non-finite estimate or variance on a window where
    `ok` is True is not taken as a measurement, and the tracked value there is NaN, so it is
    counted as the raw one is (until 2026-12-07 the filter refused it and the study stopped)."""
    dtype = hr.dtype
    finite = jnp.isfinite(hr) & jnp.isfinite(var)
    bad = ok & ~finite
    ok = ok & finite
    hr, var = jnp.where(ok, hr, 0.0), jnp.where(ok, var, 1.0)
    params = LinearGaussianParams(
        m0=jnp.full((1,), PRIOR[0], dtype),
        P0=jnp.full((1, 1), PRIOR[1] ** 2, dtype),
        F=jnp.ones((1, 1), dtype),
        Q=(jnp.zeros((), dtype) + q).reshape(1, 1),
        H=jnp.ones((1, 1), dtype),
        R=var.reshape(-1, 1, 1),
    )
    res = kalman_filter(params, hr.reshape(-1, 1), ok)
    return jnp.where(bad, jnp.nan, res.filtered_means[:, 0]), res.filtered_covs[:, 0, 0]
